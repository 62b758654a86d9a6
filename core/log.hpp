// Process log: one line per event on stderr, "<RFC 3339 time> <level> <message>". Callers
// pass only non-secret values; secrets are referred to by their keyed hash if at all.
// Thread-safe: each line is written with one write(2).
#pragma once
#include <fmt/format.h>

#include <string_view>

namespace rsgate::log {

enum class level { debug = 0, info = 1, warn = 2, error = 3, off = 4 };

void set_level(level l);
// "debug", "info", "warn", "error" (the configuration's values, checked there); info otherwise.
[[nodiscard]] level parse_level(std::string_view s);
[[nodiscard]] level current_level();
void write(level l, std::string_view message);

template <typename... Args>
void info(fmt::format_string<Args...> f, Args&&... args) {
  if (current_level() <= level::info) write(level::info, fmt::format(f, std::forward<Args>(args)...));
}
template <typename... Args>
void warn(fmt::format_string<Args...> f, Args&&... args) {
  if (current_level() <= level::warn) write(level::warn, fmt::format(f, std::forward<Args>(args)...));
}
template <typename... Args>
void error(fmt::format_string<Args...> f, Args&&... args) {
  if (current_level() <= level::error) write(level::error, fmt::format(f, std::forward<Args>(args)...));
}
template <typename... Args>
void debug(fmt::format_string<Args...> f, Args&&... args) {
  if (current_level() <= level::debug) write(level::debug, fmt::format(f, std::forward<Args>(args)...));
}

}  // namespace rsgate::log
