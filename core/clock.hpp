// Time as the rest of rsgate sees it: microseconds since the Unix epoch, UTC, from a clock
// that tests can replace. Protocol, journal and auth logic take a clock instead of reading
// the system time themselves, so tests advance time explicitly.
#pragma once
#include <atomic>
#include <cstdint>

namespace rsgate {

using micros = std::int64_t;  // microseconds since 1970-01-01T00:00:00Z

class clock {
 public:
  virtual ~clock() = default;
  [[nodiscard]] virtual micros now() const = 0;
};

// The real wall clock (CLOCK_REALTIME). Stateless; one shared instance.
class system_clock final : public clock {
 public:
  [[nodiscard]] micros now() const override;
  static const system_clock& instance();
};

// A clock that only moves when told to. Thread-safe.
class manual_clock final : public clock {
 public:
  explicit manual_clock(micros start) : now_(start) {}
  [[nodiscard]] micros now() const override { return now_.load(); }
  void advance(micros by) { now_ += by; }
  void set(micros to) { now_ = to; }

 private:
  std::atomic<micros> now_;
};

}  // namespace rsgate
