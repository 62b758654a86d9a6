// Fuzz target for the journal tool's output formats (journal/tool/format.hpp): a journal
// file's fields are untrusted bytes (a tampered file can hold anything), and the auditor's
// terminal must not act on them. Whatever the input: a table cell holds no C0, DEL or C1
// control and no byte outside well-formed UTF-8 and is at most 80 characters when cut; a
// JSON line parses, holds no such character either, and gives back a UTF-8 field exactly; a
// CSV field is quoted whenever it holds a control character, a comma or a quote.
//
// Input: the field's bytes, used as actor, subject and detail of one entry.
#include "journal/tool/format.hpp"

#include <boost/json/parse.hpp>
#include <string>

#include "tests/fuzz/fuzz_support.hpp"

namespace journal = rsgate::journal;

namespace {

// Characters of `s` when it is well-formed UTF-8 without C0 (but '\n'), DEL or C1; else -1.
long safe_chars(std::string_view s) {
  long chars = 0;
  for (std::size_t i = 0; i < s.size(); ++chars) {
    auto c = static_cast<unsigned char>(s[i]);
    if (c < 0x80) {
      if ((c < 0x20 && c != '\n') || c == 0x7f) return -1;
      ++i;
      continue;
    }
    std::size_t len = (c & 0xE0) == 0xC0 ? 2 : (c & 0xF0) == 0xE0 ? 3 : (c & 0xF8) == 0xF0 ? 4 : 0;
    if (len == 0 || c < 0xC2 || c > 0xF4 || i + len > s.size()) return -1;
    for (std::size_t k = 1; k < len; ++k)
      if ((static_cast<unsigned char>(s[i + k]) & 0xC0) != 0x80) return -1;
    if (c == 0xC2 && static_cast<unsigned char>(s[i + 1]) < 0xA0) return -1;
    i += len;
  }
  return chars;
}

bool well_formed_utf8(std::string_view s) {
  boost::system::error_code ec;
  std::string quoted = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\' || static_cast<unsigned char>(c) < 0x20) return false;  // let JSON judge the rest
    quoted += c;
  }
  (void)boost::json::parse(quoted + "\"", ec);
  return !ec;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  auto text = rsgate::fuzz::as_text(data, size);
  auto cell = journal::table_cell(text);
  FUZZ_CHECK(safe_chars(cell) >= 0);
  auto cut = journal::table_cell(text, 80);
  auto n = safe_chars(cut);
  FUZZ_CHECK(n >= 1 && n <= 80);
  if (cut.ends_with("...") && cut != cell) FUZZ_CHECK(n == 80);

  journal::entry e;
  e.seq = 1;
  e.kind = "session.attach";
  e.actor = std::string(text);
  e.subject = std::string(text);
  e.detail = std::string(text);
  e.prev_hash = std::string(journal::kGenesisHash);
  e.hash = std::string(journal::kGenesisHash);
  auto line = journal::to_json_line(e);
  FUZZ_CHECK(safe_chars(line) >= 0);
  boost::system::error_code ec;
  auto v = boost::json::parse(line, ec);
  FUZZ_CHECK(!ec && v.is_object());
  if (well_formed_utf8(text)) FUZZ_CHECK(v.as_object()["actor"].as_string() == text);

  auto quoted = journal::csv_quote(text);
  bool plain = quoted == text;
  if (plain)
    for (unsigned char c : text) FUZZ_CHECK(c != ',' && c != '"' && c >= 0x20 && c != 0x7f);
  else
    FUZZ_CHECK(quoted.size() >= 2 && quoted.front() == '"' && quoted.back() == '"');
  return 0;
}
