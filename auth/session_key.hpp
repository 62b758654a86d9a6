// Remote Support Session Keys (SPEC §2.4): 60 random bits that a customer reads over the
// phone, written as 12 Crockford base32 symbols plus one check symbol from the same 32
// symbols, grouped "XXXX-XXXX-XXXX-C". Typing is forgiving the way Crockford intends (case,
// I/L for 1, O for 0, hyphens and spaces), and the check symbol catches every mistyped
// symbol and every swap of two different symbols before a guess is spent against the rate
// limits.
//
// The check (docs/protocol.md §7) is a weighted sum over the field GF(32) = GF(2)[x] /
// (x^5 + x^2 + 1), each symbol's 5-bit value an element: c = sum of d_i * x^(12-i) for the
// data symbols d_0..d_11, computed as s = x * (s XOR d_i). Every weight x^k (k = 0..12) is a
// distinct non-zero element and the field has no zero divisors, so a changed symbol, or two
// different symbols swapped anywhere (the check symbol included), always changes the sum.
#pragma once
#include <optional>
#include <string>
#include <string_view>

namespace rsgate::auth {

inline constexpr int kSessionKeyBits = 60;

// A fresh key in display form, e.g. "7KQ4-M2XP-9RTA-8".
[[nodiscard]] std::string generate_session_key();

// The check symbol of 12 canonical data symbols ("7KQ4M2XP9RTA" -> '8'); nullopt when
// `data` is not 12 symbols of the canonical alphabet (0-9 A-Z without I L O U).
[[nodiscard]] std::optional<char> session_key_check(std::string_view data);

// The canonical 13-symbol form ("7KQ4M2XP9RTA8") of what a person typed, or nullopt when it
// is not a well-formed key with a correct check symbol.
[[nodiscard]] std::optional<std::string> normalize_session_key(std::string_view typed);

// "7KQ4M2XP9RTA8" -> "7KQ4-M2XP-9RTA-8".
[[nodiscard]] std::string display_session_key(std::string_view canonical);

}  // namespace rsgate::auth
