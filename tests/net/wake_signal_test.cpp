// net::wake_signal (net/wake_signal.hpp): a coroutine on a strand waits, code on other threads
// wakes it. A wake-up that comes before the wait is kept (one), several before a wait are one,
// close() ends a pending wait, and a producer racing a consumer that waits only when it found
// nothing never leaves it asleep with work queued (a missed wake-up would hang the test, which
// fails on its deadline instead).
#include "net/wake_signal.hpp"
#include "tests/support/io_threads.hpp"

#include <atomic>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <catch2/catch.hpp>
#include <chrono>
#include <future>
#include <memory>
#include <mutex>
#include <thread>

namespace asio = boost::asio;
using rsgate::net::wake_signal;
using rsgate::test::two_threads;
using namespace std::chrono_literals;

TEST_CASE("wake_signal: a notify() from another thread ends a pending wait") {
  two_threads t;
  auto strand = asio::make_strand(t.ioc);
  wake_signal sig(strand);
  std::atomic<bool> waiting{false};
  std::promise<void> woke;
  asio::co_spawn(
      strand,
      [&]() -> asio::awaitable<void> {
        waiting = true;
        co_await sig.wait();
        woke.set_value();
      },
      asio::detached);
  while (!waiting) std::this_thread::sleep_for(1ms);
  std::this_thread::sleep_for(20ms);  // the wait has begun
  auto f = woke.get_future();
  REQUIRE(f.wait_for(50ms) == std::future_status::timeout);  // nothing wakes it by itself
  sig.notify();
  REQUIRE(f.wait_for(5s) == std::future_status::ready);
}

TEST_CASE("wake_signal: a notify() before the wait is kept, and several are one") {
  asio::io_context ioc{1};
  wake_signal sig(ioc.get_executor());
  sig.notify();
  sig.notify();
  sig.notify();
  int woken = 0;
  bool second_pending = false;
  asio::co_spawn(
      ioc,
      [&]() -> asio::awaitable<void> {
        co_await sig.wait();  // the kept wake-up: returns at once
        ++woken;
        asio::steady_timer later(co_await asio::this_coro::executor, 50ms);
        later.async_wait([&](auto) {
          second_pending = woken == 1;  // the other notifies were folded into the first
          sig.notify();
        });
        co_await sig.wait();
        ++woken;
      },
      asio::detached);
  ioc.run_for(5s);
  REQUIRE(woken == 2);
  REQUIRE(second_pending);
}

TEST_CASE("wake_signal: close() ends a pending wait and every later one") {
  asio::io_context ioc{1};
  wake_signal sig(ioc.get_executor());
  int ended = 0;
  asio::co_spawn(
      ioc,
      [&]() -> asio::awaitable<void> {
        co_await sig.wait();
        ++ended;
        co_await sig.wait();  // closed: at once
        ++ended;
      },
      asio::detached);
  asio::post(ioc, [&] { sig.close(); });
  ioc.run_for(5s);
  REQUIRE(ended == 2);
}

TEST_CASE("wake_signal: a producer on another thread never leaves the consumer asleep with work queued") {
  // The gateway's pattern: the consumer takes what is queued and says it will wait, under
  // the mutex; the producer queues and notifies only when the consumer said so.
  constexpr int kItems = 20'000;
  two_threads t;
  auto strand = asio::make_strand(t.ioc);
  wake_signal sig(strand);
  std::mutex mu;
  int queued = 0;
  bool idle = false;
  std::promise<int> consumed;
  asio::co_spawn(
      strand,
      [&]() -> asio::awaitable<void> {
        int got = 0;
        while (got < kItems) {
          bool wait = false;
          {
            std::lock_guard lock(mu);
            got += std::exchange(queued, 0);
            if (got < kItems) idle = wait = true;
          }
          if (wait) co_await sig.wait();
        }
        consumed.set_value(got);
      },
      asio::detached);
  std::thread producer([&] {
    for (int i = 0; i < kItems; ++i) {
      bool wake = false;
      {
        std::lock_guard lock(mu);
        ++queued;
        wake = std::exchange(idle, false);
      }
      if (wake) sig.notify();
      if (i % 64 == 0) std::this_thread::yield();
    }
  });
  auto f = consumed.get_future();
  const bool done = f.wait_for(20s) == std::future_status::ready;
  producer.join();
  REQUIRE(done);
  REQUIRE(f.get() == kItems);
}

TEST_CASE("wake_signal: a wait abandoned by the io_context's shutdown, a notify() after it is harmless") {
  // As in the gateway at shutdown: a writer waits on the signal, and the destructor of
  // another coroutine's frame (destroyed later in the same shutdown) notifies it. Without
  // the wait's guard this dereferences the abandoned operation (a crash, not a failure).
  struct conn {
    explicit conn(const asio::any_io_executor& ex) : timer(ex), wake(ex) {}
    asio::steady_timer timer;
    wake_signal wake;
  };
  bool notified = false;
  {
    asio::io_context ioc{1};
    auto c = std::make_shared<conn>(ioc.get_executor());
    asio::co_spawn(ioc, [c]() -> asio::awaitable<void> { co_await c->wake.wait(); }, asio::detached);
    asio::co_spawn(
        ioc,
        [c, &notified]() -> asio::awaitable<void> {
          struct on_destroy {
            std::shared_ptr<conn> c;
            bool* notified;
            ~on_destroy() {
              c->wake.notify();
              *notified = true;
            }
          } g{c, &notified};
          c->timer.expires_after(std::chrono::hours(1));
          co_await c->timer.async_wait(asio::use_awaitable);
        },
        asio::detached);
    c.reset();
    ioc.run_for(50ms);
  }  // shutdown: the wait's frame first, then the timer's, whose destructor notifies
  REQUIRE(notified);
}
