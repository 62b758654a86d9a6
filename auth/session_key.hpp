// Remote Support Session Keys (SPEC §2.4): 60 random bits that a customer reads over the
// phone, written as 12 Crockford base32 symbols plus a mod-37 check symbol, grouped
// "XXXX-XXXX-XXXX-C". Typing is forgiving the way Crockford intends (case, I/L for 1, O for 0,
// hyphens and spaces), and the check symbol catches a mistyped or transposed symbol before
// a guess is spent against the rate limits.
#pragma once
#include <optional>
#include <string>
#include <string_view>

namespace rsgate::auth {

inline constexpr int kSessionKeyBits = 60;

// A fresh key in display form, e.g. "7KQ4-M2XP-9RTA-W".
[[nodiscard]] std::string generate_session_key();

// The canonical 13-symbol form ("7KQ4M2XP9RTAW") of what a person typed, or nullopt when it
// is not a well-formed key with a correct check symbol.
[[nodiscard]] std::optional<std::string> normalize_session_key(std::string_view typed);

// "7KQ4M2XP9RTAW" -> "7KQ4-M2XP-9RTA-W".
[[nodiscard]] std::string display_session_key(std::string_view canonical);

}  // namespace rsgate::auth
