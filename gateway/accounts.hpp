// Accounts' second factor (docs/security.md, "TOTP"): enrolment of an account's TOTP secret
// and recovery codes in state.db, and the QR code an authenticator app scans. Shared by the
// administration commands (`rsgate user add`, `user totp-reset`) and the service.
#pragma once
#include <string>
#include <string_view>
#include <vector>

#include "core/clock.hpp"
#include "gateway/data_dir.hpp"
#include "gateway/state.hpp"

namespace rsgate::gateway {

inline constexpr int kRecoveryCodes = 10;

// Representatives and administrators sign in with a password and a TOTP code (SPEC §4).
[[nodiscard]] bool role_needs_totp(std::string_view role);

// What an enrolment shows once: the otpauth URI (its secret) and the recovery codes, each a
// 60-bit code in the session key's form (auth/session_key.hpp), usable once in place of a code.
struct totp_enrolment {
  std::string uri;
  std::vector<std::string> recovery_codes;
};
// Enrols `user` anew in `st` (replacing an earlier secret and codes): the secret sealed with
// the data directory's master key, the codes kept as their keyed hash (journal HMAC key).
// `issuer`: the label an authenticator app shows (the gateway's name).
[[nodiscard]] totp_enrolment enrol_totp(state_store& st, const data_layout& layout, const std::string& user,
                                        const std::string& issuer, micros now);
// The same, made but not stored: the secret sealed and the codes hashed, for a caller that
// stores them in a transaction of its own (state_store::add_user with its enrolment).
struct prepared_enrolment {
  totp_enrolment shown;
  std::string secret_sealed;
  std::vector<std::string> code_hashes;
};
[[nodiscard]] prepared_enrolment prepare_totp(const data_layout& layout, const std::string& user,
                                              const std::string& issuer);

// The QR code of `text` for a terminal: two modules per character cell (Unicode half
// blocks), dark on light with the quiet zone, so that a phone can scan it from the screen.
[[nodiscard]] std::string qr_terminal(std::string_view text);
// The same as an SVG document (for the console), one path, no script and no style.
[[nodiscard]] std::string qr_svg(std::string_view text);

}  // namespace rsgate::gateway
