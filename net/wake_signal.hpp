// A wake-up for one coroutine from any thread, in one trip through the scheduler.
//
// Waking a coroutine on another strand through a timer takes two trips: the cancel must be
// posted to the timer's strand (a timer is not thread-safe), and the cancelled wait then
// completes through the scheduler again. notify() here completes a pending wait() with a
// single post to the waiter's executor (Asio's concurrent_channel, which is thread-safe and
// keeps the waiter's executor busy while it waits, as a timer's wait does).
//
// One slot: a notify() while no one waits is kept, so the next wait() returns at once; more
// notify() calls before that are one. A waiter therefore looks at its condition after every
// wait() and may find nothing new, but never misses a change made before a notify(). Used by
// the gateway's hot cross-strand paths (a tunnel's writer, a channel stream's writer).
// Heavy Asio headers: include it only from the network runtime's translation units.
#pragma once
#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/experimental/concurrent_channel.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/system/error_code.hpp>

namespace rsgate::net {

class wake_signal {
 public:
  explicit wake_signal(const boost::asio::any_io_executor& ex) : ch_(ex, 1) {}

  // From any thread.
  void notify() { ch_.try_send(boost::system::error_code{}); }

  // Until notify() (or one kept from before), or close(); on the waiter's executor.
  boost::asio::awaitable<void> wait() {
    // When the io_context shuts down, Asio destroys a pending wait without completing it but
    // leaves the channel believing someone waits: a later notify() (from a destructor that
    // runs in the same shutdown) would then dereference the abandoned operation. The guard
    // closes the channel when the wait's frame goes without its completion.
    struct abandon_guard {
      wake_signal* self;
      bool completed = false;
      ~abandon_guard() {
        if (!completed) self->ch_.close();
      }
    } guard{this};
    co_await ch_.async_receive(boost::asio::as_tuple(boost::asio::use_awaitable));
    guard.completed = true;
  }

  // Ends a pending wait() and every later one at once (the waiter is going away).
  void close() { ch_.close(); }

 private:
  boost::asio::experimental::concurrent_channel<void(boost::system::error_code)> ch_;
};

}  // namespace rsgate::net
