#include "protocol/flow.hpp"

#include <algorithm>

namespace rsgate::tunnel {

std::int64_t window_budget::take(std::int64_t want) {
  if (want <= 0) return 0;
  auto cur = left_.load(std::memory_order_relaxed);
  std::int64_t got = 0;
  do {
    got = std::min(cur, want);
    if (got <= 0) return 0;
  } while (!left_.compare_exchange_weak(cur, cur - got, std::memory_order_relaxed));
  if (parent_) {
    auto from_parent = parent_->take(got);
    if (from_parent < got) left_.fetch_add(got - from_parent, std::memory_order_relaxed);
    got = from_parent;
  }
  return got;
}

void window_budget::give(std::int64_t n) {
  if (n <= 0) return;
  left_.fetch_add(n, std::memory_order_relaxed);
  if (parent_) parent_->give(n);
}

std::uint32_t receive_window::consumed(std::uint32_t n, window_budget* budget) {
  unacked_ += n;
  if (unacked_ < window_ / 4) return 0;
  std::uint32_t extra = 0;
  if (budget && window_ < kGrownWindowMax) {
    auto want = std::min<std::int64_t>(window_, kGrownWindowMax - window_);  // double, up to the cap
    extra = static_cast<std::uint32_t>(budget->take(want));
    window_ += extra;
    grown_ += extra;
  }
  auto inc = unacked_ + extra;
  unacked_ = 0;
  return inc;
}

void receive_window::release(window_budget* budget) {
  if (budget) budget->give(grown_);
  grown_ = 0;
}

}  // namespace rsgate::tunnel
