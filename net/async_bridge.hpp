// Turns a callback API that completes on any thread (the journal writer, the service) into an
// Asio asynchronous operation that completes on the awaiting coroutine's executor. Included
// only by the network runtime's translation units.
#pragma once
#include <boost/asio/associated_executor.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/post.hpp>
#include <memory>
#include <utility>

namespace rsgate::net {

// `start(callback)` begins the operation; `callback(args...)` may be called from any thread,
// exactly once. The awaiting coroutine resumes on its own executor with `args...`.
template <typename Signature, typename Token, typename Start>
auto async_from_callback(Start start, Token&& token) {
  return boost::asio::async_initiate<Token, Signature>(
      [](auto handler, Start s) {
        auto ex = boost::asio::get_associated_executor(handler);
        auto h = std::make_shared<decltype(handler)>(std::move(handler));
        s([h, ex](auto&&... args) {
          boost::asio::post(ex, [h, ... a = std::forward<decltype(args)>(args)]() mutable { (*h)(std::move(a)...); });
        });
      },
      token, std::move(start));
}

}  // namespace rsgate::net
