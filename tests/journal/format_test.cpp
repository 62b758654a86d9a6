// Output formats of the journal tool: RFC 4180 CSV quoting, JSON lines, and a table that
// neutralises control characters from a tampered journal.
#include "journal/tool/format.hpp"

#include <boost/json/parse.hpp>
#include <catch2/catch.hpp>
#include <sstream>

using namespace rsgate::journal;

namespace {
entry e1() {
  entry e;
  e.seq = 7;
  e.ts = 1'795'824'000'000'000;
  e.gateway = "gw";
  e.kind = "session.attach";
  e.actor = "o\"brien, j";
  e.detail = R"({"a":1})";
  e.prev_hash = std::string(kGenesisHash);
  e.hash = std::string(kGenesisHash);
  return e;
}
}  // namespace

TEST_CASE("CSV quoting per RFC 4180") {
  CHECK(csv_quote("plain") == "plain");
  CHECK(csv_quote("a,b") == "\"a,b\"");
  CHECK(csv_quote("say \"hi\"") == "\"say \"\"hi\"\"\"");
  CHECK(csv_quote("two\nlines") == "\"two\nlines\"");
  auto row = to_csv_row(e1());
  CHECK(row.starts_with("7,2026-11-28T00:00:00.000000Z,gw,session.attach,\"o\"\"brien, j\","));
  CHECK(row.find("\"{\"\"a\"\":1}\"") != std::string::npos);
}

TEST_CASE("JSON lines carry every field, detail as an object") {
  auto v = boost::json::parse(to_json_line(e1())).as_object();
  CHECK(v["seq"].as_int64() == 7);
  CHECK(v["ts"].as_string() == "2026-11-28T00:00:00.000000Z");
  CHECK(v["ts_us"].as_int64() == 1'795'824'000'000'000);
  CHECK(v["actor"].as_string() == "o\"brien, j");
  CHECK(v["detail"].as_object()["a"].as_int64() == 1);
  CHECK(v["outcome"].as_string() == "ok");
  for (auto k : {"gateway", "kind", "source", "session_id", "pmr", "machine", "access_type", "scope",
                 "secret_hmac", "prev_hash", "hash", "subject"})
    CHECK(v.contains(k));
}

TEST_CASE("table output strips control characters") {
  auto e = e1();
  e.actor = "evil\x1b[2Jname";
  std::ostringstream out;
  write_table(out, std::span<const entry>(&e, 1), true, false);
  CHECK(out.str().find('\x1b') == std::string::npos);
  CHECK(out.str().find("evil?[2Jname") != std::string::npos);
}

namespace {
std::string table_of(const entry& e) {
  std::ostringstream out;
  write_table(out, std::span<const entry>(&e, 1), true, false);
  return out.str();
}
// True when `s` holds a C0 control other than '\n', DEL, a C1 control, or a byte that is not
// part of well-formed UTF-8 (a raw 0x9B is CSI to an 8-bit terminal): anything a terminal
// might act on. Decoded independently of format.cpp.
bool has_terminal_controls(std::string_view s) {
  for (std::size_t i = 0; i < s.size();) {
    auto c = static_cast<unsigned char>(s[i]);
    if (c < 0x80) {
      if ((c < 0x20 && c != '\n') || c == 0x7f) return true;
      ++i;
      continue;
    }
    std::size_t len = (c & 0xE0) == 0xC0 ? 2 : (c & 0xF0) == 0xE0 ? 3 : (c & 0xF8) == 0xF0 ? 4 : 0;
    if (len == 0 || c == 0xC0 || c == 0xC1 || i + len > s.size()) return true;
    for (std::size_t k = 1; k < len; ++k)
      if ((static_cast<unsigned char>(s[i + k]) & 0xC0) != 0x80) return true;
    if (c == 0xC2 && static_cast<unsigned char>(s[i + 1]) < 0xA0) return true;  // U+0080-U+009F
    i += len;
  }
  return false;
}
}  // namespace

TEST_CASE("table: C0, DEL, C1 (U+009B CSI), stray bytes and bidi controls are shown as '?'") {
  auto e = e1();
  e.actor = "a\x1b[2Jb\x7f" "c\xc2\x9b" "31md\x9b" "e";
  e.detail = "{\"x\":\"\xc2\x9b" "2J\xe2\x80\xae" "gnp.exe\"}";
  e.subject = "s\xc2\x85t";
  auto t = table_of(e);
  CHECK_FALSE(has_terminal_controls(t));
  CHECK(t.find("a?[2Jb?c?31md?e") != std::string::npos);
  CHECK(t.find("?2J?gnp.exe") != std::string::npos);
  CHECK(t.find("s?t") != std::string::npos);
  CHECK(t.find("\xe2\x80\xae") == std::string::npos);
  // Printable UTF-8 stays, and counts as one column per character when aligning.
  e = e1();
  e.actor = "J\xc3\xb6rg";
  auto t2 = table_of(e);
  CHECK(t2.find("J\xc3\xb6rg") != std::string::npos);
  auto header = t2.substr(0, t2.find('\n'));
  auto row = t2.substr(t2.find('\n') + 1);
  CHECK(header.find("SUBJECT") == row.find("-  ", row.find("J\xc3\xb6rg")) - 1);
}

TEST_CASE("table: DETAIL is cut at 80 characters, not inside a UTF-8 character") {
  auto e = e1();
  std::string text;
  for (int i = 0; i < 100; ++i) text += "\xc3\xa9";
  e.detail = "{\"x\":\"" + text + "\"}";
  auto c = table_cell(e.detail, 80);
  CHECK(c.ends_with("..."));
  CHECK(c.size() == 6 + 2 * 71 + 3);  // {"x":" then 71 two-byte characters, then ...
  CHECK(table_cell("", 80) == "-");
  CHECK(table_cell(std::string(80, 'a'), 80) == std::string(80, 'a'));
}

TEST_CASE("JSON lines escape DEL, C1 and bidi controls, and stay lossless for UTF-8") {
  auto e = e1();
  e.actor = "a\x7f" "b\xc2\x9b" "c\xe2\x80\xae";
  e.detail = "{\"x\":\"\xc2\x9b" "2J\"}";
  e.subject = "bad\xff" "byte";
  auto line = to_json_line(e);
  CHECK_FALSE(has_terminal_controls(line));
  CHECK(line.find("a\\u007fb\\u009bc\\u202e") != std::string::npos);
  CHECK(line.find("\"x\":\"\\u009b2J\"") != std::string::npos);
  auto v = boost::json::parse(line).as_object();
  CHECK(v["actor"].as_string() == "a\x7f" "b\xc2\x9b" "c\xe2\x80\xae");  // same text once parsed
  CHECK(v["subject"].as_string() == "bad\xef\xbf\xbd" "byte");             // U+FFFD for a stray byte
}

TEST_CASE("CSV keeps the stored bytes and quotes fields with control characters") {
  auto e = e1();
  e.actor = "a\xc2\x9b" "b";
  e.subject = "s\x1b";
  auto row = to_csv_row(e);
  CHECK(row.find(",\"a\xc2\x9b" "b\",") != std::string::npos);
  CHECK(row.ends_with(",\"s\x1b\""));
  CHECK(csv_header().ends_with(",hash,subject"));
  CHECK(csv_quote("caf\xc3\xa9") == "caf\xc3\xa9");
}
