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
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/ssl/error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/thread_pool.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/websocket.hpp>
#include <thread>
#include <vector>

#include "core/log.hpp"
#include "protocol/wire.hpp"
#include "gateway/http/request_input.hpp"
#include "net/async_bridge.hpp"
#include "net/socket_state.hpp"
#include "net/tls_stream.hpp"
#include "gateway/tunnel/tunnel_server.hpp"
#include "gateway/service.hpp"

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace websocket = beast::websocket;
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
  service* svc = nullptr;
  bool strands = true;  // more than one I/O thread: each connection on its own strand
  asio::thread_pool* workers = nullptr;
  std::atomic<bool> stopping{false};
};

// The WebSocket runs on the connection's net::tls_stream, which stays in the connection's
// coroutine frame (it is not movable).
using ws_stream = websocket::stream<net::tls_stream&>;
constexpr std::string_view kStreamPath = "/api/v1/channels/stream";

bool is_stream_path(std::string_view target) { return target.substr(0, target.find('?')) == kStreamPath; }

// The stream's one-time token, read as strictly as every other query (request_input.hpp):
// `token` and nothing else, once. The error is the answer to send instead.
std::variant<std::string, http_response> token_param(std::string_view target) {
  try {
    query_params q(target, {"token"});
    auto t = q.get("token");
    if (!t || t->empty() || t->size() > 128) return json_error(401, "unauthorized", "?token= is missing");
    return *t;
  } catch (const bad_input& e) {
    return json_error(400, "bad_request", e.what());
  }
}

// The representative's side of one channel: a WebSocket whose binary messages are the bytes
// of the stream and whose text message "eof" is a half-close (docs/api.md). Reader and
// writer run on this connection's strand, each waiting on its own timer, which the tunnel
// side cancels (through channel_link::wake) when there is something for them.
constexpr std::size_t kStreamMessageMax = tunnel::kMaxStreamMessage;  // both ways; docs/api.md §5.5
constexpr auto kDrainAfterClose = std::chrono::seconds(30);  // docs/api.md §5.5, how a channel ends

struct stream_timers {
  explicit stream_timers(const asio::any_io_executor& ex) : data(ex), credit(ex) {}
  asio::steady_timer data;    // the writer waits here for the agent's bytes, EOF or close
  asio::steady_timer credit;  // the reader waits here for the agent's window
};

// How the reader ended, for the writer (both on the connection's strand).
struct reader_end {
  bool done = false;         // the reader returned: `ws` is the writer's alone
  bool stream_lost = false;  // because the WebSocket was closed or failed: no close frame to send
};

// Why a channel ended on the representative's side (docs/api.md §5.5).
constexpr std::string_view kClosedByRepresentative = "closed by the representative";
constexpr std::string_view kRepresentativeFailed = "the representative's connection failed";

// The stream side ends the channel: the reason first (under the link's mutex), then CLOSE.
void end_channel(channel_link& c, tunnel_link& link, std::string_view why) {
  c.close_for(std::string(why));
  link.channel_close(c.id, std::string(why));
}

// The representative's connection is gone although nothing reads it: a reset, a TCP timeout,
// or the WebSocket's own idle timeout (which closes it).
bool representative_gone(ws_stream& ws) {
  return !ws.is_open() || net::connection_lost(ws.next_layer().socket());
}

// Forwards one binary message to the agent as DATA within the agent's window (the channel's
// flow), waiting for WINDOW while the credit is used up. False when the channel ended.
asio::awaitable<bool> forward_to_agent(ws_stream* ws, channel_link* c, tunnel_link* link, stream_timers* timers,
                                       reader_end* end, asio::const_buffer message) {
  const auto* p = static_cast<const std::uint8_t*>(message.data());
  std::size_t left = message.size();
  while (left > 0) {
    std::uint32_t take = 0;
    bool closed = false, ended = false;
    {
      std::lock_guard lock(c->mu);
      closed = c->closed;
      ended = c->flow.sending_ended();
      take = closed ? 0 : c->flow.sendable(left);
      if (take > 0) {
        c->flow.sent(take);
        c->bytes_to_agent += take;
      } else if (!closed && !ended) {
        c->stream_waiting = true;
      }
    }
    if (closed) co_return false;
    if (ended) {  // bytes after its own `eof`: the representative broke the stream's rules
      end_channel(*c, *link, kRepresentativeFailed);
      co_return false;
    }
    if (take == 0) {
      // The agent's window is full: wait for its WINDOW without reading the WebSocket, so
      // that TCP back-pressure reaches the representative. A representative who resets
      // meanwhile is seen without reading: look once a second.
      timers->credit.expires_after(std::chrono::seconds(1));
      auto [tec] = co_await timers->credit.async_wait(use_tuple);
      if (!tec && representative_gone(*ws)) {
        end->stream_lost = true;
        end_channel(*c, *link, kRepresentativeFailed);
        co_return false;
      }
      continue;
    }
    link->channel_data(c->id, std::span<const std::uint8_t>(p, take));
    p += take;
    left -= take;
  }
  co_return true;
}

asio::awaitable<void> channel_reader(ws_stream* ws, std::shared_ptr<channel_link> c, std::shared_ptr<tunnel_link> link,
                                     std::shared_ptr<stream_timers> timers, std::shared_ptr<reader_end> end) {
  // However this ends, the writer must learn it: it owns `ws` and waits for us before it goes.
  struct done_guard {
    std::shared_ptr<reader_end> end;
    std::shared_ptr<stream_timers> t;
    ~done_guard() {
      end->done = true;
      t->data.cancel();
    }
  } guard{end, timers};
  beast::flat_buffer buf;
  for (;;) {
    buf.clear();
    auto [ec, n] = co_await ws->async_read(buf, use_tuple);
    if (ec) {
      end->stream_lost = true;
      end_channel(*c, *link, ec == websocket::error::closed ? kClosedByRepresentative : kRepresentativeFailed);
      co_return;
    }
    if (!ws->got_text()) {
      if (!co_await forward_to_agent(ws, c.get(), link.get(), timers.get(), end.get(), buf.data())) co_return;
      continue;
    }
    if (beast::buffers_to_string(buf.data()) != "eof") continue;  // other text is ignored
    bool send = false;
    {
      std::lock_guard lock(c->mu);
      send = !c->closed && c->flow.send_eof();  // once; a repeated `eof` is ignored
    }
    if (send) link->channel_eof(c->id);
  }
}

// Waits up to 20 s for the agent's answer to CHANNEL_OPEN. False when the channel ended
// instead (refused, closed, no answer); the WebSocket is closed with the reason then.
asio::awaitable<bool> await_accept(ws_stream* ws, std::shared_ptr<channel_link> c, std::shared_ptr<tunnel_link> link,
                                   std::shared_ptr<stream_timers> timers) {
  constexpr std::string_view kNoAnswer = "the customer's agent did not answer";
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(tunnel::kHandshakeTimeoutSeconds);
  for (;;) {
    bool accepted = false, closed = false;
    std::string reason;
    {
      std::lock_guard lock(c->mu);
      accepted = c->flow.accepted();
      closed = c->closed;
      reason = c->reason;
      if (!accepted && !closed) c->stream_waiting = true;
    }
    if (closed || std::chrono::steady_clock::now() >= deadline) {
      if (!closed) end_channel(*c, *link, kNoAnswer);  // the reason is there when it is journaled
      websocket::close_reason cr(websocket::close_code::try_again_later);
      cr.reason = (closed ? reason : std::string(kNoAnswer)).substr(0, 120);
      co_await ws->async_close(cr, use_tuple);
      co_return false;
    }
    if (accepted) co_return true;
    timers->data.expires_at(deadline);
    co_await timers->data.async_wait(use_tuple);
  }
}

// The writer: hands what the agent sent to the representative, up to one message of 64 KiB
// per write, and tells the channel's flow, which returns it to the agent as WINDOW (batched,
// growing the window); sends `eof` once the agent's EOF and everything before it are handed
// on. Returns when the channel is closed (after delivering what the inbox still holds) or the
// reader has ended.
asio::awaitable<void> deliver_to_representative(ws_stream* ws, std::shared_ptr<channel_link> c,
                                                std::shared_ptr<tunnel_link> link,
                                                std::shared_ptr<stream_timers> timers,
                                                std::shared_ptr<reader_end> reader) {
  std::vector<bytes> batch;
  std::vector<asio::const_buffer> bufs;
  std::uint32_t handed = 0;  // written by the last write; told to the flow in the next lock
  for (;;) {
    batch.clear();
    bufs.clear();
    std::size_t total = 0;
    std::uint32_t increment = 0;
    bool closed = false, eof_now = false;
    {
      std::lock_guard lock(c->mu);
      if (handed > 0) increment = c->flow.handed_on(std::exchange(handed, 0), c->budget.get());
      while (!c->inbox.empty() && total + c->inbox.front().size() <= kStreamMessageMax) {
        total += c->inbox.front().size();
        batch.push_back(std::move(c->inbox.front()));
        c->inbox.pop_front();
      }
      closed = c->closed;
      eof_now = batch.empty() && c->flow.take_eof();
      if (batch.empty() && !eof_now && !closed && !reader->done) c->stream_waiting = true;
    }
    // handed_on raised the window (its growth) before this WINDOW lets the agent use it.
    if (increment > 0) link->channel_window(c->id, increment);
    // Once the channel is closed, what the agent sent before still goes to the representative,
    // then the close; a representative who takes nothing for kDrainAfterClose loses the rest
    // (the TLS stream's deadline closes the connection), so channel.close follows within a bound.
    if (closed) ws->next_layer().expires_after(kDrainAfterClose);
    if (!batch.empty()) {
      for (auto& b : batch) bufs.emplace_back(asio::buffer(b));
      ws->binary(true);
      auto [ec, n] = co_await ws->async_write(bufs, use_tuple);
      if (ec) {
        end_channel(*c, *link, kRepresentativeFailed);
        co_return;
      }
      handed = static_cast<std::uint32_t>(total);
      continue;
    }
    if (eof_now) {
      ws->text(true);
      auto [ec, n] = co_await ws->async_write(asio::buffer(std::string_view("eof")), use_tuple);
      if (ec) {
        end_channel(*c, *link, kRepresentativeFailed);
        co_return;
      }
      continue;
    }
    if (closed || reader->done) co_return;
    timers->data.expires_after(std::chrono::seconds(60));
    co_await timers->data.async_wait(use_tuple);
  }
}

asio::awaitable<void> run_channel_stream(ws_stream ws, channel_grant g, std::string remote, server_state* st) {
  auto ex = ws.get_executor();
  auto timers = std::make_shared<stream_timers>(ex);
  auto c = g.link->open_channel(g.scope, g.access_type, g.user);
  {
    std::lock_guard lock(c->mu);
    c->wake_stream = [ex, timers] {
      asio::post(ex, [timers] {
        timers->data.cancel();
        timers->credit.cancel();
      });
    };
  }
  if (!co_await await_accept(&ws, c, g.link, timers)) {
    st->svc->channel_closed(c, remote);
    co_return;
  }
  if (!st->svc->channel_opened(c)) {
    // The access went while the agent was connecting: nothing the agent sent is relayed.
    std::string reason;
    {
      std::lock_guard lock(c->mu);
      reason = c->reason;
      c->inbox.clear();
      c->wake_stream = nullptr;
    }
    websocket::close_reason cr(websocket::close_code::policy_error);
    cr.reason = reason.substr(0, 120);
    co_await ws.async_close(cr, use_tuple);
    st->svc->channel_closed(c, remote);
    co_return;
  }
  auto reader = std::make_shared<reader_end>();
  asio::co_spawn(ex, channel_reader(&ws, c, g.link, timers, reader), asio::detached);
  co_await deliver_to_representative(&ws, c, g.link, timers, reader);
  std::string reason;
  {
    std::lock_guard lock(c->mu);
    reason = c->reason;
    c->wake_stream = nullptr;
    c->flow.release(c->budget.get());  // the window's growth goes back to the tunnel's budget
  }
  // The reason goes in a close frame unless the representative closed the WebSocket or it
  // failed; also when the reader stopped because the channel ended while it forwarded.
  if (!reader->stream_lost) {
    websocket::close_reason cr(websocket::close_code::normal);
    cr.reason = reason.substr(0, 120);
    co_await ws.async_close(cr, use_tuple);
  }
  // A pending read of the reader ends with the close; it uses `ws`, so wait for it.
  for (int i = 0; i < 500 && !reader->done; ++i) {
    timers->data.expires_after(std::chrono::milliseconds(10));
    co_await timers->data.async_wait(use_tuple);
  }
  if (!reader->done) beast::get_lowest_layer(ws).close();
  while (!reader->done) {
    timers->data.expires_after(std::chrono::milliseconds(10));
    co_await timers->data.async_wait(use_tuple);
  }
  st->svc->channel_closed(c, remote);
}

// Redeems a channel token through the service (from any thread back onto this strand).
template <typename Token>
auto async_redeem(service& svc, std::string token, std::string remote, Token&& t) {
  return net::async_from_callback<void(std::variant<channel_grant, http_response>)>(
      [&svc, token, remote](auto cb) { svc.redeem_channel(token, remote, cb); }, t);
}

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

asio::awaitable<void> run_connection(tcp::socket sock, std::string remote, server_state* st) {
  struct active_guard {
    metrics& m;
    ~active_guard() { --m.http_connections_active; }
  } guard{st->m};
  const auto& lim = st->limits;
  net::tls_stream stream(std::move(sock), st->tls.native_handle(), net::tls_stream::kHttpsBuffer);
  stream.expires_after(std::chrono::milliseconds(lim.handshake_timeout_ms));
  auto hec = co_await stream.handshake(true);
  if (hec) {
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
    if (ec == http::error::end_of_stream || ec == asio::error::timed_out ||
        ec == asio::error::operation_aborted || ec == asio::ssl::error::stream_truncated ||
        ec == asio::error::eof || ec == asio::error::connection_reset)
      co_return;
    if (ec) {
      // A malformed or oversized request gets an answer, then the connection closes.
      auto resp = limit_error(ec);
      st->m.count_status(resp.status);
      auto wire = to_wire(std::move(resp), 11, false, false);
      stream.expires_after(std::chrono::milliseconds(lim.request_timeout_ms));
      co_await http::async_write(stream, wire, use_tuple);
      break;
    }
    // The read's deadline must not run on while the request is handled (a journal
    // verification may take seconds): the answer gets a fresh one when it is written.
    stream.expires_never();
    auto& msg = parser.get();
    if (st->svc && websocket::is_upgrade(msg) && is_stream_path(msg.target())) {
      // A channel stream: the one-time token from POST /sessions/{id}/channels says which.
      auto token = token_param(msg.target());
      // (No co_await inside ?: — GCC 12 miscompiles it.)
      std::variant<channel_grant, http_response> r = json_error(401, "unauthorized", "?token= is missing");
      if (auto* err = std::get_if<http_response>(&token)) r = *err;
      else r = co_await async_redeem(*st->svc, std::get<std::string>(token), remote, asio::use_awaitable);
      if (auto* err = std::get_if<http_response>(&r)) {
        st->m.count_status(err->status);
        auto wire = to_wire(std::move(*err), msg.version(), false, false);
        co_await http::async_write(stream, wire, use_tuple);
        break;
      }
      st->m.count_status(101);
      stream.expires_never();
      ws_stream ws(stream);
      ws.set_option(websocket::stream_base::timeout::suggested(beast::role_type::server));
      ws.read_message_max(kStreamMessageMax);
      ws.auto_fragment(false);  // one frame per message: a 4 KiB fragment costs a TLS record
      auto [aec] = co_await ws.async_accept(msg, use_tuple);
      if (aec) {
        // channel.open is journaled already: record that it never opened.
        auto never = std::make_shared<channel_link>();
        auto& gr = std::get<channel_grant>(r);
        never->session_id = gr.session_id;
        never->user = gr.user;
        never->scope = gr.scope;
        never->access_type = gr.access_type;
        never->opened_at = system_clock::instance().now();
        never->reason = "the representative's stream failed before the channel opened";
        st->svc->channel_closed(never, remote);
        co_return;
      }
      channel_grant grant = std::get<channel_grant>(r);
      co_await run_channel_stream(std::move(ws), std::move(grant), remote, st);
      co_return;
    }
    http_request req;
    req.method = std::string(msg.method_string());
    req.target = std::string(msg.target());
    for (auto& f : msg) req.headers.emplace_back(std::string(f.name_string()), std::string(f.value()));
    req.body = std::move(msg.body());
    req.remote = remote;
    bool keep_alive = msg.keep_alive() && !st->stopping;
    bool head = msg.method() == http::verb::head;
    unsigned version = msg.version();
    auto resp = co_await async_handle(st->handler, *st->workers, std::move(req), asio::use_awaitable);
    st->m.count_status(resp.status);
    auto wire = to_wire(std::move(resp), version, keep_alive, head);
    stream.expires_after(std::chrono::milliseconds(lim.request_timeout_ms));
    auto [wec, wn] = co_await http::async_write(stream, wire, use_tuple);
    if (wec || !keep_alive) break;
  }
  stream.expires_after(std::chrono::seconds(2));
  co_await stream.shutdown();
}

asio::awaitable<void> run_acceptor(tcp::acceptor* acceptor, server_state* st) {
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
    conn_ex = sock.get_executor();
    asio::co_spawn(conn_ex, run_connection(std::move(sock), std::move(remote), st), asio::detached);
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
  server_state st{tls, handler, m, opts.limits, opts.sessions};
  st.strands = opts.threads > 1;
  asio::io_context ioc(opts.threads);
  asio::thread_pool workers(static_cast<std::size_t>(std::max(1, opts.workers)));
  st.workers = &workers;

  beast::error_code ec;
  auto addr = asio::ip::make_address(opts.host, ec);
  if (ec) throw std::runtime_error("invalid listen address " + opts.host);
  tcp::endpoint ep(addr, opts.port);
  asio::any_io_executor acceptor_strand = ioc.get_executor();
  if (st.strands) acceptor_strand = asio::make_strand(ioc);
  tcp::acceptor acceptor(acceptor_strand);
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
    tc.strands = st.strands;
    tunnels = std::make_unique<tunnel_server>(ioc, tc, *opts.sessions, m);
    auto tunnel_bound = tunnels->start();
    if (opts.on_tunnel_listening) opts.on_tunnel_listening(tunnel_bound);
  }

  // Policy steps that waited for the journal continue on the worker pool, never on the
  // journal writer's thread or an I/O thread.
  if (opts.sessions)
    opts.sessions->set_executor([&workers](std::function<void()> f) { asio::post(workers, std::move(f)); });

  // Revocations made by other processes and lapsing grants take effect within a second. The
  // pass reads state.db, so it runs on the worker pool, not on this I/O thread.
  asio::steady_timer housekeeping(ioc);
  std::function<void()> tick = [&] {
    housekeeping.expires_after(std::chrono::seconds(1));
    housekeeping.async_wait([&](beast::error_code tec) {
      if (tec || st.stopping) return;
      asio::post(workers, [&opts] {
        try {
          opts.sessions->housekeeping();
        } catch (const std::exception& e) {
          log::error("housekeeping failed: {}", e.what());
        }
      });
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
  // From now on policy steps continue inline: the pool is about to go.
  if (opts.sessions) opts.sessions->set_executor({});
  workers.join();
  // Coroutines may still wait for the journal or a policy step, whose completions post to this
  // io_context: let them arrive and run before it goes (bounded), or they would post into a
  // destroyed io_context.
  if (opts.sessions) {
    auto until = std::chrono::steady_clock::now() + std::chrono::seconds(5);
    while (std::chrono::steady_clock::now() < until &&
           !(opts.sessions->idle() && opts.sessions->journal().idle())) {
      ioc.restart();
      ioc.run_for(std::chrono::milliseconds(20));
    }
    ioc.restart();
    ioc.poll();
  }
  return stop_signal;
}

}  // namespace rsgate::gateway
