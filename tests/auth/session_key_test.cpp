// Session keys: format, check symbol, forgiving input, refusal of near misses; MD5-CHAP
// against values computed independently; the failure limiter's window, lock-out and bound.
#include "auth/session_key.hpp"

#include <catch2/catch.hpp>
#include <set>

#include "auth/chap_md5.hpp"
#include "auth/rate_limit.hpp"
#include "core/encoding.hpp"

using namespace rsgate;
using namespace rsgate::auth;

TEST_CASE("session key: display form, check symbol and typing tolerance") {
  // 7KQ4M2XP9RTA = 274408006306030410; mod 37 = 28 -> 'W'.
  CHECK(normalize_session_key("7KQ4-M2XP-9RTA-W") == "7KQ4M2XP9RTAW");
  CHECK(normalize_session_key("7kq4 m2xp 9rta w") == "7KQ4M2XP9RTAW");
  CHECK(normalize_session_key("7KQ4M2XP9RTAW") == "7KQ4M2XP9RTAW");
  CHECK(display_session_key("7KQ4M2XP9RTAW") == "7KQ4-M2XP-9RTA-W");
  // I/L read as 1, O as 0.
  auto k = normalize_session_key("1000-0000-0000-" + std::string(1, '0'));
  CHECK(normalize_session_key("L0O0-0000-0000-0").has_value() == false);  // check symbol differs
  CHECK(normalize_session_key("I0O0-0000-0000-") == std::nullopt);
  (void)k;
  for (const char* bad : {"", "7KQ4-M2XP-9RTA", "7KQ4-M2XP-9RTA-C", "7KQ4-M2XP-9RAT-W",
                          "7KQ4-M2XP-9RTA-WW", "7KQ4-M2XP-9RTU-W", "7KQ4_M2XP_9RTA_W"}) {
    INFO(bad);
    CHECK_FALSE(normalize_session_key(bad).has_value());
  }
}

TEST_CASE("generated session keys are well formed and distinct") {
  std::set<std::string> seen;
  for (int i = 0; i < 500; ++i) {
    auto k = generate_session_key();
    CHECK(k.size() == 16);
    CHECK(k[4] == '-');
    CHECK(k[9] == '-');
    CHECK(k[14] == '-');
    auto c = normalize_session_key(k);
    REQUIRE(c);
    CHECK(display_session_key(*c) == k);
    seen.insert(k);
  }
  CHECK(seen.size() == 500);
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
