// Attempt limits (SPEC §2.3, §2.4): at most N failures per key (a machine, a representative,
// a source address, or "global") in a sliding window, then a lock-out period. Time comes from
// the caller, so tests drive it. Memory is bounded: at most max_keys keys are tracked; when
// full, the entry that expires first is dropped (a flood of distinct keys cannot grow memory).
// Not thread-safe: the owner serialises access (one strand or a mutex).
#pragma once
#include <cstddef>
#include <cstdint>
#include <deque>
#include <string>
#include <unordered_map>

#include "core/clock.hpp"

namespace rsgate::auth {

struct limit_policy {
  int max_failures = 5;
  micros window = 15LL * 60 * 1'000'000;    // failures counted over this long
  micros lockout = 30LL * 60 * 1'000'000;   // then refused for this long
  std::size_t max_keys = 100'000;
};

class failure_limiter {
 public:
  explicit failure_limiter(limit_policy p) : policy_(p) {}

  // True when `key` may try now.
  [[nodiscard]] bool allowed(const std::string& key, micros now);
  // Records a failure; returns true when this failure started a lock-out.
  bool record_failure(const std::string& key, micros now);
  void record_success(const std::string& key) { state_.erase(key); }
  // When the lock-out of `key` ends (0 when not locked).
  [[nodiscard]] micros locked_until(const std::string& key, micros now) const;
  [[nodiscard]] std::size_t tracked() const { return state_.size(); }

 private:
  struct entry {
    std::deque<micros> failures;
    micros locked_until = 0;
  };
  void prune(entry& e, micros now) const;
  void make_room(micros now);

  limit_policy policy_;
  std::unordered_map<std::string, entry> state_;
};

}  // namespace rsgate::auth
