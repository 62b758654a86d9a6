// Time-based one-time passwords (RFC 6238 over RFC 4226's HOTP) as authenticator apps use
// them: HMAC-SHA-1, 30-second steps, 6 digits, a 160-bit secret shown base32 (RFC 4648, no
// padding) in an `otpauth://totp/` URI (Google Authenticator's key URI format) and as a QR
// code. Pure functions: no storage, no clock of their own (docs/security.md, "TOTP").
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "core/clock.hpp"

namespace rsgate::auth {

inline constexpr int kTotpDigits = 6;
inline constexpr int kTotpPeriodSeconds = 30;
inline constexpr std::size_t kTotpSecretBytes = 20;
// Codes of the step before and after the current one are accepted too (clock skew, a code
// typed as it changed); a step at or before the account's last used one never is.
inline constexpr int kTotpSkewSteps = 1;

// 20 random bytes.
[[nodiscard]] std::string new_totp_secret();
// RFC 4648 base32, upper case, no padding; decode accepts lower case too, nullopt otherwise.
[[nodiscard]] std::string base32_encode(std::string_view bytes);
[[nodiscard]] std::optional<std::string> base32_decode(std::string_view text);
// The time step of `t` (micros since the epoch).
[[nodiscard]] std::int64_t totp_step(micros t);
// The 6-digit code of `secret` (raw bytes) for time step `step`.
[[nodiscard]] std::string totp_code(std::string_view secret, std::int64_t step);
// Exactly six ASCII digits.
[[nodiscard]] bool is_totp_code(std::string_view code);
// The step whose code `code` is, among now-1..now+1 and after `last_used`, compared in
// constant time; nullopt when none.
[[nodiscard]] std::optional<std::int64_t> totp_match(std::string_view secret, std::string_view code, micros now,
                                                     std::int64_t last_used);
// otpauth://totp/ISSUER:ACCOUNT?secret=...&issuer=ISSUER&algorithm=SHA1&digits=6&period=30
[[nodiscard]] std::string totp_uri(std::string_view issuer, std::string_view account, std::string_view secret);

}  // namespace rsgate::auth
