// Writing a relay's batch to a plain TCP socket (the agent's target, rsgate connect's client),
// in as few system calls and trips through the scheduler as the socket allows.
//
// Why not asio::async_write: its completion conditions cap every write_some at 64 KiB
// (default_max_transfer_size), so a 1 MiB batch costs 16 sendmsg calls, and each one's
// completion is posted: one more trip through the io_context (an epoll_wait) per call, even
// when the socket took everything at once. Here the whole batch goes in one non-blocking
// sendmsg (up to the kernel's iovec limit) straight away; only what the socket did not take
// waits for it to become writable (docs/performance.md, the data path).
#pragma once
#include <boost/asio/awaitable.hpp>
#include <boost/asio/buffer.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/system/error_code.hpp>
#include <span>
#include <utility>

namespace rsgate::net {

// What the socket takes of `bufs` now, in one sendmsg (at most 64 buffers), never waiting: 0
// when it takes nothing yet; `ec` set only on a real failure. Puts the socket in non-blocking
// mode: its synchronous operations no longer wait (asynchronous ones are unaffected).
std::size_t write_now(boost::asio::ip::tcp::socket& sock, std::span<const boost::asio::const_buffer> bufs,
                      boost::system::error_code& ec);

// All of `bufs` (the caller keeps them alive until it returns), or the first error and how
// much was written before it: write_now, then a wait for room, until all is written.
boost::asio::awaitable<std::pair<boost::system::error_code, std::size_t>> write_all(
    boost::asio::ip::tcp::socket& sock, std::span<const boost::asio::const_buffer> bufs);

}  // namespace rsgate::net
