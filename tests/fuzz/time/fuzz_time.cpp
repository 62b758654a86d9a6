// Fuzz target for the times and ages an operator types (core/timefmt.hpp): parse_time and
// parse_duration must never crash, must keep to the documented range (1970–9999), and every
// time parse_time returns must come back unchanged through format_rfc3339 and parse_time.
#include "core/timefmt.hpp"

#include "tests/fuzz/fuzz_support.hpp"

namespace {

using rsgate::micros;

constexpr micros kMicrosPerSecond = 1'000'000;
// 2026-11-27T02:27:18.123456Z: a fixed, realistic "now" keeps every input reproducible.
constexpr micros kNow = 1'795'746'438LL * kMicrosPerSecond + 123'456;
// 9999-12-31T23:59:59.999999Z, the last time timefmt.hpp accepts.
constexpr micros kMaxTime = 253'402'300'799LL * kMicrosPerSecond + 999'999;

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  auto text = rsgate::fuzz::as_text(data, size);

  auto age = rsgate::parse_duration(text);
  if (age) FUZZ_CHECK(*age > 0 && *age <= kMaxTime);

  auto t = rsgate::parse_time(text, kNow);
  if (age) {
    // An age counts back from now; one reaching before 1970 is out of range.
    if (*age <= kNow)
      FUZZ_CHECK(t && *t == kNow - *age);
    else
      FUZZ_CHECK(!t);
  }
  if (!t) return 0;
  // timefmt.hpp: "nullopt when `text` ... is out of range (years 1970–9999)".
  FUZZ_CHECK(*t >= 0 && *t <= kMaxTime);
  auto formatted = rsgate::format_rfc3339(*t);
  auto again = rsgate::parse_time(formatted, kNow);
  FUZZ_CHECK(again && *again == *t);
  FUZZ_CHECK(rsgate::format_rfc3339(*again) == formatted);
  return 0;
}
