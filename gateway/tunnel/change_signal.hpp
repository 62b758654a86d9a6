// A condition variable for coroutines on different strands, built from timers: a waiter
// registers a timer of its own executor and waits on it, with its deadline as the timer's
// expiry; notify_all() posts each registered timer's cancel to that timer's executor (a timer
// is not thread-safe, so it is only touched on its own strand). The waiter looks at its
// condition after it registered and before every wait, in one step on its strand, so a
// change made before notify_all() is never missed. Private to gateway/tunnel/.
#pragma once
#include <array>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <chrono>
#include <memory>
#include <mutex>
#include <vector>

namespace rsgate::gateway::detail {

class change_signal {
 public:
  void add(const std::shared_ptr<boost::asio::steady_timer>& t) {
    std::lock_guard lock(mu_);
    std::erase_if(waiters_, [](const auto& w) { return w.expired(); });
    waiters_.push_back(t);
  }
  // From any thread, after the change.
  void notify_all() {
    std::lock_guard lock(mu_);
    for (auto& w : waiters_)
      if (auto t = w.lock()) boost::asio::post(t->get_executor(), [t] { t->cancel(); });
  }

 private:
  std::mutex mu_;
  std::vector<std::weak_ptr<boost::asio::steady_timer>> waiters_;  // guarded by mu_
};

// Waits until `ready()` (called on the caller's strand) or `until`; returns the last
// `ready()`. Woken by notify_all() of any of `signals` (null entries are skipped).
template <typename Ready>
boost::asio::awaitable<bool> wait_for_change(std::array<change_signal*, 2> signals, Ready ready,
                                             std::chrono::steady_clock::time_point until) {
  auto t = std::make_shared<boost::asio::steady_timer>(co_await boost::asio::this_coro::executor, until);
  for (auto* s : signals)
    if (s) s->add(t);
  for (;;) {
    if (ready()) co_return true;
    auto [ec] = co_await t->async_wait(boost::asio::as_tuple(boost::asio::use_awaitable));
    if (!ec) co_return ready();  // `until` passed
  }
}

}  // namespace rsgate::gateway::detail
