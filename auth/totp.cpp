// See totp.hpp.
#include "auth/totp.hpp"

#include <fmt/format.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <sodium.h>

#include <stdexcept>

#include "core/encoding.hpp"

namespace rsgate::auth {
namespace {

constexpr std::string_view kBase32 = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

}  // namespace

std::string new_totp_secret() {
  std::string s(kTotpSecretBytes, '\0');
  randombytes_buf(s.data(), s.size());
  return s;
}

std::string base32_encode(std::string_view bytes) {
  std::string out;
  std::uint32_t buffer = 0;
  int bits = 0;
  for (unsigned char c : bytes) {
    buffer = (buffer << 8) | c;
    bits += 8;
    while (bits >= 5) {
      out += kBase32[(buffer >> (bits - 5)) & 31];
      bits -= 5;
    }
  }
  if (bits > 0) out += kBase32[(buffer << (5 - bits)) & 31];
  return out;
}

std::optional<std::string> base32_decode(std::string_view text) {
  std::string out;
  std::uint32_t buffer = 0;
  int bits = 0;
  for (char ch : text) {
    char c = (ch >= 'a' && ch <= 'z') ? static_cast<char>(ch - 'a' + 'A') : ch;
    auto v = kBase32.find(c);
    if (v == std::string_view::npos) return std::nullopt;
    buffer = (buffer << 5) | static_cast<std::uint32_t>(v);
    bits += 5;
    if (bits >= 8) {
      out += static_cast<char>((buffer >> (bits - 8)) & 0xff);
      bits -= 8;
    }
  }
  return out;
}

std::int64_t totp_step(micros t) { return t / (static_cast<micros>(kTotpPeriodSeconds) * 1'000'000); }

std::string totp_code(std::string_view secret, std::int64_t step) {
  unsigned char msg[8];
  for (int i = 7; i >= 0; --i) {
    msg[i] = static_cast<unsigned char>(step & 0xff);
    step >>= 8;
  }
  unsigned char mac[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  if (!HMAC(EVP_sha1(), secret.data(), static_cast<int>(secret.size()), msg, sizeof msg, mac, &len) || len != 20)
    throw std::runtime_error("HMAC-SHA-1 failed");
  // RFC 4226 §5.3, dynamic truncation.
  const int offset = mac[19] & 0x0f;
  const std::uint32_t bin = (static_cast<std::uint32_t>(mac[offset] & 0x7f) << 24) |
                            (static_cast<std::uint32_t>(mac[offset + 1]) << 16) |
                            (static_cast<std::uint32_t>(mac[offset + 2]) << 8) | mac[offset + 3];
  return fmt::format("{:06d}", bin % 1'000'000);
}

bool is_totp_code(std::string_view code) {
  if (code.size() != kTotpDigits) return false;
  for (char c : code)
    if (c < '0' || c > '9') return false;
  return true;
}

std::optional<std::int64_t> totp_match(std::string_view secret, std::string_view code, micros now,
                                       std::int64_t last_used) {
  if (!is_totp_code(code)) return std::nullopt;
  const auto step = totp_step(now);
  std::optional<std::int64_t> found;
  // Every candidate is computed and compared, so timing tells nothing of which matched.
  for (std::int64_t s = step - kTotpSkewSteps; s <= step + kTotpSkewSteps; ++s) {
    auto expected = totp_code(secret, s);
    const bool same = sodium_memcmp(expected.data(), code.data(), kTotpDigits) == 0;
    if (same && s > last_used && !found) found = s;
  }
  return found;
}

std::string totp_uri(std::string_view issuer, std::string_view account, std::string_view secret) {
  const auto i = percent_encode(issuer);
  return fmt::format("otpauth://totp/{}:{}?secret={}&issuer={}&algorithm=SHA1&digits={}&period={}", i,
                     percent_encode(account), base32_encode(secret), i, kTotpDigits, kTotpPeriodSeconds);
}

}  // namespace rsgate::auth
