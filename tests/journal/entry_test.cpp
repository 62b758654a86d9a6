// The canonical encoding is the contract with independent verifiers: its layout is checked
// byte by byte and its hash pinned by a golden value, so any change shows up here.
#include "journal/entry.hpp"

#include <catch2/catch.hpp>

using namespace rsgate;
using namespace rsgate::journal;

namespace {
entry golden() {
  entry e;
  e.seq = 1;
  e.ts = 1'795'824'000'000'000;
  e.gateway = "gw1";
  e.kind = "session.attach";
  e.actor = "alice";
  e.source = "203.0.113.7:51234";
  e.session_id = "S1";
  e.pmr = "12345,677,000";
  e.machine = "9009-42A*7801234";
  e.access_type = "ssh";
  e.scope = "hmc";
  e.result = outcome::ok;
  e.detail = "{}";
  e.prev_hash = std::string(kGenesisHash);
  return e;
}
}  // namespace

TEST_CASE("canonical encoding layout") {
  auto enc = canonical_encoding(golden());
  std::string tag(kEncodingTag);
  REQUIRE(enc.size() > tag.size() + 1 + 16);
  CHECK(std::string(enc.begin(), enc.begin() + static_cast<long>(tag.size())) == tag);
  CHECK(enc[tag.size()] == 0);
  // seq = 1 as big-endian u64
  bytes seq(enc.begin() + static_cast<long>(tag.size()) + 1, enc.begin() + static_cast<long>(tag.size()) + 9);
  CHECK(to_hex(seq) == "0000000000000001");
  // ts big-endian
  bytes ts(enc.begin() + static_cast<long>(tag.size()) + 9, enc.begin() + static_cast<long>(tag.size()) + 17);
  CHECK(to_hex(ts) == "0006614adb996000");
  // first field: gateway "gw1" with a u32 length prefix
  bytes gw(enc.begin() + static_cast<long>(tag.size()) + 17, enc.begin() + static_cast<long>(tag.size()) + 24);
  CHECK(to_hex(gw) == "00000003677731");
  // ends with the raw 32-byte prev_hash
  CHECK(to_hex(bytes(enc.end() - 32, enc.end())) == kGenesisHash);
  // total: tag+NUL + 16 + 12 fields with 4-byte prefixes + their bytes + 32
  std::size_t fields = 3 + 14 + 5 + 17 + 2 + 13 + 16 + 3 + 3 + 2 + 0 + 2;
  CHECK(enc.size() == tag.size() + 1 + 16 + 12 * 4 + fields + 32);
}

TEST_CASE("hash is pinned and covers every field") {
  auto e = golden();
  const auto h = compute_hash(e);
  CHECK(h.size() == 64);
  CHECK(h == "1523338ac5c2781b07a82af9a7c30dea2d91614cf59bb5c580463217da47fde8");
  auto changed = [&](auto mutate) {
    entry c = golden();
    mutate(c);
    return compute_hash(c) != h;
  };
  CHECK(changed([](entry& c) { c.seq = 2; }));
  CHECK(changed([](entry& c) { c.ts += 1; }));
  CHECK(changed([](entry& c) { c.gateway = "gw2"; }));
  CHECK(changed([](entry& c) { c.kind = "session.end"; }));
  CHECK(changed([](entry& c) { c.actor = "bob"; }));
  CHECK(changed([](entry& c) { c.source = "x"; }));
  CHECK(changed([](entry& c) { c.session_id = "S2"; }));
  CHECK(changed([](entry& c) { c.pmr = "TS012345678"; }));
  CHECK(changed([](entry& c) { c.machine = "9009-42A*7801235"; }));
  CHECK(changed([](entry& c) { c.access_type = "sftp"; }));
  CHECK(changed([](entry& c) { c.scope = "partition:LP01"; }));
  CHECK(changed([](entry& c) { c.result = outcome::denied; }));
  CHECK(changed([](entry& c) { c.secret_hmac = "ab"; }));
  CHECK(changed([](entry& c) { c.detail = "{ }"; }));
  CHECK(changed([](entry& c) { c.prev_hash[0] = '1'; }));
  CHECK(changed([](entry& c) { c.subject = "bob"; }));
  // Length prefixes keep field boundaries: moving a byte between fields changes the hash.
  CHECK(changed([](entry& c) { c.actor = "alic"; c.source = "e203.0.113.7:51234"; }));
}

TEST_CASE("malformed prev_hash is refused") {
  auto e = golden();
  e.prev_hash = "xyz";
  CHECK_THROWS_AS(compute_hash(e), std::invalid_argument);
}

TEST_CASE("validate_for_append") {
  auto e = golden();
  CHECK(validate_for_append(e).empty());
  e.kind = "";
  CHECK_FALSE(validate_for_append(e).empty());
  e = golden();
  e.actor = "a\nb";
  CHECK_FALSE(validate_for_append(e).empty());
  e = golden();
  e.detail = "[1,2]";
  CHECK_FALSE(validate_for_append(e).empty());
  e.detail = "{not json";
  CHECK_FALSE(validate_for_append(e).empty());
  e = golden();
  e.scope = std::string(257, 'x');
  CHECK_FALSE(validate_for_append(e).empty());
  e = golden();
  e.detail = "{\"x\":\"" + std::string(17000, 'a') + "\"}";
  CHECK_FALSE(validate_for_append(e).empty());
}

TEST_CASE("signed statements differ by kind and content") {
  auto a = signed_statement(statement::checkpoint, "gw", 5, kGenesisHash);
  auto b = signed_statement(statement::head, "gw", 5, kGenesisHash);
  auto c = signed_statement(statement::checkpoint, "gw", 6, kGenesisHash);
  CHECK(a != b);
  CHECK(a != c);
  CHECK(to_hex(a).starts_with(to_hex(as_bytes("rsgate-journal-checkpoint-v1")) + "00" + "00000002" +
                              to_hex(as_bytes("gw")) + "0000000000000005"));
}

TEST_CASE("subject: absent from the encoding when empty, appended length-prefixed otherwise") {
  // An entry without a subject encodes exactly as before the field existed: the golden hash
  // above is the v1 hash, so every journal written before keeps verifying.
  auto v1 = canonical_encoding(golden());
  auto e = golden();
  e.subject = "bob";
  auto v2 = canonical_encoding(e);
  REQUIRE(v2.size() == v1.size() + 4 + 3);
  CHECK(bytes(v2.begin(), v2.begin() + static_cast<long>(v1.size())) == v1);
  CHECK(to_hex(bytes(v2.end() - 7, v2.end())) == "00000003626f62");
  // Computed independently with Python (hashlib, struct) from docs/journal.md §5.
  CHECK(compute_hash(e) == "f5a98345ab64cb28a6ebedebc349a34d613f41caf8ea13654288b4b05a109986");
  // Moving bytes between detail and subject changes the hash (prefixes keep the boundary).
  auto a = golden();
  a.detail = "{}";
  a.subject = "xy";
  auto b = golden();
  b.detail = "{}";
  b.subject = "xyz";
  CHECK(compute_hash(a) != compute_hash(b));
}

TEST_CASE("gateway names and escaping for the journal") {
  CHECK(is_valid_gateway_name("gw-2.prod_1"));
  CHECK(is_valid_gateway_name(std::string(64, 'a')));
  for (std::string bad : {std::string(), std::string(65, 'a'), std::string("gw 1"), std::string("gw\x1b[2J"),
                          std::string("gw\x9b"), std::string("gw/1"), std::string("g\xc3\xa9")}) {
    INFO(bad);
    CHECK_FALSE(is_valid_gateway_name(bad));
  }
  CHECK(escape_for_journal("alice") == "alice");
  CHECK(escape_for_journal("a\tb\\c\x9b") == "a\\x09b\\x5cc\\x9b");
  // Cut at the limit, never inside an escape.
  CHECK(escape_for_journal("abc\x01", 5) == "abc");
  CHECK(escape_for_journal(std::string(300, 'x')).size() == kMaxFieldBytes);
  auto e = golden();
  e.subject = escape_for_journal(std::string("\x1b[2J\0", 6));
  CHECK(validate_for_append(e).empty());
  e.subject = "a\nb";
  CHECK_FALSE(validate_for_append(e).empty());
}
