// Fuzz target for the journal entry rules (journal/entry.hpp): validate_for_append judges
// caller-supplied fields (names, JSON detail) that start as network input, and
// canonical_encoding/compute_hash run on whatever a journal file holds when it is verified.
// None may crash; compute_hash may only refuse a prev_hash that is not 64 hex digits, with
// std::invalid_argument; the encoding must have the documented layout (the v1 fields, then
// `subject` only when it is not empty, so an empty subject leaves the v1 encoding) and the
// hash be 64 lowercase hex digits.
//
// Input: fields separated by '|': SEQ | TS | GATEWAY | KIND | ACTOR | SOURCE | SESSION_ID |
// PMR | MACHINE | ACCESS_TYPE | SCOPE | OUTCOME | SECRET_HMAC | DETAIL | PREV_HASH | SUBJECT,
// missing ones empty (SEQ and TS 0, DETAIL "{}", PREV_HASH the genesis hash).
#include "journal/entry.hpp"

#include <algorithm>
#include <charconv>
#include <stdexcept>
#include <string>

#include "tests/fuzz/fuzz_support.hpp"

namespace journal = rsgate::journal;

namespace {

std::int64_t to_int(std::string_view s) {
  std::int64_t v = 0;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  return ec == std::errc{} && p == s.data() + s.size() ? v : 0;
}

bool is_lower_hex(std::string_view s) {
  for (char c : s)
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  return true;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  auto parts = rsgate::fuzz::split(rsgate::fuzz::as_text(data, size), '|');
  std::size_t at = 0;
  auto next = [&](std::string_view fallback) {
    return std::string(at < parts.size() ? parts[at++] : fallback);
  };

  journal::entry e;
  e.seq = to_int(next("0"));
  e.ts = to_int(next("0"));
  for (auto* field : {&e.gateway, &e.kind, &e.actor, &e.source, &e.session_id, &e.pmr, &e.machine,
                      &e.access_type, &e.scope})
    *field = next("");
  auto outcome_text = next("ok");
  e.result = journal::parse_outcome(outcome_text).value_or(journal::outcome::error);
  e.secret_hmac = next("");
  e.detail = next("{}");
  e.prev_hash = next(journal::kGenesisHash);
  e.subject = next("");

  auto why = journal::validate_for_append(e);
  if (why.empty()) {
    FUZZ_CHECK(!e.kind.empty() && e.detail.size() <= journal::kMaxDetailBytes);
    FUZZ_CHECK(e.detail.find('{') != std::string::npos);
  }

  const bool good_prev = e.prev_hash.size() == 64 && rsgate::from_hex(e.prev_hash).has_value();
  try {
    auto enc = journal::canonical_encoding(e);
    FUZZ_CHECK(good_prev);
    std::size_t expected = journal::kEncodingTag.size() + 1 + 8 + 8 + 32;
    for (const std::string* s : {&e.gateway, &e.kind, &e.actor, &e.source, &e.session_id, &e.pmr,
                                 &e.machine, &e.access_type, &e.scope, &e.secret_hmac, &e.detail})
      expected += 4 + s->size();
    expected += 4 + journal::to_string(e.result).size();
    if (!e.subject.empty()) expected += 4 + e.subject.size();
    FUZZ_CHECK(enc.size() == expected);
    // The subject extends the v1 encoding and nothing else.
    auto v1 = e;
    v1.subject.clear();
    auto base = journal::canonical_encoding(v1);
    FUZZ_CHECK(std::equal(base.begin(), base.end(), enc.begin()));
    if (!e.subject.empty()) FUZZ_CHECK(journal::compute_hash(v1) != journal::compute_hash(e));

    auto h = journal::compute_hash(e);
    FUZZ_CHECK(h.size() == 64 && is_lower_hex(h));
    FUZZ_CHECK(journal::compute_hash(e) == h);
    // The hash covers every field: one changed byte gives another hash.
    auto changed = e;
    changed.detail.push_back(' ');
    FUZZ_CHECK(journal::compute_hash(changed) != h);

    auto st = journal::signed_statement(journal::statement::checkpoint, e.gateway, e.seq, h);
    FUZZ_CHECK(st.size() > 32);
  } catch (const std::invalid_argument&) {
    FUZZ_CHECK(!good_prev);
  }
  return 0;
}
