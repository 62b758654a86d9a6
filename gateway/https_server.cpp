// The gateway's HTTPS listener. Modelled on Beast's example/advanced/server-flex-awaitable:
// the acceptor loop and each connection are named coroutines taking their parameters by value;
// per-connection state lives in the coroutine frame; every read, write and handshake has a
// deadline (beast::tcp_stream::expires_after). A request runs on the worker pool; a WebSocket
// upgrade to the channel stream path goes to channel_stream.cpp.
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/ssl/error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/websocket/rfc6455.hpp>

#include <sys/socket.h>

#include <boost/asio/experimental/awaitable_operators.hpp>

#include "core/log.hpp"
#include "gateway/detail/https_server.hpp"
#include "gateway/events.hpp"
#include "gateway/service.hpp"
#include "net/wake_signal.hpp"
#include "gateway/tunnel/tunnel_server.hpp"
#include "net/async_bridge.hpp"
#include "protocol/client_hello.hpp"
#include "protocol/wire.hpp"

namespace rsgate::gateway::detail {
namespace {


// api::handle runs on the worker pool (password hashing and journal queries take
// milliseconds to seconds, which no I/O thread may spend) and completes from any thread (the
// journal writer's, for journaled actions); the coroutine resumes on its own executor.
template <typename Token>
auto async_handle(api& a, asio::thread_pool& workers, http_request req, Token&& token) {
  return net::async_from_callback<void(http_response)>(
      [&a, &workers, r = std::move(req)](auto cb) mutable {
        asio::post(workers, [&a, r = std::move(r), cb = std::move(cb)]() mutable {
          // The fault firewall's last line: nothing thrown here may reach the pool (which
          // would terminate the gateway), and the connection always gets its one answer.
          auto once = exactly_once(std::move(cb));
          try {
            a.handle(std::move(r), once);
          } catch (const std::exception& e) {
            log::error("request handler failed: {}", e.what());
            once(json_error(500, "internal", "the gateway failed to handle this request"));
          }
        });
      },
      token);
}

http_response limit_error(const beast::error_code& ec) {
  if (ec == http::error::header_limit)
    return json_error(431, "header_too_large", "request headers exceed the limit");
  if (ec == http::error::body_limit)
    return json_error(413, "body_too_large", "request body exceeds the limit");
  return json_error(400, "bad_request", "malformed HTTP request");
}

// A read that ends the connection without an answer: the client left or timed out.
bool quiet_end(const beast::error_code& ec) {
  return ec == http::error::end_of_stream || ec == asio::error::timed_out || ec == asio::error::operation_aborted ||
         ec == asio::ssl::error::stream_truncated || ec == asio::error::eof || ec == asio::error::connection_reset;
}

// A malformed or oversized request gets an answer, then the connection closes.
asio::awaitable<void> answer_malformed(net::tls_stream* stream, beast::error_code ec, server_state* st) {
  auto resp = limit_error(ec);
  st->m.count_status(resp.status);
  auto wire = to_wire(std::move(resp), 11, false, false);
  stream->expires_after(std::chrono::milliseconds(st->limits.request_timeout_ms));
  co_await http::async_write(*stream, wire, use_tuple);
}

// --- the live events stream (GET /api/v1/events, docs/api.md §5.6) ---

// Server-sent events on the connection until the subscription ends (its `end` event), the
// client goes, a write does not finish within the request timeout (a client that does not
// read), or the server stops. A reader watches the client (any close ends the stream at
// once; it has nothing to send); a writer drains the subscription, and says `: keepalive`
// when nothing happened for kKeepaliveSeconds. Both run on the connection's strand, joined
// with `&&`: the writer ends the reader by closing the connection.
struct events_end {
  bool client_gone = false;
};

// One piece of the stream, as a chunk (HTTP/1.1) or raw (HTTP/1.0, which ends at the close).
asio::awaitable<bool> write_events(net::tls_stream* stream, std::string_view text, bool chunked, int timeout_ms) {
  std::string framed;
  if (chunked) framed = fmt::format("{:x}\r\n{}\r\n", text.size(), text);  // "0\r\n\r\n" is the last
  const std::string_view out = chunked ? framed : text;
  const std::array<asio::const_buffer, 1> bufs{asio::buffer(out.data(), out.size())};
  stream->expires_after(std::chrono::milliseconds(timeout_ms));
  auto ec = co_await stream->write(bufs);
  stream->expires_never();
  co_return !ec;
}

asio::awaitable<void> watch_events_client(net::tls_stream* stream, events_end* end, net::wake_signal* wake) {
  std::array<char, 1024> buf{};
  std::size_t total = 0;
  for (;;) {
    auto [ec, n] = co_await stream->read_some(asio::buffer(buf));
    total += n;
    if (ec || total > 16 * 1024) break;  // gone, or sending what an event stream never reads
  }
  end->client_gone = true;
  wake->notify();
}

asio::awaitable<void> pump_events(net::tls_stream* stream, std::string head, event_subscription* sub, events_end* end,
                                  net::wake_signal* wake, bool chunked, server_state* st) {
  const int timeout = st->limits.request_timeout_ms;
  asio::steady_timer keepalive(co_await asio::this_coro::executor);
  using namespace asio::experimental::awaitable_operators;
  // (One co_await per statement: GCC 12 miscompiles co_await inside && and ?:.)
  bool ok = co_await write_events(stream, head, false, timeout);
  if (ok) ok = co_await write_events(stream, fmt::format("retry: {}\n\n", event_hub::kRetryMillis), chunked, timeout);
  while (ok) {
    auto b = sub->take();
    if (!b.text.empty()) ok = co_await write_events(stream, b.text, chunked, timeout);
    if (!ok || b.end || end->client_gone) break;
    keepalive.expires_after(std::chrono::seconds(event_hub::kKeepaliveSeconds));
    auto r = co_await (wake->wait() || keepalive.async_wait(use_tuple));
    if (r.index() == 1 && !end->client_gone) ok = co_await write_events(stream, ": keepalive\n\n", chunked, timeout);
  }
  if (ok && chunked && !end->client_gone) (void)co_await write_events(stream, "", true, timeout);
  stream->expires_after(std::chrono::seconds(2));
  co_await stream->shutdown();  // the reader's read fails: it ends too
}

asio::awaitable<void> serve_events(net::tls_stream* stream, http_response resp, unsigned version, server_state* st) {
  auto sub = std::move(resp.events);
  struct forget {
    service* svc;
    std::shared_ptr<event_subscription> sub;
    ~forget() { svc->events().unsubscribe(sub); }
  } forget_at_end{st->svc, sub};
  const bool chunked = version >= 11;
  std::string head = fmt::format("HTTP/{}.{} 200 OK\r\nServer: rsgate\r\nContent-Type: {}\r\n", version / 10,
                                 version % 10, resp.content_type);
  for (auto& [k, v] : resp.headers) head += k + ": " + v + "\r\n";
  head += chunked ? "Transfer-Encoding: chunked\r\n" : "";
  head += "Connection: close\r\n\r\n";
  auto wake = std::make_shared<net::wake_signal>(co_await asio::this_coro::executor);
  sub->set_wake([w = std::weak_ptr<net::wake_signal>(wake)] {
    if (auto s = w.lock()) s->notify();
  });
  events_end end;
  using namespace asio::experimental::awaitable_operators;
  co_await (watch_events_client(stream, &end, wake.get()) &&
            pump_events(stream, std::move(head), sub.get(), &end, wake.get(), chunked, st));
  sub->set_wake({});
}

// One request through the API on the worker pool; true while the connection stays open.
asio::awaitable<bool> answer_request(net::tls_stream* stream, http::request<http::string_body> msg,
                                     std::string remote, server_state* st) {
  http_request req;
  req.method = std::string(msg.method_string());
  req.target = std::string(msg.target());
  for (auto& f : msg) req.headers.emplace_back(std::string(f.name_string()), std::string(f.value()));
  req.body = std::move(msg.body());
  req.remote = std::move(remote);
  bool keep_alive = msg.keep_alive() && !st->stopping;
  bool head = msg.method() == http::verb::head;
  auto resp = co_await async_handle(st->handler, *st->workers, std::move(req), asio::use_awaitable);
  st->m.count_status(resp.status);
  if (resp.events) {
    co_await serve_events(stream, std::move(resp), msg.version(), st);
    co_return false;  // the stream closed the connection
  }
  auto wire = to_wire(std::move(resp), msg.version(), keep_alive, head);
  stream->expires_after(std::chrono::milliseconds(st->limits.request_timeout_ms));
  auto [wec, wn] = co_await http::async_write(*stream, wire, use_tuple);
  co_return !wec && keep_alive;
}

// Whatever way a connection ends, it leaves the count (and wakes a shutdown's drain).
struct active_guard {
  server_state* st;
  ~active_guard() {
    --st->m.http_connections_active;
    if (st->stopping && st->on_connection_end) st->on_connection_end();
  }
};

asio::awaitable<void> run_connection(tcp::socket sock, std::string remote, server_state* st) {
  active_guard guard{st};
  const auto& lim = st->limits;
  auto tls = st->current_tls();  // kept for the connection's life
  net::tls_stream stream(std::move(sock), tls->native_handle(), net::tls_stream::kHttpsBuffer);
  stream.expires_after(std::chrono::milliseconds(lim.handshake_timeout_ms));
  if (co_await stream.handshake(true)) {
    ++st->m.tls_handshake_failures;
    co_return;
  }
  beast::flat_buffer buffer;
  for (int n = 0; n < lim.max_requests_per_connection && !st->stopping; ++n) {
    http::request_parser<http::string_body> parser;
    parser.header_limit(lim.max_header_bytes);
    parser.body_limit(lim.max_body_bytes);
    stream.expires_after(std::chrono::milliseconds(n == 0 ? lim.request_timeout_ms : lim.idle_timeout_ms));
    auto [ec, bytes] = co_await http::async_read(stream, buffer, parser, use_tuple);
    if (quiet_end(ec)) co_return;
    if (ec) {
      co_await answer_malformed(&stream, ec, st);
      break;
    }
    // The read's deadline must not run on while the request is handled (a journal
    // verification may take seconds): the answer gets a fresh one when it is written.
    stream.expires_never();
    auto msg = parser.release();
    if (st->svc && websocket::is_upgrade(msg) && is_stream_path(msg.target())) {
      if (!co_await serve_channel_stream(&stream, std::move(msg), remote, st)) co_return;
      break;
    }
    if (!co_await answer_request(&stream, std::move(msg), remote, st)) break;
  }
  stream.expires_after(std::chrono::seconds(2));
  co_await stream.shutdown();
}

}  // namespace

http::response<http::string_body> to_wire(http_response r, unsigned version, bool keep_alive,
                                          bool head) {
  http::response<http::string_body> res{static_cast<http::status>(r.status), version};
  res.set(http::field::server, "rsgate");
  res.set(http::field::content_type, r.content_type);
  for (auto& [k, v] : r.headers) res.set(k, v);
  res.keep_alive(keep_alive);
  if (head) {
    res.content_length(r.body.size());
  } else {
    res.body() = std::move(r.body);
    res.prepare_payload();
  }
  return res;
}

namespace {

// An accepted connection served as HTTPS, within http.max_connections.
void serve_https(tcp::socket sock, server_state* st) {
  ++st->m.http_connections_total;
  if (st->m.http_connections_active.load() >= st->limits.max_connections) {
    ++st->m.http_connections_refused;
    beast::error_code ignored;
    sock.close(ignored);
    return;
  }
  ++st->m.http_connections_active;
  beast::error_code ec;
  sock.set_option(tcp::no_delay(true), ec);
  std::string remote;
  auto rep = sock.remote_endpoint(ec);
  if (!ec) remote = rep.address().to_string() + ":" + std::to_string(rep.port());
  auto conn_ex = sock.get_executor();
  asio::co_spawn(conn_ex, run_connection(std::move(sock), std::move(remote), st), asio::detached);
}

// One port for HTTPS and tunnels: the ClientHello is peeked at (MSG_PEEK: TLS then reads it
// again from the socket), within the handshake bound, and the connection goes where its ALPN
// says. At most kMaxPreAuthTunnels connections are read at once; more are closed at accept.
asio::awaitable<void> sniff_then_serve(tcp::socket sock, server_state* st, tunnel_server* tunnels) {
  using namespace asio::experimental::awaitable_operators;
  struct slot {
    std::atomic<int>& n;
    ~slot() { --n; }
  } counted{st->sniffing};
  asio::steady_timer deadline(sock.get_executor());
  deadline.expires_after(std::chrono::milliseconds(st->limits.handshake_timeout_ms));
  std::vector<std::uint8_t> buf(tunnel::kMaxClientHelloRecord);
  std::size_t seen = 0;
  tunnel::client_hello_scan scan;
  for (;;) {
    auto got = ::recv(sock.native_handle(), buf.data(), buf.size(), MSG_PEEK | MSG_DONTWAIT);
    if (got == 0 || (got < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) co_return;  // gone
    const auto n = got < 0 ? seen : static_cast<std::size_t>(got);
    scan = tunnel::scan_client_hello(std::span<const std::uint8_t>(buf.data(), n));
    if (scan.state != tunnel::client_hello_scan::result::need_more) break;
    if (n == buf.size()) break;  // cannot happen: a record fits
    if (n > seen || n == 0) {
      seen = n;
      // Wait for more bytes (or the first): readiness, or the deadline.
      auto r = co_await (sock.async_wait(tcp::socket::wait_read, asio::as_tuple(asio::use_awaitable)) ||
                         deadline.async_wait(asio::as_tuple(asio::use_awaitable)));
      if (r.index() == 1) co_return;  // the handshake bound passed: closed, like a TLS timeout
      if (n > 0) continue;
    } else {
      // Readable but not grown: the rest of the record is on its way; look again shortly.
      asio::steady_timer pause(sock.get_executor(), std::chrono::milliseconds(5));
      auto r = co_await (pause.async_wait(asio::as_tuple(asio::use_awaitable)) ||
                         deadline.async_wait(asio::as_tuple(asio::use_awaitable)));
      if (r.index() == 1) co_return;
    }
  }
  deadline.cancel();
  const bool tunnel_asked = scan.state == tunnel::client_hello_scan::result::hello &&
                            std::find(scan.alpn.begin(), scan.alpn.end(), tunnel::kAlpn) != scan.alpn.end();
  if (tunnel_asked) {
    tunnels->adopt(std::move(sock));
  } else {
    serve_https(std::move(sock), st);  // not a ClientHello at all: its TLS handshake fails there
  }
}

}  // namespace

asio::awaitable<void> run_acceptor(tcp::acceptor* acceptor, server_state* st, tunnel_server* tunnels) {
  auto ex = co_await asio::this_coro::executor;
  for (;;) {
    // One I/O thread needs no strands, and io_context's executor is cheaper to copy (no
    // allocation inside any_io_executor) on every operation of the data path.
    asio::any_io_executor conn_ex = ex;
    if (st->strands) conn_ex = asio::make_strand(ex);
    auto [ec, sock] = co_await acceptor->async_accept(conn_ex, use_tuple);
    if (ec == asio::error::operation_aborted || st->stopping) co_return;
    if (ec) {
      // EMFILE and friends: back off briefly instead of spinning.
      // The back-off ends early when the server stops (the cancellation bound to this coroutine).
      log::warn("accept failed: {}", ec.message());
      asio::steady_timer t(ex, std::chrono::milliseconds(100));
      auto [tec] = co_await t.async_wait(use_tuple);
      if (tec) co_return;
      continue;
    }
    if (!tunnels) {
      serve_https(std::move(sock), st);
      continue;
    }
    if (st->sniffing.load() >= static_cast<int>(tunnel::kMaxPreAuthTunnels)) {
      beast::error_code ignored;
      sock.close(ignored);
      continue;
    }
    ++st->sniffing;
    conn_ex = sock.get_executor();
    asio::co_spawn(conn_ex, sniff_then_serve(std::move(sock), st, tunnels), asio::detached);
  }
}

void configure_tls(ssl::context& ctx, const runtime_options& o) {
  ctx.set_options(ssl::context::default_workarounds | ssl::context::no_sslv2 |
                  ssl::context::no_sslv3 | ssl::context::no_tlsv1 | ssl::context::no_tlsv1_1 |
                  ssl::context::single_dh_use);
  SSL_CTX* c = ctx.native_handle();
  SSL_CTX_set_min_proto_version(c, TLS1_2_VERSION);
  SSL_CTX_set_options(c, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION |
                             SSL_OP_CIPHER_SERVER_PREFERENCE);
  // TLS 1.2: forward-secret AEAD suites only. TLS 1.3 suites are all modern by construction.
  if (SSL_CTX_set_cipher_list(c,
                              "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
                              "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
                              "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305") != 1)
    throw std::runtime_error("cannot set the TLS cipher list");
  beast::error_code ec;
  ctx.use_certificate_chain_file(o.cert_file, ec);
  if (ec) throw std::runtime_error("cannot load certificate " + o.cert_file + ": " + ec.message());
  ctx.use_private_key_file(o.key_file, ssl::context::pem, ec);
  if (ec) throw std::runtime_error("cannot load private key " + o.key_file + ": " + ec.message());
  static const unsigned char alpn[] = {8, 'h', 't', 't', 'p', '/', '1', '.', '1'};
  SSL_CTX_set_alpn_select_cb(
      c,
      [](SSL*, const unsigned char** out, unsigned char* outlen, const unsigned char* in,
         unsigned int inlen, void*) -> int {
        unsigned char* sel = nullptr;
        if (SSL_select_next_proto(&sel, outlen, alpn, sizeof alpn, in, inlen) !=
            OPENSSL_NPN_NEGOTIATED)
          return SSL_TLSEXT_ERR_NOACK;
        *out = sel;
        return SSL_TLSEXT_ERR_OK;
      },
      nullptr);
}

}  // namespace rsgate::gateway::detail
