// TLS on a TCP socket for rsgate's own connections: the tunnel (docs/protocol.md §2) between
// the gateway and rsgate-agent, the gateway's HTTPS listener (REST and channel WebSockets)
// and rsgate connect. OpenSSL straight on the TCP socket, non-blocking, driven by Asio
// readiness waits from coroutines.
//
// Why not asio::ssl::stream: it puts a 17 KiB BIO pair between OpenSSL and the socket, so
// every byte is copied twice more, every system call moves at most one TLS record, and each
// record costs a stack of composed operations. Here OpenSSL reads ahead a whole buffer per
// recv(), and the records of a whole gather write collect in a buffer BIO and leave
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
#include <boost/asio/bind_executor.hpp>
#include <boost/asio/buffer.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/compose.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/beast/core/role.hpp>
#include <chrono>
#include <exception>
#include <memory>
#include <span>
#include <string>
#include <utility>
#include <vector>

namespace rsgate::net {

class tls_stream {
 public:
  using executor_type = boost::asio::any_io_executor;
  using error_code = boost::system::error_code;

  // `ctx` carries the certificate, key, CA, verification and ALPN settings; the socket may
  // still be unconnected (the agent connects it through socket()). `buffer_bytes`: OpenSSL's
  // read-ahead buffer and, once the handshake is done, the write buffer (16 KiB before):
  // together the memory a connection holds, allocated on first use.
  static constexpr std::size_t kTunnelBuffer = 128 * 1024;  // the tunnel: one per machine
  static constexpr std::size_t kHttpsBuffer = 64 * 1024;    // HTTPS connections, WebSockets
  tls_stream(boost::asio::ip::tcp::socket sock, SSL_CTX* ctx, std::size_t buffer_bytes);
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

  // As a client: the certificate must name `name`, a DNS name (also sent as SNI) or an IP
  // address (matched against IP SANs). False, and nothing set, for an empty or unusable name:
  // the caller must not connect then. Chain verification is the SSL_CTX's (verify_peer).
  bool expect_peer_name(const std::string& name);
  // The TLS handshake, as the server (gateway) or the client (agent).
  boost::asio::awaitable<error_code> handshake(bool server);
  // At most b.size() bytes, at least 1; asio::error::eof at the peer's close_notify.
  boost::asio::awaitable<std::pair<error_code, std::size_t>> read_some(boost::asio::mutable_buffer b);
  // One attempt that never waits: bytes, an error, or `would_block` (read_some would wait).
  // Lets a reader act once it has read everything there is, before it sleeps.
  struct read_attempt {
    error_code ec;
    std::size_t n = 0;
    bool would_block = false;
  };
  read_attempt read_now(boost::asio::mutable_buffer b);
  // An idle connection (a tunnel without channels) holds almost no buffer memory
  // (docs/performance.md, scale). set_idle(true): OpenSSL allocates its read and record
  // buffers at their smallest and frees them as soon as they are empty
  // (SSL_MODE_RELEASE_BUFFERS), and records go to the socket without the write buffer;
  // set_idle(false) restores the full buffers for throughput. release_buffers() frees
  // OpenSSL's buffers now; nothing (false) while any byte is buffered either way. Both are
  // safe between any two operations on the stream's strand.
  void set_idle(bool idle);
  bool release_buffers();
  // All of `bufs`, then flushed to the socket.
  boost::asio::awaitable<error_code> write(std::span<const boost::asio::const_buffer> bufs);

  // TLS 1.3 KeyUpdate (docs/protocol.md §6). request_key_update() renews our sending keys and
  // asks the peer to renew its own (update_requested); the message leaves with the next
  // write, so call it just before one, on the stream's strand. False if OpenSSL refused
  // (not TLS 1.3, handshake not finished, a write half done). The peer's KeyUpdate is handled
  // by OpenSSL inside reads; OpenSSL 3.0 sends its answering KeyUpdate with our next write.
  bool request_key_update();
  // KeyUpdate messages seen on this connection, counted once count_key_updates() was called.
  struct key_update_count {
    std::uint64_t sent = 0;
    std::uint64_t received = 0;
  };
  void count_key_updates();
  [[nodiscard]] key_update_count key_updates() const { return key_updates_; }
  // Sends close_notify (bounded by the deadline) and closes the socket.
  boost::asio::awaitable<void> shutdown();

  // Asio's AsyncReadStream and AsyncWriteStream, for Beast's HTTP and WebSocket code (the
  // HTTPS listener and rsgate connect), as composed operations over the same non-blocking
  // attempts as the coroutines above: a read fills the first non-empty buffer; a write
  // writes and flushes the whole sequence. Completion is never inline.
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
    return boost::asio::async_compose<Token, void(error_code, std::size_t)>(read_op(this, first), token, sock_);
  }
  template <typename ConstBufferSequence, typename Token>
  auto async_write_some(const ConstBufferSequence& buffers, Token&& token) {
    write_op op(this);  // the caller keeps the bytes until completion
    for (auto it = boost::asio::buffer_sequence_begin(buffers); it != boost::asio::buffer_sequence_end(buffers); ++it) {
      boost::asio::const_buffer b = *it;
      op.size += b.size();
      if (b.size() != 0) op.bufs.push_back(b);
    }
    op.bufs = coalesce(op.bufs, op.staging);
    return boost::asio::async_compose<Token, void(error_code, std::size_t)>(std::move(op), token, sock_);
  }

  // The buffers to hand to SSL_write one by one so that the sequence leaves in as few TLS
  // records as it can at little copying (tls_stream.cpp says how): whole records from the
  // caller's memory, the small pieces and the seams between pieces copied into `staging`
  // (which must outlive the result and is not touched again until then). Public for its test.
  static std::vector<boost::asio::const_buffer> coalesce(const std::vector<boost::asio::const_buffer>& in,
                                                         std::vector<std::uint8_t>& staging);

  // Closes the socket now: operations in progress end with operation_aborted (timed_out
  // after the deadline), and no OpenSSL call touches the descriptor again.
  void close();

 private:
  boost::asio::awaitable<error_code> wait(boost::asio::socket_base::wait_type w);
  boost::asio::awaitable<error_code> flush();
  boost::asio::awaitable<error_code> write_sequence(std::span<const boost::asio::const_buffer> in);
  error_code attach_bios();
  error_code ssl_error(int err);
  [[nodiscard]] error_code closed_error() const;
  void arm_watchdog();

  // One non-blocking attempt. `want` is set when it could not finish: retry once the
  // socket is ready for that; `ec` when it failed.
  enum class need { nothing, read, write };
  struct step {
    error_code ec;
    std::size_t n = 0;
    need want = need::nothing;
  };
  step try_read(boost::asio::mutable_buffer b);
  step try_write(const void* p, std::size_t n);
  step try_flush();
  static boost::asio::socket_base::wait_type wait_for(need w) {
    return w == need::read ? boost::asio::socket_base::wait_read : boost::asio::socket_base::wait_write;
  }

  // What the composed operations share. `waited`: suspended at least once, so completing
  // now is not inline; otherwise the result is posted and delivered on the next invocation.
  struct op_base {
    tls_stream* s;
    bool waited = false, posted = false;
    step result{};
    // Delivers a result posted earlier; true if it did.
    template <typename Self>
    bool deliver_posted(Self& self) {
      if (!posted) return false;
      self.complete(result.ec, result.n);
      return true;
    }
    // The error a wait ended with, as the stream sees it (a closed socket: closed_error()).
    [[nodiscard]] error_code wait_error(const error_code& ec) const {
      return s->sock_.is_open() ? ec : s->closed_error();
    }
    template <typename Self>
    void suspend(Self& self, need w) {
      waited = true;
      s->drained_ = false;  // the wait re-arms the socket: the next attempt asks it again
      s->sock_.async_wait(wait_for(w), std::move(self));
    }
    template <typename Self>
    void finish(Self& self, step st) {
      if (waited) return self.complete(st.ec, st.n);
      result = st;
      posted = true;
      auto ex = s->get_executor();
      boost::asio::post(ex, std::move(self));
    }
  };
  struct read_op : op_base {
    read_op(tls_stream* st, boost::asio::mutable_buffer buf) : op_base{st}, b(buf) {}
    boost::asio::mutable_buffer b;
    template <typename Self>
    void operator()(Self& self, error_code ec = {}) {
      if (deliver_posted(self)) return;
      if (ec) return finish(self, {wait_error(ec)});
      if (b.size() == 0) return finish(self, {});
      auto st = s->try_read(b);
      if (st.want == need::nothing) return finish(self, st);
      suspend(self, st.want);
    }
  };
  struct write_op : op_base {
    explicit write_op(tls_stream* st) : op_base{st} {}
    write_op(write_op&&) = default;
    write_op(const write_op&) = delete;  // a copy's `bufs` would point into the original's staging
    std::vector<boost::asio::const_buffer> bufs;
    std::vector<std::uint8_t> staging;  // moving the op keeps its heap block: `bufs` stay valid
    std::size_t size = 0;  // of the caller's sequence: what a success reports
    std::size_t i = 0, off = 0;
    template <typename Self>
    void operator()(Self& self, error_code ec = {}) {
      if (deliver_posted(self)) return;
      if (ec) return fail(self, wait_error(ec));
      if (s->write_broken_) return fail(self, boost::asio::error::broken_pipe);
      while (i < bufs.size()) {
        auto st = s->try_write(static_cast<const char*>(bufs[i].data()) + off, bufs[i].size() - off);
        if (st.ec) return fail(self, st.ec);
        if (st.want != need::nothing) return suspend(self, st.want);
        off += st.n;
        if (off == bufs[i].size()) {
          ++i;
          off = 0;
        }
      }
      auto st = s->try_flush();
      if (st.ec) return fail(self, st.ec);
      if (st.want != need::nothing) return suspend(self, st.want);
      finish(self, {error_code{}, size});
    }
    template <typename Self>
    void fail(Self& self, error_code ec) {
      s->write_broken_ = true;  // a record may be half written: no later write
      finish(self, {ec});
    }
  };

  boost::asio::ip::tcp::socket sock_;
  SSL* ssl_ = nullptr;
  BIO* wbio_ = nullptr;  // buffer BIO in front of the socket BIO (owned by ssl_)
  boost::asio::steady_timer watchdog_;
  std::chrono::steady_clock::time_point deadline_ = std::chrono::steady_clock::time_point::max();
  std::chrono::steady_clock::time_point armed_for_{};  // when the watchdog's wait ends
  bool watchdog_armed_ = false;
  unsigned watchdog_gen_ = 0;  // a re-armed watchdog's old handler sees a stale number
  bool timed_out_ = false;
  bool write_broken_ = false;  // a write ended early: OpenSSL may hold half a record
  bool drained_ = false;       // the socket's last recv() left nothing in it (on_socket_read)
  bool idle_ = false;  // set_idle(true): small buffers, freed when empty; no write buffer
  BIO* sock_bio_ = nullptr;  // the socket BIO (owned by ssl_), under wbio_ unless idle
  bool unbuffer_writes();
  void buffer_writes();
  key_update_count key_updates_;
  static void on_tls_message(int write_p, int version, int content_type, const void* buf, std::size_t len, SSL* ssl,
                             void* arg);
  static long on_socket_read(BIO* b, int oper, const char* argp, std::size_t len, int argi, long argl, int ret,
                             std::size_t* processed);
  std::size_t buffer_bytes_;
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
  auto ex = boost::asio::get_associated_executor(handler, s.get_executor());
  boost::asio::co_spawn(s.get_executor(), s.shutdown(),
                        boost::asio::bind_executor(ex, [h = std::forward<TeardownHandler>(handler)](std::exception_ptr) mutable {
                          std::move(h)(boost::system::error_code{});
                        }));
}
inline void beast_close_socket(tls_stream& s) { s.close(); }

}  // namespace rsgate::net
