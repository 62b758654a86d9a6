// Receive windows that grow (docs/protocol.md §8, "Window growth"). A channel starts with
// kInitialWindow per direction; a receiver that keeps handing bytes on raises its window by
// granting more in WINDOW than it handed on, doubling up to kGrownWindowMax, as long as a
// budget shared by the tunnel (and, in the gateway, by the whole process) has room. A
// stream thus stops waiting for credit on a busy tunnel, and memory stays bounded:
// kInitialWindow per channel plus the budget. Windows never shrink; a channel's growth
// returns to the budget when it ends.
#pragma once
#include <atomic>
#include <cstdint>

#include "protocol/wire.hpp"

namespace rsgate::tunnel {

// Bytes of window growth that may still be granted. Thread-safe; a child takes from its
// parent too, so a tunnel's budget is also bounded by the process's.
class window_budget {
 public:
  explicit window_budget(std::int64_t bytes, window_budget* parent = nullptr) : left_(bytes), parent_(parent) {}
  window_budget(const window_budget&) = delete;
  window_budget& operator=(const window_budget&) = delete;

  // Takes up to `want` bytes; returns how many (0 when exhausted).
  std::int64_t take(std::int64_t want);
  void give(std::int64_t n);
  [[nodiscard]] std::int64_t left() const { return left_.load(std::memory_order_relaxed); }

 private:
  std::atomic<std::int64_t> left_;
  window_budget* parent_;
};

// One direction of one channel, as its receiver sees it. Not thread-safe: owned by the side
// that hands the bytes on.
class receive_window {
 public:
  // `n` bytes were handed on. Returns the WINDOW increment to send now, or 0 while the bytes
  // handed on since the last WINDOW are under a quarter of the window. The increment may
  // include growth taken from `budget` (which may be null: no growth); window() is raised
  // before this returns, so raise the DATA limit before sending the increment.
  std::uint32_t consumed(std::uint32_t n, window_budget* budget);
  // The most DATA bytes the sender may have outstanding.
  [[nodiscard]] std::uint32_t window() const { return window_; }
  // Gives the growth back; call once when the channel ends.
  void release(window_budget* budget);

 private:
  std::uint32_t window_ = kInitialWindow;
  std::uint32_t unacked_ = 0;
  std::int64_t grown_ = 0;
};

}  // namespace rsgate::tunnel
