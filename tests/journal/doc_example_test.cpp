// docs/journal.md §17, the worked example, is a contract an auditor reproduces by hand: this
// test reads that section of the document itself and recomputes, from the values printed
// there only, every entry's hash and the chain, the canonical encoding table (bytes and
// offsets), both signed statements, the key_id and both signatures. When the implementation
// or the document changes, they must change together.
#include "journal/entry.hpp"

#include <sodium.h>

#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <catch2/catch.hpp>
#include <sstream>

#include "core/files.hpp"
#include "journal/keys.hpp"
#include "journal/reader.hpp"
#include "tests/support/process.hpp"

using namespace rsgate;
using namespace rsgate::journal;

namespace {

std::string section_17() {
  auto doc = read_file(test::source_path("docs/journal.md"), 1 << 22);
  auto from = doc.find("\n## 17. Worked example");
  auto to = doc.find("\n## 18.");
  REQUIRE(from != std::string::npos);
  REQUIRE(to != std::string::npos);
  return doc.substr(from, to - from);
}

std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> out;
  std::istringstream in(text);
  std::string l;
  while (std::getline(in, l)) out.push_back(l);
  return out;
}

bool is_hex(std::string_view s) {
  return !s.empty() && s.find_first_not_of("0123456789abcdefABCDEF") == std::string_view::npos;
}

// Every `...` span of a line that is hex, concatenated.
std::string backticked_hex(const std::string& line) {
  std::string out;
  for (auto at = line.find('`'); at != std::string::npos;) {
    auto end = line.find('`', at + 1);
    if (end == std::string::npos) break;
    auto token = line.substr(at + 1, end - at - 1);
    if (is_hex(token)) out += token;
    at = line.find('`', end + 1);
  }
  return out;
}

// The value cell of the table row "| name | `hex` ... |".
std::string table_value(const std::vector<std::string>& lines, const std::string& name) {
  for (auto& l : lines)
    if (l.starts_with("| " + name + " |")) {
      auto cell = l.substr(name.size() + 4);
      auto a = cell.find('`'), b = cell.find('`', a + 1);
      REQUIRE(b != std::string::npos);
      return cell.substr(a + 1, b - a - 1);
    }
  FAIL("no row '" << name << "' in docs/journal.md §17");
  return {};
}

// The indented hex block after the line containing `marker` (hex tokens up to the comment).
std::string statement_after(const std::vector<std::string>& lines, const std::string& marker) {
  std::size_t i = 0;
  while (i < lines.size() && lines[i].find(marker) == std::string::npos) ++i;
  REQUIRE(i < lines.size());
  ++i;
  while (i < lines.size() && lines[i].empty()) ++i;
  std::string hex;
  for (; i < lines.size() && lines[i].starts_with("    "); ++i) {
    std::istringstream words(lines[i]);
    std::string w;
    while (words >> w && is_hex(w)) hex += w;
  }
  return hex;
}

entry entry_of(const boost::json::object& o) {
  entry e;
  e.seq = o.at("seq").as_int64();
  e.ts = o.at("ts_us").as_int64();
  auto str = [&](const char* k) { return std::string(o.at(k).as_string()); };
  e.gateway = str("gateway");
  e.kind = str("kind");
  e.actor = str("actor");
  e.source = str("source");
  e.session_id = str("session_id");
  e.pmr = str("pmr");
  e.machine = str("machine");
  e.access_type = str("access_type");
  e.scope = str("scope");
  e.result = parse_outcome(str("outcome")).value();
  e.secret_hmac = str("secret_hmac");
  e.detail = boost::json::serialize(o.at("detail"));  // the compact form the gateway stores
  e.prev_hash = str("prev_hash");
  e.hash = str("hash");
  e.subject = str("subject");
  return e;
}

bool signature_holds(const std::string& pk_hex, const bytes& message, const std::string& sig_hex) {
  auto pk = parse_public_key(pk_hex);
  REQUIRE(pk);
  return verify_signature(*pk, message, sig_hex);
}

}  // namespace

TEST_CASE("docs/journal.md §17: every hash of the worked example follows from its values") {
  auto lines = lines_of(section_17());
  std::vector<entry> entries;
  for (auto& l : lines)
    if (l.starts_with("{\"seq\":")) entries.push_back(entry_of(boost::json::parse(l).as_object()));
  REQUIRE(entries.size() == 5);
  std::string prev(kGenesisHash);
  for (auto& e : entries) {
    INFO("entry " << e.seq);
    CHECK(e.seq == (&e - entries.data()) + 1);
    CHECK(e.prev_hash == prev);
    CHECK(compute_hash(e) == e.hash);
    prev = e.hash;
  }
  // The checkpoint names the entry before it.
  auto cp = boost::json::parse(entries[4].detail).as_object();
  CHECK(entries[4].kind == "journal.checkpoint");
  CHECK(cp["through_seq"].as_int64() == 4);
  CHECK(cp["through_hash"].as_string() == entries[3].hash);
}

TEST_CASE("docs/journal.md §17: the canonical encoding table is entry 2's encoding, byte for byte") {
  auto lines = lines_of(section_17());
  entry two;
  for (auto& l : lines)
    if (l.starts_with("{\"seq\":2,")) two = entry_of(boost::json::parse(l).as_object());
  REQUIRE(two.seq == 2);
  REQUIRE_FALSE(two.subject.empty());  // the example shows the subject extension
  std::string hex;
  std::size_t declared = 0;
  for (auto& l : lines) {
    if (auto p = l.find("Entry 2's canonical encoding is "); p != std::string::npos)
      declared = std::stoul(l.substr(p + 32));
    if (l.size() > 2 && l.starts_with("| ") && std::isdigit(static_cast<unsigned char>(l[2]))) {
      // The offset column is where this row's bytes start.
      CHECK(std::stoul(l.substr(2)) == hex.size() / 2);
      hex += backticked_hex(l.substr(l.find('|', 2)));
    }
  }
  auto enc = canonical_encoding(two);
  CHECK(declared == enc.size());
  CHECK(hex == to_hex(enc));
}

TEST_CASE("docs/journal.md §17: statements, key_id and signatures verify") {
  auto lines = lines_of(section_17());
  std::vector<entry> entries;
  for (auto& l : lines)
    if (l.starts_with("{\"seq\":")) entries.push_back(entry_of(boost::json::parse(l).as_object()));
  REQUIRE(entries.size() == 5);
  const auto pk = table_value(lines, "public key");
  auto cp_statement = signed_statement(statement::checkpoint, entries[4].gateway, 4, entries[4].prev_hash);
  CHECK(statement_after(lines, "Its checkpoint statement") == to_hex(cp_statement));
  auto sig = std::string(boost::json::parse(entries[4].detail).as_object()["signature"].as_string());
  CHECK(signature_holds(pk, cp_statement, sig));

  auto head_statement = signed_statement(statement::head, entries[4].gateway, 5, entries[4].hash);
  CHECK(statement_after(lines, "77-byte head statement") == to_hex(head_statement));
  CHECK(table_value(lines, "head seq") == "5");
  CHECK(table_value(lines, "head hash") == entries[4].hash);
  CHECK(signature_holds(pk, head_statement, table_value(lines, "head signature")));

  auto raw = from_hex(pk);
  REQUIRE(raw);
  std::uint8_t d[32];
  crypto_hash_sha256(d, raw->data(), raw->size());
  CHECK(to_hex(std::span<const std::uint8_t>(d, 8)) == table_value(lines, "key_id"));
  auto id = std::string(boost::json::parse(entries[4].detail).as_object()["key_id"].as_string());
  CHECK(id == table_value(lines, "key_id"));
}
