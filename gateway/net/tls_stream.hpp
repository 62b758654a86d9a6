// TLS for the tunnel (docs/protocol.md §2), between the gateway and rsgate-agent: OpenSSL
// straight on the TCP socket, non-blocking, driven by Asio readiness waits from coroutines.
//
// Why not asio::ssl::stream: it puts a 17 KiB BIO pair between OpenSSL and the socket, so
// every byte is copied twice more, every system call moves at most one TLS record, and each
// record costs a stack of composed operations. Here OpenSSL reads ahead up to 256 KiB per
// recv(), and the records of a whole gather write collect in a 256 KiB buffer BIO and leave
// in as few send() calls as the socket allows (docs/performance.md, the data path).
//
// One read and one write may be in progress at the same time, from coroutines on one strand
// (or one thread): OpenSSL objects tolerate interleaved calls, never concurrent ones.
// OpenSSL's socket BIO sends with write(2), so the process must ignore SIGPIPE (rsgate serve
// and rsgate-agent do): a peer that reset the connection is then an error, not a signal.
// Included only by the network runtimes' translation units.
#pragma once
#include <openssl/ssl.h>

#include <boost/asio/awaitable.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <chrono>
#include <memory>
#include <span>
#include <utility>

namespace rsgate::gateway::net {

class tls_stream {
 public:
  using executor_type = boost::asio::any_io_executor;
  using error_code = boost::system::error_code;

  // `ctx` carries the certificate, key, CA, verification and ALPN settings; the socket may
  // still be unconnected (the agent connects it through socket()).
  tls_stream(boost::asio::ip::tcp::socket sock, SSL_CTX* ctx);
  ~tls_stream();
  tls_stream(const tls_stream&) = delete;
  tls_stream& operator=(const tls_stream&) = delete;

  [[nodiscard]] SSL* native_handle() const { return ssl_; }
  boost::asio::ip::tcp::socket& socket() { return sock_; }
  executor_type get_executor() { return sock_.get_executor(); }

  // A deadline for whatever is in progress or starts later: when it passes, the socket is
  // closed and the operations fail with asio::error::timed_out. Moving it is an assignment
  // (no timer operation), so it can follow every frame.
  void expires_after(std::chrono::steady_clock::duration d);
  void expires_never();

  // The TLS handshake, as the server (gateway) or the client (agent).
  boost::asio::awaitable<error_code> handshake(bool server);
  // At most b.size() bytes, at least 1; asio::error::eof at the peer's close_notify.
  boost::asio::awaitable<std::pair<error_code, std::size_t>> read_some(boost::asio::mutable_buffer b);
  // All of `bufs`, then flushed to the socket.
  boost::asio::awaitable<error_code> write(std::span<const boost::asio::const_buffer> bufs);
  // Sends close_notify (bounded by the deadline) and closes the socket.
  boost::asio::awaitable<void> shutdown();
  // Closes the socket now: operations in progress end with operation_aborted (timed_out
  // after the deadline), and no OpenSSL call touches the descriptor again.
  void close();

 private:
  boost::asio::awaitable<error_code> wait(boost::asio::socket_base::wait_type w);
  boost::asio::awaitable<error_code> flush();
  error_code attach_bios();
  error_code ssl_error(int ret, int err);
  [[nodiscard]] error_code closed_error() const;
  void arm_watchdog();

  boost::asio::ip::tcp::socket sock_;
  SSL* ssl_ = nullptr;
  BIO* wbio_ = nullptr;  // buffer BIO in front of the socket BIO (owned by ssl_)
  boost::asio::steady_timer watchdog_;
  std::chrono::steady_clock::time_point deadline_ = std::chrono::steady_clock::time_point::max();
  std::chrono::steady_clock::time_point armed_for_{};  // when the watchdog's wait ends
  bool watchdog_armed_ = false;
  unsigned watchdog_gen_ = 0;  // a re-armed watchdog's old handler sees a stale number
  bool timed_out_ = false;
  std::shared_ptr<tls_stream*> self_;  // lets the watchdog's handler outlive us safely
};

}  // namespace rsgate::gateway::net
