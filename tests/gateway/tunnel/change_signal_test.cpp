// change_signal (gateway/tunnel/change_signal.hpp): a coroutine on one strand waits for a
// condition that code on another thread changes. It wakes at once on notify_all(), returns
// false at its deadline when nothing changes, and misses no wake-up when changes race with
// its waits (a missed one would cost the round its whole deadline).
#include "gateway/tunnel/change_signal.hpp"
#include "tests/support/io_threads.hpp"

#include <atomic>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/strand.hpp>
#include <catch2/catch.hpp>
#include <chrono>
#include <future>
#include <thread>

namespace asio = boost::asio;
using rsgate::gateway::detail::change_signal;
using rsgate::gateway::detail::wait_for_change;
using rsgate::test::two_threads;
using namespace std::chrono_literals;

namespace {

struct outcome {
  bool ready = false;
  std::chrono::steady_clock::duration took{};
};

// Waits until `*value >= want` or `limit`; the outcome goes to `done`.
asio::awaitable<void> wait_for_value(change_signal* sig, std::atomic<int>* value, int want,
                                     std::chrono::milliseconds limit, std::promise<outcome>* done) {
  const auto t0 = std::chrono::steady_clock::now();
  const bool ok = co_await wait_for_change({sig, nullptr}, [value, want] { return value->load() >= want; }, t0 + limit);
  done->set_value({ok, std::chrono::steady_clock::now() - t0});
}

outcome wait_in_strand(two_threads& t, change_signal& sig, std::atomic<int>& value, int want,
                       std::chrono::milliseconds limit, const std::function<void()>& meanwhile) {
  std::promise<outcome> done;
  auto f = done.get_future();
  asio::co_spawn(asio::make_strand(t.ioc), wait_for_value(&sig, &value, want, limit, &done), asio::detached);
  meanwhile();
  return f.get();
}

}  // namespace

TEST_CASE("change_signal: a waiter on its strand wakes at once when another thread notifies") {
  two_threads t;
  change_signal sig;
  std::atomic<int> value{0};
  auto r = wait_in_strand(t, sig, value, 1, 10s, [&] {
    std::this_thread::sleep_for(50ms);
    value = 1;
    sig.notify_all();
  });
  CHECK(r.ready);
  CHECK(r.took < 2s);
}

TEST_CASE("change_signal: without a change the wait ends at its deadline, not ready") {
  two_threads t;
  change_signal sig;
  std::atomic<int> value{0};
  auto r = wait_in_strand(t, sig, value, 1, 200ms, [&] { sig.notify_all(); });  // a wake-up, no change
  CHECK_FALSE(r.ready);
  CHECK(r.took >= 200ms);
  CHECK(r.took < 5s);
}

TEST_CASE("change_signal: changes racing with the waits lose no wake-up") {
  two_threads t;
  change_signal sig;
  std::atomic<int> value{0};
  auto slowest = 0ms;
  for (int i = 1; i <= 500; ++i) {
    auto r = wait_in_strand(t, sig, value, i, 10s, [&] {
      if (i % 2 == 0) std::this_thread::yield();  // vary the race: before, during, after the wait
      value = i;
      sig.notify_all();
    });
    REQUIRE(r.ready);
    slowest = std::max(slowest, std::chrono::duration_cast<std::chrono::milliseconds>(r.took));
  }
  INFO("the slowest round took " << slowest.count() << " ms");
  CHECK(slowest < 2s);  // a lost wake-up would have cost its round the 10 s deadline
}
