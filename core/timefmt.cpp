// See timefmt.hpp. Calendar arithmetic is done with std::chrono's civil-date algorithms so
// no call depends on the process time zone.
#include "core/timefmt.hpp"

#include <fmt/format.h>

#include <charconv>
#include <chrono>

namespace rsgate {
namespace {

constexpr micros kMicrosPerSecond = 1'000'000;
constexpr micros kMaxTime = 253402300799LL * kMicrosPerSecond + 999999;  // 9999-12-31T23:59:59.999999Z

// Parses exactly `width` decimal digits at `pos`; advances pos.
bool digits(std::string_view s, size_t& pos, size_t width, int& out) {
  if (pos + width > s.size()) return false;
  int v = 0;
  for (size_t i = 0; i < width; ++i) {
    char c = s[pos + i];
    if (c < '0' || c > '9') return false;
    v = v * 10 + (c - '0');
  }
  pos += width;
  out = v;
  return true;
}

bool expect(std::string_view s, size_t& pos, char c) {
  if (pos < s.size() && s[pos] == c) {
    ++pos;
    return true;
  }
  return false;
}

}  // namespace

std::string format_rfc3339(micros t) {
  using namespace std::chrono;
  auto secs = t >= 0 ? t / kMicrosPerSecond : (t - (kMicrosPerSecond - 1)) / kMicrosPerSecond;
  auto frac = t - secs * kMicrosPerSecond;
  sys_seconds tp{seconds{secs}};
  auto day = floor<days>(tp);
  year_month_day ymd{day};
  hh_mm_ss hms{tp - day};
  return fmt::format("{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}Z", static_cast<int>(ymd.year()),
                     static_cast<unsigned>(ymd.month()), static_cast<unsigned>(ymd.day()),
                     hms.hours().count(), hms.minutes().count(), hms.seconds().count(), frac);
}

std::optional<micros> parse_duration(std::string_view text) {
  if (text.size() < 2 || text.size() > 12) return std::nullopt;
  micros unit = 0;
  switch (text.back()) {
    case 's': unit = kMicrosPerSecond; break;
    case 'm': unit = 60 * kMicrosPerSecond; break;
    case 'h': unit = 3600 * kMicrosPerSecond; break;
    case 'd': unit = 86400 * kMicrosPerSecond; break;
    default: return std::nullopt;
  }
  std::int64_t n = 0;
  auto body = text.substr(0, text.size() - 1);
  auto [p, ec] = std::from_chars(body.data(), body.data() + body.size(), n);
  if (ec != std::errc{} || p != body.data() + body.size() || n <= 0) return std::nullopt;
  if (n > (kMaxTime / unit)) return std::nullopt;
  return n * unit;
}

std::optional<micros> parse_time(std::string_view s, micros now) {
  if (s.empty() || s.size() > 40) return std::nullopt;
  if (auto age = parse_duration(s)) {
    if (*age > now) return std::nullopt;  // before 1970
    return now - *age;
  }
  using namespace std::chrono;
  size_t pos = 0;
  int y = 0, mo = 0, d = 0, h = 0, mi = 0, se = 0;
  if (!digits(s, pos, 4, y) || !expect(s, pos, '-') || !digits(s, pos, 2, mo) ||
      !expect(s, pos, '-') || !digits(s, pos, 2, d))
    return std::nullopt;
  year_month_day ymd{year{y}, month{static_cast<unsigned>(mo)}, day{static_cast<unsigned>(d)}};
  if (!ymd.ok() || y < 1970) return std::nullopt;
  micros frac = 0;
  micros offset = 0;
  if (pos < s.size()) {
    if (!(expect(s, pos, 'T') || expect(s, pos, 't') || expect(s, pos, ' '))) return std::nullopt;
    if (!digits(s, pos, 2, h) || !expect(s, pos, ':') || !digits(s, pos, 2, mi) ||
        !expect(s, pos, ':') || !digits(s, pos, 2, se))
      return std::nullopt;
    if (h > 23 || mi > 59 || se > 59) return std::nullopt;
    if (expect(s, pos, '.')) {
      size_t start = pos;
      micros scale = 100000;
      while (pos < s.size() && s[pos] >= '0' && s[pos] <= '9') {
        if (pos - start >= 9) return std::nullopt;
        frac += (s[pos] - '0') * scale;
        scale /= 10;
        ++pos;
      }
      if (pos == start) return std::nullopt;
    }
    if (expect(s, pos, 'Z') || expect(s, pos, 'z')) {
    } else if (pos < s.size() && (s[pos] == '+' || s[pos] == '-')) {
      int sign = s[pos] == '+' ? 1 : -1;
      ++pos;
      int oh = 0, om = 0;
      if (!digits(s, pos, 2, oh) || !expect(s, pos, ':') || !digits(s, pos, 2, om) || oh > 23 ||
          om > 59)
        return std::nullopt;
      offset = sign * (oh * 3600 + om * 60) * kMicrosPerSecond;
    } else {
      return std::nullopt;
    }
    if (pos != s.size()) return std::nullopt;
  }
  auto days_since = sys_days{ymd}.time_since_epoch().count();
  micros t = (static_cast<micros>(days_since) * 86400 + h * 3600 + mi * 60 + se) * kMicrosPerSecond +
             frac - offset;
  if (t < 0 || t > kMaxTime) return std::nullopt;
  return t;
}

}  // namespace rsgate
