// Formatting and parsing of timestamps at the command line and in output: RFC 3339 in UTC
// with microseconds ("2026-11-27T02:27:18.123456Z"). Parsing accepts what an operator types:
// an RFC 3339 date-time with optional fraction and offset, a bare date (midnight UTC), or an
// age relative to now ("90s", "15m", "2h", "7d").
#pragma once
#include <optional>
#include <string>
#include <string_view>

#include "core/clock.hpp"

namespace rsgate {

[[nodiscard]] std::string format_rfc3339(micros t);

// nullopt when `text` is not one of the accepted forms or is out of range (years 1970–9999).
[[nodiscard]] std::optional<micros> parse_time(std::string_view text, micros now);

// A positive duration such as "900s", "15m", "2h", "7d"; nullopt otherwise.
[[nodiscard]] std::optional<micros> parse_duration(std::string_view text);

}  // namespace rsgate
