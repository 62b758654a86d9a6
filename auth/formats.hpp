// Identifiers people type: PMR numbers and machine type-model*serial (SPEC §4). Pure functions
// used by the HTTP API, the CLI and the journal tool, so every entry point refuses the same
// malformed input with the same message.
#pragma once
#include <string>
#include <string_view>

namespace rsgate::auth {

// "12345,677,000" (5 alphanumerics, 3-digit branch, 3-digit country) or "TS" + 9 digits.
[[nodiscard]] bool is_valid_pmr(std::string_view s);
inline constexpr std::string_view kPmrForm =
    "a PMR is ppppp,bbb,ccc (5 letters or digits, 3-digit branch, 3-digit country, e.g. "
    "12345,677,000) or a case number TS followed by 9 digits (e.g. TS012345678)";

// "9009-42A*7801234": type 4, model 3, serial 7 alphanumerics.
[[nodiscard]] bool is_valid_machine(std::string_view s);
inline constexpr std::string_view kMachineForm =
    "a machine is TTTT-MMM*SSSSSSS (type 4, model 3, serial 7 letters or digits, e.g. "
    "9009-42A*7801234)";

// PMR letters are case-insensitive for people; the journal stores them upper-case.
[[nodiscard]] std::string normalize_pmr(std::string_view s);
[[nodiscard]] std::string normalize_machine(std::string_view s);

// Account names: 1–64 of [A-Za-z0-9._@-], starting with a letter or digit.
[[nodiscard]] bool is_valid_user_name(std::string_view s);

}  // namespace rsgate::auth
