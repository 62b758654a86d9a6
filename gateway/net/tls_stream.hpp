// TLS on a TCP socket for rsgate's own connections: the tunnel (docs/protocol.md §2) between
// the gateway and rsgate-agent, the gateway's HTTPS listener (REST and channel WebSockets)
// and rsgate connect. OpenSSL straight on the TCP socket, non-blocking, driven by Asio
// readiness waits from coroutines.
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

#include <boost/asio/async_result.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/buffer.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/beast/core/role.hpp>
#include <chrono>
#include <exception>
#include <memory>
#include <span>
#include <utility>
#include <vector>

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

  // Asio's AsyncReadStream and AsyncWriteStream, for Beast's HTTP and WebSocket code (the
  // HTTPS listener and rsgate connect): each runs the coroutine above. A read fills the first
  // non-empty buffer; a write writes the whole sequence. Completion is never inline.
  template <typename MutableBufferSequence, typename Token>
  auto async_read_some(const MutableBufferSequence& buffers, Token&& token) {
    boost::asio::mutable_buffer first;
    for (auto it = boost::asio::buffer_sequence_begin(buffers); it != boost::asio::buffer_sequence_end(buffers); ++it) {
      boost::asio::mutable_buffer b = *it;
      if (b.size() != 0) {
        first = b;
        break;
      }
    }
    return boost::asio::async_initiate<Token, void(error_code, std::size_t)>(
        [this](auto handler, boost::asio::mutable_buffer b) {
          if (b.size() == 0) {
            boost::asio::post(get_executor(), [h = std::move(handler)]() mutable { std::move(h)(error_code{}, 0); });
            return;
          }
          boost::asio::co_spawn(get_executor(), read_some(b), completion(std::move(handler)));
        },
        token, first);
  }
  template <typename ConstBufferSequence, typename Token>
  auto async_write_some(const ConstBufferSequence& buffers, Token&& token) {
    std::vector<boost::asio::const_buffer> bufs;  // the caller keeps the bytes until completion
    for (auto it = boost::asio::buffer_sequence_begin(buffers); it != boost::asio::buffer_sequence_end(buffers); ++it) {
      boost::asio::const_buffer b = *it;
      if (b.size() != 0) bufs.push_back(b);
    }
    return boost::asio::async_initiate<Token, void(error_code, std::size_t)>(
        [this](auto handler, std::vector<boost::asio::const_buffer> v) {
          boost::asio::co_spawn(get_executor(), write_all(std::move(v)), completion(std::move(handler)));
        },
        token, std::move(bufs));
  }
  // Closes the socket now: operations in progress end with operation_aborted (timed_out
  // after the deadline), and no OpenSSL call touches the descriptor again.
  void close();

 private:
  boost::asio::awaitable<error_code> wait(boost::asio::socket_base::wait_type w);
  boost::asio::awaitable<std::pair<error_code, std::size_t>> write_all(std::vector<boost::asio::const_buffer> bufs);
  template <typename Handler>
  static auto completion(Handler h) {
    return [h = std::move(h)](std::exception_ptr e, std::pair<error_code, std::size_t> r) mutable {
      if (e) r = {boost::asio::error::fault, 0};
      std::move(h)(r.first, r.second);
    };
  }
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

// What Beast's WebSocket stream needs of its next layer beyond reading and writing (found by
// argument-dependent lookup): tearing the connection down after the closing handshake, and
// closing it when its own timeout fires.
inline void teardown(boost::beast::role_type, tls_stream& s, boost::system::error_code& ec) {
  ec = {};
  s.close();
}
template <typename TeardownHandler>
void async_teardown(boost::beast::role_type, tls_stream& s, TeardownHandler&& handler) {
  boost::asio::co_spawn(s.get_executor(), s.shutdown(),
                        [h = std::forward<TeardownHandler>(handler)](std::exception_ptr) mutable {
                          std::move(h)(boost::system::error_code{});
                        });
}
inline void beast_close_socket(tls_stream& s) { s.close(); }

}  // namespace rsgate::gateway::net
