#include "protocol/flow.hpp"

#include <atomic>
#include <catch2/catch.hpp>
#include <thread>
#include <vector>

using namespace rsgate::tunnel;

TEST_CASE("a receive window batches its WINDOW increments") {
  receive_window w;
  CHECK(w.window() == kInitialWindow);
  CHECK(w.consumed(1000, nullptr) == 0);
  CHECK(w.consumed(kInitialWindow / 4 - 1001, nullptr) == 0);
  CHECK(w.consumed(1, nullptr) == kInitialWindow / 4);  // everything handed on so far
  CHECK(w.window() == kInitialWindow);                   // no budget: no growth
  CHECK(w.consumed(kInitialWindow, nullptr) == kInitialWindow);
}

TEST_CASE("a busy window doubles up to its cap, within the budget") {
  window_budget budget(kTunnelWindowBudget);
  receive_window w;
  std::uint64_t granted = 0, handed_on = 0;
  std::uint32_t last = w.window();
  for (int i = 0; i < 200; ++i) {
    auto inc = w.consumed(64 * 1024, &budget);
    handed_on += 64 * 1024;
    granted += inc;
    if (inc != 0) {
      // Each WINDOW returns everything handed on, plus the growth: the sender's credit is
      // exactly the new window minus what is still buffered (nothing here).
      CHECK(granted == handed_on + (w.window() - kInitialWindow));
      CHECK((w.window() == last || w.window() == std::min(2 * last, kGrownWindowMax)));
      last = w.window();
    }
  }
  CHECK(w.window() == kGrownWindowMax);
  CHECK(budget.left() == kTunnelWindowBudget - (kGrownWindowMax - kInitialWindow));
  w.release(&budget);
  CHECK(budget.left() == kTunnelWindowBudget);
}

TEST_CASE("growth stops when the budget is spent, and a child budget is bounded by its parent") {
  window_budget process(3 * kInitialWindow);
  window_budget tunnel(100 * kInitialWindow, &process);
  receive_window a, b;
  for (int i = 0; i < 50; ++i) {
    a.consumed(kInitialWindow, &tunnel);
    b.consumed(kInitialWindow, &tunnel);
  }
  CHECK(a.window() + b.window() == 2 * kInitialWindow + 3 * kInitialWindow);
  CHECK(process.left() == 0);
  CHECK(tunnel.left() == 97 * kInitialWindow);  // what the parent refused went back
  a.release(&tunnel);
  b.release(&tunnel);
  CHECK(process.left() == 3 * kInitialWindow);
  CHECK(tunnel.left() == 100 * kInitialWindow);
}

TEST_CASE("a budget never hands out more than it holds, from many threads") {
  window_budget budget(1'000'000);
  std::atomic<std::int64_t> total{0};
  std::vector<std::thread> ts;
  for (int t = 0; t < 8; ++t)
    ts.emplace_back([&] {
      for (int i = 0; i < 10'000; ++i) total += budget.take(37);
    });
  for (auto& t : ts) t.join();
  CHECK(total == 1'000'000);
  CHECK(budget.left() == 0);
  CHECK(budget.take(1) == 0);
}
