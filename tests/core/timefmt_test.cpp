// Table tests for RFC 3339 formatting and the time/age parser used by every --since/--until.
#include "core/timefmt.hpp"

#include <catch2/catch.hpp>

using rsgate::micros;
using rsgate::parse_duration;
using rsgate::parse_time;

namespace {
constexpr micros kNow = 1'795'824'000'000'000;  // 2026-11-28T00:00:00Z
}

TEST_CASE("format_rfc3339 prints UTC with microseconds") {
  CHECK(rsgate::format_rfc3339(0) == "1970-01-01T00:00:00.000000Z");
  CHECK(rsgate::format_rfc3339(kNow) == "2026-11-28T00:00:00.000000Z");
  CHECK(rsgate::format_rfc3339(kNow + 1) == "2026-11-28T00:00:00.000001Z");
  CHECK(rsgate::format_rfc3339(951782400'000000 - 1) == "2000-02-28T23:59:59.999999Z");
}

TEST_CASE("parse_time accepts RFC 3339, dates and ages") {
  CHECK(parse_time("2026-11-28T00:00:00Z", 0) == kNow);
  CHECK(parse_time("2026-11-28t00:00:00z", 0) == kNow);
  CHECK(parse_time("2026-11-28 00:00:00Z", 0) == kNow);
  CHECK(parse_time("2026-11-28", 0) == kNow);
  CHECK(parse_time("2026-11-28T01:30:00+01:30", 0) == kNow);
  CHECK(parse_time("2026-11-27T22:00:00-02:00", 0) == kNow);
  CHECK(parse_time("2026-11-28T00:00:00.5Z", 0) == kNow + 500000);
  CHECK(parse_time("2026-11-28T00:00:00.000001Z", 0) == kNow + 1);
  CHECK(parse_time("2024-02-29", 0).has_value());
  CHECK(parse_time("90s", kNow) == kNow - 90'000'000);
  CHECK(parse_time("15m", kNow) == kNow - 900'000'000);
  CHECK(parse_time("2h", kNow) == kNow - 7'200'000'000);
  CHECK(parse_time("7d", kNow) == kNow - 7 * 86'400'000'000LL);
}

TEST_CASE("parse_time refuses malformed and out-of-range input") {
  for (const char* bad :
       {"", "yesterday", "2026-13-01", "2026-02-30", "2023-02-29", "2026-11-28T24:00:00Z",
        "2026-11-28T00:60:00Z", "2026-11-28T00:00:60Z", "2026-11-28T00:00:00", "2026-11-28T00:00Z",
        "2026-11-28T00:00:00.Z", "2026-11-28T00:00:00.1234567890Z", "2026-11-28T00:00:00+0100",
        "2026-11-28T00:00:00Zjunk", "1969-12-31", "0d", "-5m", "5w", "h", "99999999999999d",
        "2026/11/28", "２０２６-11-28"}) {
    INFO(bad);
    CHECK_FALSE(parse_time(bad, kNow).has_value());
  }
}

TEST_CASE("parse_duration") {
  CHECK(parse_duration("900s") == 900'000'000);
  CHECK(parse_duration("1d") == 86'400'000'000LL);
  CHECK_FALSE(parse_duration("1").has_value());
  CHECK_FALSE(parse_duration("s").has_value());
  CHECK_FALSE(parse_duration("1.5h").has_value());
  CHECK_FALSE(parse_duration("+1h").has_value());
}

TEST_CASE("format and parse round-trip") {
  for (micros t : {micros{0}, kNow, kNow + 123456, micros{253402300799'999999}}) {
    INFO(t);
    CHECK(parse_time(rsgate::format_rfc3339(t), 0) == t);
  }
}
