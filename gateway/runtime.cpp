// See runtime.hpp. Modelled on Beast's example/advanced/server-flex-awaitable: the acceptor
// loop and each connection are named coroutines taking their parameters by value; per-
// connection state lives in the coroutine frame; every read, write and handshake has a
// deadline (beast::tcp_stream::expires_after).
#include "gateway/runtime.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <thread>
#include <vector>

#include "core/log.hpp"
#include "gateway/net/async_bridge.hpp"
#include "gateway/net/tunnel_server.hpp"
#include "gateway/service.hpp"

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace ssl = asio::ssl;
using tcp = asio::ip::tcp;

namespace rsgate::gateway {
namespace {

constexpr auto use_tuple = asio::as_tuple(asio::use_awaitable);

struct server_state {
  ssl::context& tls;
  api& handler;
  metrics& m;
  http_limits limits;
  std::atomic<bool> stopping{false};
};

// api::handle completes from any thread (the journal writer's, for journaled actions).
template <typename Token>
auto async_handle(api& a, http_request req, Token&& token) {
  return net::async_from_callback<void(http_response)>(
      [&a, r = std::move(req)](auto cb) mutable { a.handle(std::move(r), std::move(cb)); }, token);
}

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

http_response limit_error(const beast::error_code& ec) {
  if (ec == http::error::header_limit)
    return json_error(431, "header_too_large", "request headers exceed the limit");
  if (ec == http::error::body_limit)
    return json_error(413, "body_too_large", "request body exceeds the limit");
  return json_error(400, "bad_request", "malformed HTTP request");
}

asio::awaitable<void> run_connection(beast::ssl_stream<beast::tcp_stream> stream,
                                     std::string remote, server_state* st) {
  struct active_guard {
    metrics& m;
    ~active_guard() { --m.http_connections_active; }
  } guard{st->m};
  const auto& lim = st->limits;
  stream.next_layer().expires_after(std::chrono::milliseconds(lim.handshake_timeout_ms));
  auto [hec] = co_await stream.async_handshake(ssl::stream_base::server, use_tuple);
  if (hec) {
    ++st->m.tls_handshake_failures;
    co_return;
  }
  beast::flat_buffer buffer;
  for (int n = 0; n < lim.max_requests_per_connection && !st->stopping; ++n) {
    http::request_parser<http::string_body> parser;
    parser.header_limit(lim.max_header_bytes);
    parser.body_limit(lim.max_body_bytes);
    stream.next_layer().expires_after(
        std::chrono::milliseconds(n == 0 ? lim.request_timeout_ms : lim.idle_timeout_ms));
    auto [ec, bytes] = co_await http::async_read(stream, buffer, parser, use_tuple);
    if (ec == http::error::end_of_stream || ec == beast::error::timeout ||
        ec == asio::error::operation_aborted || ec == asio::ssl::error::stream_truncated ||
        ec == asio::error::eof || ec == asio::error::connection_reset)
      co_return;
    if (ec) {
      // A malformed or oversized request gets an answer, then the connection closes.
      auto resp = limit_error(ec);
      st->m.count_status(resp.status);
      auto wire = to_wire(std::move(resp), 11, false, false);
      stream.next_layer().expires_after(std::chrono::milliseconds(lim.request_timeout_ms));
      co_await http::async_write(stream, wire, use_tuple);
      break;
    }
    auto& msg = parser.get();
    http_request req;
    req.method = std::string(msg.method_string());
    req.target = std::string(msg.target());
    for (auto& f : msg) req.headers.emplace_back(std::string(f.name_string()), std::string(f.value()));
    req.body = std::move(msg.body());
    req.remote = remote;
    bool keep_alive = msg.keep_alive() && !st->stopping;
    bool head = msg.method() == http::verb::head;
    unsigned version = msg.version();
    auto resp = co_await async_handle(st->handler, std::move(req), asio::use_awaitable);
    st->m.count_status(resp.status);
    auto wire = to_wire(std::move(resp), version, keep_alive, head);
    stream.next_layer().expires_after(std::chrono::milliseconds(lim.request_timeout_ms));
    auto [wec, wn] = co_await http::async_write(stream, wire, use_tuple);
    if (wec || !keep_alive) break;
  }
  stream.next_layer().expires_after(std::chrono::seconds(2));
  co_await stream.async_shutdown(use_tuple);  // stream_truncated etc. are normal here
}

asio::awaitable<void> run_acceptor(tcp::acceptor* acceptor, server_state* st) {
  auto ex = co_await asio::this_coro::executor;
  for (;;) {
    auto [ec, sock] = co_await acceptor->async_accept(asio::make_strand(ex), use_tuple);
    if (ec == asio::error::operation_aborted || st->stopping) co_return;
    if (ec) {
      // EMFILE and friends: back off briefly instead of spinning.
      log::warn("accept failed: {}", ec.message());
      asio::steady_timer t(ex, std::chrono::milliseconds(100));
      co_await t.async_wait(use_tuple);
      continue;
    }
    ++st->m.http_connections_total;
    if (st->m.http_connections_active.load() >= st->limits.max_connections) {
      ++st->m.http_connections_refused;
      beast::error_code ignored;
      sock.close(ignored);
      continue;
    }
    ++st->m.http_connections_active;
    sock.set_option(tcp::no_delay(true), ec);
    std::string remote;
    auto rep = sock.remote_endpoint(ec);
    if (!ec) remote = rep.address().to_string() + ":" + std::to_string(rep.port());
    auto conn_ex = sock.get_executor();
    beast::ssl_stream<beast::tcp_stream> stream(beast::tcp_stream(std::move(sock)), st->tls);
    asio::co_spawn(conn_ex, run_connection(std::move(stream), std::move(remote), st),
                   asio::detached);
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

}  // namespace

int run_https(const runtime_options& opts, api& handler, metrics& m) {
  // Declared before the io_context so they outlive coroutine frames it destroys at the end.
  ssl::context tls(ssl::context::tls_server);
  configure_tls(tls, opts);
  server_state st{tls, handler, m, opts.limits};
  asio::io_context ioc(opts.threads);

  beast::error_code ec;
  auto addr = asio::ip::make_address(opts.host, ec);
  if (ec) throw std::runtime_error("invalid listen address " + opts.host);
  tcp::endpoint ep(addr, opts.port);
  tcp::acceptor acceptor(asio::make_strand(ioc));
  acceptor.open(ep.protocol(), ec);
  if (!ec) acceptor.set_option(asio::socket_base::reuse_address(true), ec);
  if (!ec) acceptor.bind(ep, ec);
  if (!ec) acceptor.listen(asio::socket_base::max_listen_connections, ec);
  if (ec)
    throw std::runtime_error("cannot listen on " + opts.host + ":" + std::to_string(opts.port) +
                             ": " + ec.message());
  auto bound = acceptor.local_endpoint();
  auto acceptor_ex = acceptor.get_executor();
  std::string bound_text = (bound.address().is_v6() ? "[" + bound.address().to_string() + "]"
                                                    : bound.address().to_string()) +
                           ":" + std::to_string(bound.port());

  std::unique_ptr<tunnel_server> tunnels;
  if (opts.sessions) {
    tunnel_config tc;
    tc.host = opts.tunnel_host;
    tc.port = opts.tunnel_port;
    tc.cert_file = opts.cert_file;
    tc.key_file = opts.key_file;
    tunnels = std::make_unique<tunnel_server>(ioc, tc, *opts.sessions, m);
    auto tunnel_bound = tunnels->start();
    if (opts.on_tunnel_listening) opts.on_tunnel_listening(tunnel_bound);
  }

  // Revocations made by other processes and lapsing grants take effect within a second.
  asio::steady_timer housekeeping(ioc);
  std::function<void()> tick = [&] {
    housekeeping.expires_after(std::chrono::seconds(1));
    housekeeping.async_wait([&](beast::error_code tec) {
      if (tec || st.stopping) return;
      opts.sessions->housekeeping();
      tick();
    });
  };
  if (opts.sessions) tick();

  int stop_signal = 0;
  asio::signal_set signals(ioc, SIGINT, SIGTERM);
  asio::steady_timer drain(ioc);
  auto deadline = std::chrono::steady_clock::time_point{};
  std::function<void()> check_drained = [&] {
    if ((m.http_connections_active.load() <= 0 && m.tunnels_active.load() <= 0) ||
        std::chrono::steady_clock::now() >= deadline) {
      ioc.stop();
      return;
    }
    drain.expires_after(std::chrono::milliseconds(20));
    drain.async_wait([&](beast::error_code) { check_drained(); });
  };
  signals.async_wait([&](beast::error_code sec, int signo) {
    if (sec) return;
    stop_signal = signo;
    log::info("signal {} received: stopping (grace {} ms)", signo, opts.limits.shutdown_grace_ms);
    st.stopping = true;
    housekeeping.cancel();
    if (tunnels) tunnels->stop();
    asio::post(acceptor_ex, [&] {
      beast::error_code ignored;
      acceptor.close(ignored);
    });
    deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(opts.limits.shutdown_grace_ms);
    check_drained();
  });

  asio::co_spawn(acceptor_ex, run_acceptor(&acceptor, &st), asio::detached);
  if (opts.on_listening) opts.on_listening(bound_text);

  std::vector<std::thread> pool;
  for (int i = 1; i < opts.threads; ++i) pool.emplace_back([&] { ioc.run(); });
  ioc.run();
  for (auto& t : pool) t.join();
  return stop_signal;
}

}  // namespace rsgate::gateway
