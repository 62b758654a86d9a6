// Session keys: format, check symbol, forgiving input, refusal of near misses; MD5-CHAP
// against values computed independently; the failure limiter's window, lock-out and bound.
#include "auth/session_key.hpp"

#include <array>
#include <catch2/catch.hpp>
#include <set>
#include <vector>

#include "auth/chap_md5.hpp"
#include "auth/rate_limit.hpp"
#include "core/encoding.hpp"

using namespace rsgate;
using namespace rsgate::auth;

namespace {
constexpr std::string_view kAlphabet = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";

// A canonical 13-symbol key with these 12 data values and its correct check symbol.
std::string key_of(const std::array<int, 12>& data) {
  std::string s;
  for (int d : data) s.push_back(kAlphabet[static_cast<size_t>(d)]);
  auto c = session_key_check(s);
  REQUIRE(c);
  return s + *c;
}

// Backgrounds for the exhaustive checks: the errors below are placed into each of them. The
// check is linear, so one background would do; several show it does not depend on the rest.
std::vector<std::array<int, 12>> backgrounds() {
  std::vector<std::array<int, 12>> out = {{}, {}, {}};
  for (int i = 0; i < 12; ++i) {
    out[1][static_cast<size_t>(i)] = 31;
    out[2][static_cast<size_t>(i)] = (7 * i + 3) % 32;
  }
  return out;
}
}  // namespace

TEST_CASE("session key: the worked example of docs/protocol.md section 7") {
  // 7KQ4M2XP9RTA: s = x * (s XOR d) over GF(32) = GF(2)[x]/(x^5+x^2+1) ends at 8 -> '8'.
  CHECK(session_key_check("7KQ4M2XP9RTA") == '8');
  CHECK(session_key_check("000000000000") == '0');
  CHECK(session_key_check("000000000001") == '2');  // 1 * x
  CHECK(session_key_check("100000000000") == 'E');  // x^12 = x^3 + x^2 + x = 0b01110 = 14 -> 'E'
  CHECK_FALSE(session_key_check("7KQ4M2XP9RTU"));  // U is not a symbol
  CHECK_FALSE(session_key_check("7KQ4M2XP9RT"));
}

TEST_CASE("session key: display form, check symbol and typing tolerance") {
  CHECK(normalize_session_key("7KQ4-M2XP-9RTA-8") == "7KQ4M2XP9RTA8");
  CHECK(normalize_session_key("7kq4 m2xp 9rta 8") == "7KQ4M2XP9RTA8");
  CHECK(normalize_session_key("7KQ4M2XP9RTA8") == "7KQ4M2XP9RTA8");
  CHECK(display_session_key("7KQ4M2XP9RTA8") == "7KQ4-M2XP-9RTA-8");
  // I/L read as 1, O as 0, in the data and in the check symbol.
  CHECK(normalize_session_key("OOOO-OOOO-OOOO-O") == "0000000000000");
  CHECK(normalize_session_key("0000-0000-000L-2") == "0000000000012");
  CHECK(normalize_session_key("0000-0000-000i-2") == "0000000000012");
  for (const char* bad : {"", "7KQ4-M2XP-9RTA", "7KQ4-M2XP-9RTA-C", "7KQ4-M2XP-9RAT-8",
                          "7KQ4-M2XP-9RTA-88", "7KQ4-M2XP-9RTU-8", "7KQ4_M2XP_9RTA_8",
                          "7KQ4-M2XP-9RTA-W", "7KQ4-M2XP-9RTA-*", "7KQ4-M2XP-9RTA-U"}) {
    INFO(bad);
    CHECK_FALSE(normalize_session_key(bad).has_value());
  }
}

TEST_CASE("session key check: every check symbol is one of the 32 readable symbols") {
  // Each check value 0..31 is reached (the last data symbol alone sweeps them all), and each
  // is a symbol of the alphabet: never * ~ $ = U.
  std::set<char> seen;
  for (int d = 0; d < 32; ++d) {
    std::array<int, 12> data{};
    data[11] = d;
    seen.insert(key_of(data).back());
  }
  CHECK(seen.size() == 32);
  for (char c : seen) CHECK(kAlphabet.find(c) != std::string_view::npos);
}

TEST_CASE("session key check: every single-symbol error is caught (exhaustive)") {
  // Every position (the check symbol included), every original symbol, every other symbol.
  std::size_t tried = 0;
  for (auto base : backgrounds()) {
    for (std::size_t pos = 0; pos < 13; ++pos) {
      for (int from = 0; from < 32; ++from) {
        auto data = base;
        if (pos < 12) data[pos] = from;
        auto key = key_of(data);
        if (pos == 12 && key[12] != kAlphabet[static_cast<size_t>(from)]) continue;  // check fixed by data
        REQUIRE(normalize_session_key(key) == key);
        for (int to = 0; to < 32; ++to) {
          if (to == from) continue;
          auto typo = key;
          typo[pos] = kAlphabet[static_cast<size_t>(to)];
          ++tried;
          if (normalize_session_key(typo)) FAIL("accepted " << typo << " for " << key);
        }
      }
    }
  }
  CHECK(tried > 3 * 12 * 32 * 31);
}

TEST_CASE("session key check: every swap of two different symbols is caught (exhaustive)") {
  // All pairs of positions (adjacent or not, the check symbol included) and all ordered pairs
  // of different symbols at them.
  std::size_t tried = 0;
  for (auto base : backgrounds()) {
    for (std::size_t i = 0; i < 13; ++i) {
      for (std::size_t j = i + 1; j < 13; ++j) {
        for (int a = 0; a < 32; ++a) {
          for (int b = 0; b < 32; ++b) {
            if (a == b) continue;
            auto data = base;
            data[i] = a;
            if (j < 12) data[j] = b;
            auto key = key_of(data);
            if (key[i] == key[j]) continue;  // j is the check and it came out equal: no swap
            auto swapped = key;
            std::swap(swapped[i], swapped[j]);
            ++tried;
            if (normalize_session_key(swapped)) FAIL("accepted " << swapped << " for " << key);
          }
        }
      }
    }
  }
  CHECK(tried > 3 * 66 * 32 * 31);
}

TEST_CASE("RFC 1994 MD5-CHAP response") {
  // MD5(0x01 || "secret" || 00 01 .. 0f), computed independently with Python's hashlib.
  bytes challenge;
  for (int i = 0; i < 16; ++i) challenge.push_back(static_cast<std::uint8_t>(i));
  auto r = chap_md5_response(1, "secret", challenge);
  CHECK(to_hex(r) == "740e86463bda3a4d7017d6e0fba0699d");
  CHECK(chap_md5_verify(1, "secret", challenge, r));
  CHECK_FALSE(chap_md5_verify(2, "secret", challenge, r));
  CHECK_FALSE(chap_md5_verify(1, "secreT", challenge, r));
  CHECK_FALSE(chap_md5_verify(1, "secret", challenge, std::span(r).first(15)));
}

TEST_CASE("failure limiter: window, lock-out, success resets, bounded memory") {
  limit_policy p;
  p.max_failures = 3;
  p.window = 60;
  p.lockout = 100;
  p.max_keys = 4;
  failure_limiter l(p);
  CHECK(l.allowed("m1", 0));
  CHECK_FALSE(l.record_failure("m1", 0));
  CHECK_FALSE(l.record_failure("m1", 10));
  CHECK(l.allowed("m1", 20));
  CHECK(l.record_failure("m1", 20));  // third within the window: locked
  CHECK_FALSE(l.allowed("m1", 21));
  CHECK(l.locked_until("m1", 21) == 120);
  CHECK(l.allowed("m1", 120));
  // Failures outside the window do not add up.
  CHECK_FALSE(l.record_failure("m2", 0));
  CHECK_FALSE(l.record_failure("m2", 50));
  CHECK_FALSE(l.record_failure("m2", 115));
  CHECK(l.allowed("m2", 116));
  l.record_success("m2");
  CHECK(l.locked_until("m2", 116) == 0);
  // A flood of distinct keys stays within max_keys.
  for (int i = 0; i < 100; ++i) l.record_failure("flood" + std::to_string(i), 200);
  CHECK(l.tracked() <= 4);
}
