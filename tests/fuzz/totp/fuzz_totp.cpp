// Fuzz target for TOTP's parsers (auth/totp.hpp): the `totp` field of a login reaches
// is_totp_code and totp_match from the network, and base32 reads otpauth URIs. They must
// never crash; base32 must round-trip what it decodes; a code that matches must be six digits
// and its step within one of now, after the last used one.
#include "auth/totp.hpp"

#include <string>

#include "tests/fuzz/fuzz_support.hpp"

namespace auth = rsgate::auth;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  auto text = rsgate::fuzz::as_text(data, size);
  if (auto bytes = auth::base32_decode(text)) {
    auto again = auth::base32_decode(auth::base32_encode(*bytes));
    FUZZ_CHECK(again && *again == *bytes);
  }
  const std::string secret = "12345678901234567890";
  const rsgate::micros now = 1111111111LL * 1'000'000;
  const auto step = auth::totp_step(now);
  if (auto m = auth::totp_match(secret, text, now, step - 1)) {
    FUZZ_CHECK(auth::is_totp_code(text));
    FUZZ_CHECK(*m >= step && *m <= step + 1);
    FUZZ_CHECK(auth::totp_code(secret, *m) == text);
  }
  return 0;
}
