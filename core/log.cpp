// See log.hpp.
#include "core/log.hpp"

#include <unistd.h>

#include <atomic>
#include <string>

#include "core/clock.hpp"
#include "core/timefmt.hpp"

namespace rsgate::log {
namespace {
std::atomic<level> g_level{level::info};
constexpr std::string_view kNames[] = {"debug", "info", "warn", "error", "off"};
}  // namespace

void set_level(level l) { g_level = l; }
level parse_level(std::string_view s) {
  if (s == "debug") return level::debug;
  if (s == "warn") return level::warn;
  if (s == "error") return level::error;
  return level::info;
}
level current_level() { return g_level.load(std::memory_order_relaxed); }

void write(level l, std::string_view message) {
  std::string line = format_rfc3339(system_clock::instance().now());
  line += ' ';
  line += kNames[static_cast<int>(l)];
  line += ' ';
  // Keep one event on one line whatever the message holds.
  for (char c : message) line += (c == '\n' || c == '\r') ? ' ' : c;
  line += '\n';
  [[maybe_unused]] auto n = ::write(STDERR_FILENO, line.data(), line.size());
}

}  // namespace rsgate::log
