// What the channel relays ask of a TCP socket beyond reading and writing it (Linux): whether
// the kernel has given up on the connection, to reset it on close, and keepalive. A relay
// that stops reading one end (its flow-control window toward the other end is full) cannot
// see that end reset the connection by reading it; `connection_lost` tells it without
// reading and without consuming the pending error. Used by rsgate connect (the client's
// socket, the WebSocket's), the gateway (the WebSocket's) and rsgate-agent (the target's).
#pragma once
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include <boost/asio/ip/tcp.hpp>
#include <boost/system/error_code.hpp>
#include <chrono>

namespace rsgate::net {

// True when the connection is gone: a reset arrived, retransmissions or keepalive probes timed
// out, or the socket was closed here. `sent_fin`: this side shut down its sending direction;
// the state after a FIN each way is CLOSE too, so then only a pending error (a reset, a
// timeout) counts, and reading it consumes it, which is harmless as the caller then gives
// up on the connection.
inline bool connection_lost(boost::asio::ip::tcp::socket& s, bool sent_fin = false) {
  if (!s.is_open()) return true;
  tcp_info ti{};
  socklen_t len = sizeof ti;
  if (::getsockopt(s.native_handle(), IPPROTO_TCP, TCP_INFO, &ti, &len) != 0) return true;
  if (ti.tcpi_state != TCP_CLOSE) return false;
  if (!sent_fin) return true;
  int err = 0;
  len = sizeof err;
  return ::getsockopt(s.native_handle(), SOL_SOCKET, SO_ERROR, &err, &len) != 0 || err != 0;
}

// The next close() sends a reset instead of a FIN behind the bytes not yet sent: the peer
// learns at once that the stream was cut, even while it is not reading, and gets no bytes
// after the cut.
inline void reset_on_close(boost::asio::ip::tcp::socket& s) {
  boost::system::error_code ignored;
  s.set_option(boost::asio::socket_base::linger(true, 0), ignored);
}

// A peer that vanishes without a FIN or a reset (a host switched off, a path cut) is found
// by keepalive probes: after `idle` without traffic, `count` probes `interval` apart.
inline void keep_alive(boost::asio::ip::tcp::socket& s, std::chrono::seconds idle = std::chrono::seconds(60),
                       std::chrono::seconds interval = std::chrono::seconds(10), int count = 6) {
  boost::system::error_code ignored;
  s.set_option(boost::asio::socket_base::keep_alive(true), ignored);
  if (!s.is_open()) return;
  int i = static_cast<int>(idle.count()), v = static_cast<int>(interval.count());
  ::setsockopt(s.native_handle(), IPPROTO_TCP, TCP_KEEPIDLE, &i, sizeof i);
  ::setsockopt(s.native_handle(), IPPROTO_TCP, TCP_KEEPINTVL, &v, sizeof v);
  ::setsockopt(s.native_handle(), IPPROTO_TCP, TCP_KEEPCNT, &count, sizeof count);
}

}  // namespace rsgate::net
