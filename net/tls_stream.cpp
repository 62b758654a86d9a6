#include "net/tls_stream.hpp"

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/x509v3.h>

#include <cstring>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/error.hpp>
#include <boost/asio/ssl/error.hpp>
#include <boost/asio/use_awaitable.hpp>

namespace asio = boost::asio;

namespace rsgate::net {
namespace {

constexpr auto use_tuple = asio::as_tuple(asio::use_awaitable);
constexpr long kHandshakeWriteBuffer = 16 * 1024;  // until the handshake is done

}  // namespace

// After every recv() of the socket BIO: a result shorter than asked (or none) means the
// socket held nothing more at that moment.
long tls_stream::on_socket_read(BIO* b, int oper, const char*, std::size_t len, int, long, int ret,
                                std::size_t* processed) {
  if (oper == (BIO_CB_READ | BIO_CB_RETURN)) {
    auto* s = reinterpret_cast<tls_stream*>(BIO_get_callback_arg(b));
    s->drained_ = ret <= 0 || (processed && *processed < len);
  }
  return ret;
}

tls_stream::tls_stream(asio::ip::tcp::socket sock, SSL_CTX* ctx, std::size_t buffer_bytes)
    : sock_(std::move(sock)), ssl_(SSL_new(ctx)), watchdog_(sock_.get_executor()),
      buffer_bytes_(buffer_bytes), self_(std::make_shared<tls_stream*>(this)) {
  if (!ssl_) throw std::runtime_error("SSL_new failed");
  SSL_set_mode(ssl_, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
  SSL_set_read_ahead(ssl_, 1);
  SSL_set_default_read_buffer_len(ssl_, buffer_bytes_);
}

tls_stream::~tls_stream() {
  *self_ = nullptr;  // a watchdog handler still queued finds no stream
  SSL_free(ssl_);    // frees the BIOs; the socket closes itself
}

void tls_stream::expires_after(std::chrono::steady_clock::duration d) {
  if (d > std::chrono::hours(24 * 365)) return expires_never();  // no overflow of now + d
  deadline_ = std::chrono::steady_clock::now() + d;
  // A later deadline only moves the value (the watchdog re-arms when it wakes); an earlier
  // one re-arms now.
  if (!watchdog_armed_ || deadline_ < armed_for_) arm_watchdog();
}

void tls_stream::expires_never() { deadline_ = std::chrono::steady_clock::time_point::max(); }

// One timer: when it fires before the deadline (which moved), it waits again for the new
// one; once past it, it closes the socket, which ends every wait with timed_out.
void tls_stream::arm_watchdog() {
  watchdog_armed_ = true;
  armed_for_ = deadline_;
  const unsigned gen = ++watchdog_gen_;
  watchdog_.expires_at(deadline_);  // cancels a wait already pending: its handler is stale
  watchdog_.async_wait([self = self_, gen](const error_code& ec) {
    tls_stream* s = *self;
    if (!s || gen != s->watchdog_gen_) return;
    s->watchdog_armed_ = false;
    if (ec == asio::error::operation_aborted) return;
    if (s->deadline_ == std::chrono::steady_clock::time_point::max()) return;
    if (std::chrono::steady_clock::now() < s->deadline_) {
      s->arm_watchdog();
      return;
    }
    s->timed_out_ = true;
    s->close();
  });
}

void tls_stream::close() {
  error_code ignored;
  sock_.close(ignored);
  watchdog_.cancel();
}

bool tls_stream::expect_peer_name(const std::string& name) {
  if (name.empty() || name.find('\0') != std::string::npos) return false;
  error_code ec;
  (void)asio::ip::make_address(name, ec);
  if (!ec) return X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl_), name.c_str()) == 1;
  SSL_set_hostflags(ssl_, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
  return SSL_set_tlsext_host_name(ssl_, name.c_str()) == 1 && SSL_set1_host(ssl_, name.c_str()) == 1;
}

tls_stream::error_code tls_stream::attach_bios() {
  if (SSL_get_rbio(ssl_)) return {};
  // rbio: the socket. wbio: a buffer in front of the same socket BIO. The socket BIO gets a
  // second reference because both chains are freed by SSL_free.
  BIO* sock_bio = BIO_new_socket(static_cast<int>(sock_.native_handle()), BIO_NOCLOSE);
  BIO* buf = BIO_new(BIO_f_buffer());
  if (!sock_bio || !buf || BIO_set_write_buffer_size(buf, kHandshakeWriteBuffer) != 1) {
    BIO_free(sock_bio);
    BIO_free(buf);
    return asio::error::no_memory;
  }
  BIO_set_callback_ex(sock_bio, &tls_stream::on_socket_read);
  BIO_set_callback_arg(sock_bio, reinterpret_cast<char*>(this));
  BIO_up_ref(sock_bio);
  BIO_push(buf, sock_bio);
  SSL_set_bio(ssl_, sock_bio, buf);
  wbio_ = buf;
  sock_bio_ = sock_bio;
  error_code ec;
  sock_.non_blocking(true, ec);
  return ec;
}

tls_stream::error_code tls_stream::ssl_error(int err) {
  if (timed_out_) return asio::error::timed_out;
  if (err == SSL_ERROR_ZERO_RETURN) return asio::error::eof;
  if (err == SSL_ERROR_SYSCALL) {
    if (ERR_peek_error() != 0) return {static_cast<int>(ERR_get_error()), asio::error::get_ssl_category()};
    if (errno == 0) return asio::ssl::error::stream_truncated;  // EOF without close_notify
    return {errno, boost::system::system_category()};          // reset, broken pipe, ...
  }
  auto e = ERR_get_error();
  if (e == 0) return asio::error::fault;
  if (ERR_GET_LIB(e) == ERR_LIB_SSL && ERR_GET_REASON(e) == SSL_R_UNEXPECTED_EOF_WHILE_READING)
    return asio::ssl::error::stream_truncated;
  return {static_cast<int>(e), asio::error::get_ssl_category()};
}

// Every OpenSSL call below is made only while the socket is open: once closed, its file
// descriptor number may already belong to another socket, and the socket BIO would use it.
tls_stream::error_code tls_stream::closed_error() const {
  return timed_out_ ? error_code(asio::error::timed_out) : error_code(asio::error::operation_aborted);
}

asio::awaitable<tls_stream::error_code> tls_stream::wait(asio::socket_base::wait_type w) {
  auto [ec] = co_await sock_.async_wait(w, use_tuple);
  drained_ = false;
  if (!sock_.is_open()) co_return closed_error();
  co_return ec;
}

tls_stream::step tls_stream::try_flush() {
  if (!sock_.is_open()) return {closed_error()};
  if (BIO_wpending(wbio_) == 0) return {};
  errno = 0;
  if (BIO_flush(wbio_) > 0) return {};
  if (BIO_should_retry(wbio_)) return {{}, 0, need::write};
  if (timed_out_) return {asio::error::timed_out};
  return {errno != 0 ? error_code(errno, boost::system::system_category()) : error_code(asio::error::broken_pipe)};
}

tls_stream::step tls_stream::try_read(asio::mutable_buffer b) {
  if (!sock_.is_open()) return {closed_error()};
  if (b.size() == 0) return {};
  if (drained_ && SSL_pending(ssl_) == 0 && SSL_has_pending(ssl_) == 0) {
    // The last recv() emptied the socket and OpenSSL holds nothing: wait for readiness
    // instead of a recv() that would fail with EAGAIN (one system call per message saved).
    // Safe because Asio's async_wait re-arms the descriptor (EPOLL_CTL_MOD), which reports
    // bytes that arrived since; every wait clears drained_, so the next attempt asks the
    // socket again.
    return {{}, 0, need::read};
  }
  ERR_clear_error();
  errno = 0;
  std::size_t got = 0;
  int r = SSL_read_ex(ssl_, b.data(), b.size(), &got);
  if (r == 1) {
    // A post-handshake message may have queued an answer in the write buffer: send it now if
    // the socket takes it, else with the next write. (OpenSSL 3.0 queues the answer to a
    // KeyUpdate only with the next SSL_write, docs/protocol.md §6.)
    if (BIO_wpending(wbio_) > 0) (void)BIO_flush(wbio_);
    return {{}, got};
  }
  int err = SSL_get_error(ssl_, r);
  if (err == SSL_ERROR_WANT_READ) return {{}, 0, need::read};
  if (err == SSL_ERROR_WANT_WRITE) return {{}, 0, need::write};  // retrying writes the answer
  return {ssl_error(err)};
}

tls_stream::step tls_stream::try_write(const void* p, std::size_t n) {
  if (!sock_.is_open()) return {closed_error()};
  ERR_clear_error();
  errno = 0;
  std::size_t done = 0;
  int r = SSL_write_ex(ssl_, p, n, &done);
  if (r == 1) return {{}, done};
  int err = SSL_get_error(ssl_, r);
  if (err == SSL_ERROR_WANT_WRITE) return {{}, 0, need::write};
  if (err == SSL_ERROR_WANT_READ) return {{}, 0, need::read};
  return {ssl_error(err)};
}

bool tls_stream::request_key_update() {
  if (!sock_.is_open()) return false;
  ERR_clear_error();
  return SSL_key_update(ssl_, SSL_KEY_UPDATE_REQUESTED) == 1;
}

void tls_stream::count_key_updates() {
  SSL_set_msg_callback_arg(ssl_, this);
  SSL_set_msg_callback(ssl_, &tls_stream::on_tls_message);
}

// OpenSSL's message callback: every handshake message after the handshake's own, each way.
void tls_stream::on_tls_message(int write_p, int /*version*/, int content_type, const void* buf, std::size_t len,
                                SSL* /*ssl*/, void* arg) {
  if (content_type != SSL3_RT_HANDSHAKE || len < 1) return;
  if (static_cast<const std::uint8_t*>(buf)[0] != SSL3_MT_KEY_UPDATE) return;
  auto* self = static_cast<tls_stream*>(arg);
  if (write_p != 0)
    ++self->key_updates_.sent;
  else
    ++self->key_updates_.received;
}

asio::awaitable<tls_stream::error_code> tls_stream::flush() {
  for (;;) {
    auto st = try_flush();
    if (st.want == need::nothing) co_return st.ec;
    if (auto ec = co_await wait(wait_for(st.want))) co_return ec;
  }
}

asio::awaitable<tls_stream::error_code> tls_stream::handshake(bool server) {
  if (!sock_.is_open()) co_return closed_error();
  if (auto ec = attach_bios()) co_return ec;
  if (server)
    SSL_set_accept_state(ssl_);
  else
    SSL_set_connect_state(ssl_);
  for (;;) {
    ERR_clear_error();
    errno = 0;
    int r = SSL_do_handshake(ssl_);
    int err = r == 1 ? SSL_ERROR_NONE : SSL_get_error(ssl_, r);
    if (err != SSL_ERROR_NONE && err != SSL_ERROR_WANT_READ && err != SSL_ERROR_WANT_WRITE) {
      auto ec = ssl_error(err);
      (void)co_await flush();  // an alert, if OpenSSL queued one
      co_return ec;
    }
    if (auto ec = co_await flush()) co_return ec;
    if (err == SSL_ERROR_NONE) {
      // The full write buffer only now: a handshake that never completes holds little.
      if (BIO_set_write_buffer_size(wbio_, static_cast<long>(buffer_bytes_)) != 1) co_return asio::error::no_memory;
      co_return error_code{};
    }
    auto w = err == SSL_ERROR_WANT_READ ? asio::socket_base::wait_read : asio::socket_base::wait_write;
    if (auto ec = co_await wait(w)) co_return ec;
  }
}

tls_stream::read_attempt tls_stream::read_now(asio::mutable_buffer b) {
  auto st = try_read(b);
  return {st.ec, st.n, st.want != need::nothing};
}

bool tls_stream::release_buffers() {
  if (!sock_.is_open() || !wbio_ || !SSL_is_init_finished(ssl_)) return false;
  if (BIO_wpending(wbio_) != 0 || SSL_pending(ssl_) != 0 || SSL_has_pending(ssl_) != 0) return false;
  return SSL_free_buffers(ssl_) == 1;  // 0: a record half read or half written
}

void tls_stream::set_idle(bool idle) {
  if (idle == idle_ || !wbio_ || !SSL_is_init_finished(ssl_)) return;
  if (idle) {
    if (!unbuffer_writes()) return;  // bytes wait in the write buffer: next time
    SSL_set_mode(ssl_, SSL_MODE_RELEASE_BUFFERS);
    SSL_set_default_read_buffer_len(ssl_, 0);  // one record's worth, OpenSSL's least
  } else {
    buffer_writes();
    SSL_clear_mode(ssl_, SSL_MODE_RELEASE_BUFFERS);
    SSL_set_default_read_buffer_len(ssl_, buffer_bytes_);
  }
  idle_ = idle;
}

// Records go straight to the socket BIO: the write buffer (buffer_bytes_, and BIO_f_buffer's
// own 4 KiB read side) is freed. False while it holds bytes. (After the handshake OpenSSL has
// no buffering BIO of its own in front of wbio, so SSL_set0_wbio swaps exactly ours.)
bool tls_stream::unbuffer_writes() {
  if (wbio_ == sock_bio_) return true;
  if (BIO_wpending(wbio_) != 0) return false;
  BIO_up_ref(sock_bio_);            // the reference the new wbio holds
  SSL_set0_wbio(ssl_, sock_bio_);   // frees the buffer BIO, which drops its own reference
  wbio_ = sock_bio_;
  return true;
}

// A write buffer again in front of the socket BIO; without memory for it, writes stay
// unbuffered (correct, only more send() calls).
void tls_stream::buffer_writes() {
  if (wbio_ != sock_bio_) return;
  BIO* buf = BIO_new(BIO_f_buffer());
  if (!buf || BIO_set_write_buffer_size(buf, static_cast<long>(buffer_bytes_)) != 1) {
    BIO_free(buf);
    return;
  }
  BIO_up_ref(sock_bio_);  // the chain's; SSL_set0_wbio drops the one the bare wbio held
  BIO_push(buf, sock_bio_);
  SSL_set0_wbio(ssl_, buf);
  wbio_ = buf;
}

asio::awaitable<std::pair<tls_stream::error_code, std::size_t>> tls_stream::read_some(asio::mutable_buffer b) {
  for (;;) {
    auto st = try_read(b);
    if (st.want == need::nothing) co_return std::pair{st.ec, st.n};
    if (auto ec = co_await wait(wait_for(st.want))) co_return std::pair{ec, std::size_t{0}};
  }
}

// Plans the TLS records of a gather write: OpenSSL seals each SSL_write call into records of
// at most kRecord bytes, so a piece whose length is not a multiple of kRecord ends in a short
// record, and a small piece (a frame or WebSocket header) is a record of its own. Instead,
// pieces are cut at record boundaries of the whole sequence where that costs little copying:
// whole records go out from the caller's memory, and the rest (small pieces, a piece's tail
// with the next piece's head, just enough of it that what follows is whole records again) is
// copied into `staging` and goes out as one record. A DATA frame of 32 KiB + 12 bytes then
// costs two records and a 24-byte one shared with the next frame, not three; a WebSocket
// header shares its payload's first record.
std::vector<asio::const_buffer> tls_stream::coalesce(const std::vector<asio::const_buffer>& in,
                                                     std::vector<std::uint8_t>& staging) {
  constexpr std::size_t kRecord = 16 * 1024;
  struct piece {
    const std::uint8_t* p;  // null: staged, at `off` in staging (which may move while it grows)
    std::size_t off, len;
  };
  std::vector<piece> plan;
  staging.clear();
  // The record being filled: `carry` bytes at the end of staging, or, while it is one piece
  // or a piece's tail (`lone`), still in the caller's memory: copied only if more joins it.
  std::size_t carry = 0;
  const std::uint8_t* lone = nullptr;
  auto stage = [&](const std::uint8_t* p, std::size_t n) {
    if (lone) staging.insert(staging.end(), lone, lone + carry);
    lone = nullptr;
    staging.insert(staging.end(), p, p + n);
    carry += n;
  };
  auto emit_carry = [&] {
    if (carry > 0) plan.push_back({lone, lone ? 0 : staging.size() - carry, carry});
    lone = nullptr;
    carry = 0;
  };
  for (const auto& b : in) {
    const auto* p = static_cast<const std::uint8_t*>(b.data());
    std::size_t n = b.size();
    if (n == 0) continue;
    if (carry + n <= kRecord) {  // the whole piece joins the record being filled
      if (carry == 0) {
        lone = p;
        carry = n;
      } else {
        stage(p, n);
      }
      if (carry == kRecord) emit_carry();
      continue;
    }
    if (carry > 0) {  // complete that record with the piece's head
      std::size_t k = n % kRecord;  // what leaves the rest in whole records
      if (k == 0 || carry + k > kRecord) k = kRecord - carry;
      stage(p, k);
      p += k;
      n -= k;
      emit_carry();
    }
    const std::size_t whole = n - n % kRecord;
    if (whole > 0) plan.push_back({p, 0, whole});
    if (n > whole) {
      lone = p + whole;
      carry = n - whole;
    }
  }
  emit_carry();
  std::vector<asio::const_buffer> out;
  out.reserve(plan.size());
  for (const auto& pc : plan) out.emplace_back(pc.p ? pc.p : staging.data() + pc.off, pc.len);
  return out;
}

asio::awaitable<tls_stream::error_code> tls_stream::write(std::span<const asio::const_buffer> in) {
  auto ec = co_await write_sequence(in);
  if (ec) write_broken_ = true;  // a record may be half written: no later write
  co_return ec;
}

asio::awaitable<tls_stream::error_code> tls_stream::write_sequence(std::span<const asio::const_buffer> in) {
  if (write_broken_) co_return asio::error::broken_pipe;
  std::vector<std::uint8_t> staging;
  auto bufs = coalesce(std::vector<asio::const_buffer>(in.begin(), in.end()), staging);
  for (const auto& b : bufs) {
    const auto* p = static_cast<const std::uint8_t*>(b.data());
    std::size_t left = b.size();
    while (left > 0) {
      auto st = try_write(p, left);
      if (st.ec) co_return st.ec;
      if (st.want != need::nothing) {
        if (auto ec = co_await wait(wait_for(st.want))) co_return ec;
        continue;
      }
      p += st.n;
      left -= st.n;
    }
  }
  co_return co_await flush();
}

asio::awaitable<void> tls_stream::shutdown() {
  if (sock_.is_open() && SSL_get_rbio(ssl_) && SSL_is_init_finished(ssl_)) {
    ERR_clear_error();
    (void)SSL_shutdown(ssl_);  // queue close_notify; the peer's is not awaited
    (void)co_await flush();
  }
  close();
}

}  // namespace rsgate::net
