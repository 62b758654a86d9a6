// TOTP against RFC 6238's own test vectors (Appendix B, SHA-1, whose 8-digit codes end in the
// 6-digit ones), base32 against RFC 4648 §10, the acceptance window and the URI.
#include "auth/totp.hpp"

#include <catch2/catch.hpp>

using namespace rsgate;
using namespace rsgate::auth;

TEST_CASE("totp: RFC 6238 Appendix B (SHA-1), six digits") {
  const std::string secret = "12345678901234567890";
  const std::pair<std::int64_t, const char*> vectors[] = {
      {59, "287082"}, {1111111109, "081804"}, {1111111111, "050471"},
      {1234567890, "005924"}, {2000000000, "279037"}, {20000000000, "353130"}};
  for (auto [t, code] : vectors) {
    INFO(t);
    CHECK(totp_step(t * 1'000'000) == t / 30);
    CHECK(totp_code(secret, totp_step(t * 1'000'000)) == code);
  }
}

TEST_CASE("totp: base32 as RFC 4648 §10, without padding") {
  const std::pair<const char*, const char*> vectors[] = {{"", ""},         {"f", "MY"},           {"fo", "MZXQ"},
                                                         {"foo", "MZXW6"}, {"foob", "MZXW6YQ"}, {"fooba", "MZXW6YTB"},
                                                         {"foobar", "MZXW6YTBOI"}};
  for (auto [plain, coded] : vectors) {
    CHECK(base32_encode(plain) == coded);
    CHECK(base32_decode(coded) == std::optional<std::string>(plain));
  }
  CHECK(base32_decode("mzxw6ytboi") == std::optional<std::string>("foobar"));
  CHECK_FALSE(base32_decode("MZXW6YTBO1"));  // 1 is not a base32 symbol
  CHECK_FALSE(base32_decode("MZXW=="));
  auto s = new_totp_secret();
  CHECK(s.size() == 20);
  CHECK(base32_decode(base32_encode(s)) == std::optional<std::string>(s));
}

TEST_CASE("totp: a code matches its step and one either side, never a used step, never a malformed code") {
  const std::string secret = "12345678901234567890";
  const micros now = 1111111111LL * 1'000'000;  // step 37037037
  const auto step = totp_step(now);
  CHECK(totp_match(secret, "050471", now, 0) == step);
  CHECK(totp_match(secret, totp_code(secret, step - 1), now, 0) == step - 1);
  CHECK(totp_match(secret, totp_code(secret, step + 1), now, 0) == step + 1);
  CHECK_FALSE(totp_match(secret, totp_code(secret, step + 2), now, 0));
  CHECK_FALSE(totp_match(secret, totp_code(secret, step - 2), now, 0));
  CHECK_FALSE(totp_match(secret, "050471", now, step));      // used already
  CHECK_FALSE(totp_match(secret, "050471", now, step + 1));  // a later one was used
  CHECK(totp_match(secret, totp_code(secret, step + 1), now, step) == step + 1);
  for (auto bad : {"", "05047", "0504711", "05047a", " 50471", "050471\n"}) CHECK_FALSE(totp_match(secret, bad, now, 0));
  CHECK(is_totp_code("000000"));
  CHECK_FALSE(is_totp_code("00000O"));
}

TEST_CASE("totp: the otpauth URI names the issuer and account, escaped, and the parameters apps read") {
  CHECK(totp_uri("gw 1", "alice@example", "foobar") ==
        "otpauth://totp/gw%201:alice%40example?secret=MZXW6YTBOI&issuer=gw%201&algorithm=SHA1&digits=6&period=30");
}
