// See tunnel_server.hpp: the tunnel listener. TLS 1.3 only, ALPN "rsgate/1"; each accepted
// connection passes the admission limits and then runs as a tunnel_connection coroutine on its
// own strand (tunnel_connection.hpp). Summaries of connections not journaled one by one are
// flushed here once a second and at stop.
#include "gateway/tunnel/tunnel_server.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/strand.hpp>
#include <boost/beast/core/error.hpp>
#include <boost/json/serialize.hpp>

#include "core/timefmt.hpp"
#include "gateway/tunnel/tunnel_connection.hpp"

namespace rsgate::gateway {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace ssl = asio::ssl;
namespace json = boost::json;
using tcp = asio::ip::tcp;
using detail::log_end;
using detail::shared_ctx;
using detail::tunnel_connection;
using detail::use_tuple;

namespace {

// The unit of the limits before authentication: an IPv4 address, or an IPv6 /64 (one host
// usually holds a whole /64, so counting single IPv6 addresses would limit nothing).
std::string source_key(const asio::ip::address& a) {
  if (!a.is_v6()) return a.to_string();
  auto v6 = a.to_v6();
  if (v6.is_v4_mapped()) return asio::ip::make_address_v4(asio::ip::v4_mapped, v6).to_string();
  auto b = v6.to_bytes();
  std::fill(b.begin() + 8, b.end(), 0);
  return asio::ip::address_v6(b).to_string() + "/64";
}

}  // namespace

struct tunnel_server::impl {
  asio::io_context& ioc;
  std::shared_ptr<shared_ctx> ctx;
  // New connections' TLS context; reload() swaps it (a connection's SSL object keeps a
  // reference to the context it was made from).
  std::shared_ptr<ssl::context> tls;
  std::mutex tls_mu;
  tcp::acceptor acceptor;
  std::mutex live_mu;
  std::vector<std::weak_ptr<tunnel_connection>> live;
  // The ended ones are swept out when `live` doubled since the last sweep: an accept costs
  // the same with 10,000 tunnels open as with ten (amortised; guarded by live_mu).
  std::size_t sweep_at = 64;

  impl(asio::io_context& io, tunnel_config c, service& s, metrics& mm)
      : ioc(io), ctx(std::make_shared<shared_ctx>(s, mm, std::move(c))), acceptor(executor_for(io, ctx->cfg.strands)) {}
  static asio::any_io_executor executor_for(asio::io_context& io, bool strands) {
    if (strands) return asio::make_strand(io);
    return io.get_executor();
  }
};

namespace {

asio::awaitable<void> run_tunnel(std::shared_ptr<tunnel_connection> c) { co_await c->run(); }

// TLS 1.3 only, the certificate and key from their files, ALPN "rsgate/1" required.
std::shared_ptr<ssl::context> make_tunnel_tls(const std::string& cert_file, const std::string& key_file) {
  auto tls = std::make_shared<ssl::context>(ssl::context::tls_server);
  SSL_CTX* c = tls->native_handle();
  SSL_CTX_set_min_proto_version(c, TLS1_3_VERSION);
  SSL_CTX_set_options(c, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION);
  // No session tickets: every tunnel authenticates from scratch (CHAP bound to this
  // connection's exporter), so an agent has nothing to resume, and a ticket would cost the
  // gateway a serialized, encrypted session per establishment and ticket keys in memory.
  SSL_CTX_set_num_tickets(c, 0);
  beast::error_code ec;
  tls->use_certificate_chain_file(cert_file, ec);
  if (ec) throw std::runtime_error("cannot load certificate " + cert_file + ": " + ec.message());
  tls->use_private_key_file(key_file, ssl::context::pem, ec);
  if (ec) throw std::runtime_error("cannot load private key " + key_file + ": " + ec.message());
  // ALPN "rsgate/1" is required: anything else fails the handshake.
  SSL_CTX_set_alpn_select_cb(
      c,
      [](SSL*, const unsigned char** out, unsigned char* outlen, const unsigned char* in, unsigned int inlen,
         void*) -> int {
        static const unsigned char want[] = {8, 'r', 's', 'g', 'a', 't', 'e', '/', '1'};
        unsigned char* sel = nullptr;
        if (SSL_select_next_proto(&sel, outlen, want, sizeof want, in, inlen) != OPENSSL_NPN_NEGOTIATED)
          return SSL_TLSEXT_ERR_ALERT_FATAL;
        *out = sel;
        return SSL_TLSEXT_ERR_OK;
      },
      nullptr);
  return tls;
}

// Journals the summaries of unauthenticated connections that were not journaled one by one.
void journal_summaries(shared_ctx& ctx, std::vector<tunnel::source_summary> due) {
  for (auto& s : due) {
    json::object reasons;
    for (auto& [r, n] : s.reasons) reasons[r] = n;
    json::array machines;
    for (auto& m : s.machines) machines.emplace_back(m);
    journal::entry e;
    e.kind = "tunnel.connect";
    e.actor = "agent";
    e.source = s.source;
    e.result = journal::outcome::denied;
    e.detail = json::serialize(json::object{{"summary", true},
                                            {"connections", s.connections},
                                            {"since", format_rfc3339(s.since)},
                                            {"window_seconds", tunnel::kSourceWindowSeconds},
                                            {"reasons", std::move(reasons)},
                                            {"machines", std::move(machines)}});
    ctx.svc.journal().append(std::move(e), [](const journal::append_result&) {});
  }
}

asio::awaitable<void> flush_summaries(std::shared_ptr<shared_ctx> ctx) {
  asio::steady_timer t(co_await asio::this_coro::executor);
  while (!ctx->stopping) {
    t.expires_after(std::chrono::seconds(1));
    co_await t.async_wait(use_tuple);
    if (ctx->stopping) break;
    journal_summaries(*ctx, ctx->adm.take_due(system_clock::instance().now()));
  }
}

// A connection over the limits before authentication is closed at once; journaled (or
// counted into its source's summary) like any unauthenticated connection.
void refuse_at_accept(shared_ctx& ctx, const tunnel::admission::ticket& t, const std::string& remote) {
  const std::string reason = t.v == tunnel::admission::verdict::source_full
                                 ? "too many unauthenticated connections from this address"
                                 : "too many unauthenticated connections";
  const auto now = system_clock::instance().now();
  if (!ctx.adm.journal_individually(t.source, now)) {
    ctx.adm.suppressed(t.source, reason, "", now);
    return;
  }
  journal::entry e;
  e.kind = "tunnel.connect";
  e.actor = "agent";
  e.source = remote;
  e.result = journal::outcome::denied;
  e.detail = json::serialize(json::object{{"reason", reason}});
  ctx.svc.journal().append(std::move(e), [](const journal::append_result&) {});
}

// An accepted connection (here, or by the HTTPS listener on a shared port): the admission
// limits before TLS, then its own coroutine on the socket's executor (its strand).
void admit(tunnel_server::impl* st, tcp::socket sock) {
  auto& ctx = st->ctx;
  beast::error_code ec;
  auto rep = sock.remote_endpoint(ec);
  if (ec || ctx->stopping || ctx->draining) return;  // gone, or the gateway stops: the socket closes
  std::string remote = rep.address().to_string() + ":" + std::to_string(rep.port());
  auto ticket = ctx->adm.on_accept(source_key(rep.address()), system_clock::instance().now());
  if (ticket.v != tunnel::admission::verdict::admit) {
    refuse_at_accept(*ctx, ticket, remote);
    return;
  }
  sock.set_option(tcp::no_delay(true), ec);
  auto conn_ex = sock.get_executor();
  std::shared_ptr<ssl::context> tls;
  {
    std::lock_guard lock(st->tls_mu);
    tls = st->tls;
  }
  auto c = std::make_shared<tunnel_connection>(std::move(sock), tls->native_handle(), std::move(remote),
                                               std::move(ticket.source), ctx);
  {
    std::lock_guard lock(st->live_mu);
    if (ctx->stopping) return;  // stop() has asked the live ones to close already; c goes unserved
    if (st->live.size() >= st->sweep_at) {
      std::erase_if(st->live, [](auto& w) { return w.expired(); });
      st->sweep_at = std::max<std::size_t>(64, 2 * st->live.size());
    }
    st->live.push_back(c);
  }
  asio::co_spawn(conn_ex, run_tunnel(std::move(c)), [](std::exception_ptr e) { log_end("tunnel", e); });
}

asio::awaitable<void> accept_tunnels(tunnel_server::impl* st) {
  auto ex = co_await asio::this_coro::executor;
  auto ctx = st->ctx;
  for (;;) {
    asio::any_io_executor conn_ex = ex;
    if (ctx->cfg.strands) conn_ex = asio::make_strand(ex);
    auto [ec, sock] = co_await st->acceptor.async_accept(conn_ex, use_tuple);
    if (ec == asio::error::operation_aborted || !st->acceptor.is_open()) co_return;
    if (ec) {
      asio::steady_timer t(ex, std::chrono::milliseconds(100));
      co_await t.async_wait(use_tuple);
      continue;
    }
    admit(st, std::move(sock));
  }
}

}  // namespace

tunnel_server::tunnel_server(asio::io_context& ioc, tunnel_config cfg, service& svc, metrics& m)
    : impl_(std::make_unique<impl>(ioc, std::move(cfg), svc, m)) {}

// Connections that ended after stop() may have left summaries: recorded now, while the journal
// is still open.
tunnel_server::~tunnel_server() {
  journal_summaries(*impl_->ctx, impl_->ctx->adm.take_due(system_clock::instance().now(), true));
}

void tunnel_server::adopt(tcp::socket sock) { admit(impl_.get(), std::move(sock)); }

std::string tunnel_server::start(bool listen) {
  auto& st = *impl_;
  st.tls = make_tunnel_tls(st.ctx->cfg.cert_file, st.ctx->cfg.key_file);
  if (!listen) {
    asio::co_spawn(st.acceptor.get_executor(), flush_summaries(st.ctx),
                   [](std::exception_ptr e) { log_end("tunnel journal summaries", e); });
    return {};
  }
  beast::error_code ec;
  auto addr = asio::ip::make_address(st.ctx->cfg.host, ec);
  if (ec) throw std::runtime_error("invalid tunnel listen address " + st.ctx->cfg.host);
  tcp::endpoint ep(addr, st.ctx->cfg.port);
  st.acceptor.open(ep.protocol(), ec);
  if (!ec) st.acceptor.set_option(asio::socket_base::reuse_address(true), ec);
  if (!ec) st.acceptor.bind(ep, ec);
  if (!ec) st.acceptor.listen(asio::socket_base::max_listen_connections, ec);
  if (ec)
    throw std::runtime_error("cannot listen on " + st.ctx->cfg.host + ":" + std::to_string(st.ctx->cfg.port) +
                             " (tunnel): " + ec.message());
  auto bound = st.acceptor.local_endpoint();
  asio::co_spawn(st.acceptor.get_executor(), accept_tunnels(impl_.get()),
                 [](std::exception_ptr e) { log_end("tunnel listener", e); });
  asio::co_spawn(st.acceptor.get_executor(), flush_summaries(st.ctx),
                 [](std::exception_ptr e) { log_end("tunnel journal summaries", e); });
  return (bound.address().is_v6() ? "[" + bound.address().to_string() + "]" : bound.address().to_string()) + ":" +
         std::to_string(bound.port());
}

void tunnel_server::reload(const tunnel_config& next) {
  auto& st = *impl_;
  auto tls = make_tunnel_tls(next.cert_file, next.key_file);  // throws before anything changes
  {
    std::lock_guard lock(st.tls_mu);
    st.tls = std::move(tls);
  }
  std::lock_guard lock(st.ctx->cfg_mu);
  auto& c = st.ctx->cfg;
  c.cert_file = next.cert_file;
  c.key_file = next.key_file;
  c.rekey_interval_ms = next.rekey_interval_ms;
  c.dead_peer_ms = next.dead_peer_ms;
  c.grace_s = next.grace_s;
  c.tunnel_life_ms = next.tunnel_life_ms;
}

void tunnel_server::sweep() {
  auto& st = *impl_;
  std::lock_guard lock(st.live_mu);
  std::erase_if(st.live, [](auto& w) { return w.expired(); });
  st.sweep_at = std::max<std::size_t>(64, 2 * st.live.size());
  st.live.shrink_to_fit();
}

std::size_t tunnel_server::awaiting_receipts() {
  auto& st = *impl_;
  std::lock_guard lock(st.live_mu);
  std::size_t n = 0;
  for (auto& w : st.live)
    if (auto c = w.lock(); c && c->awaiting_receipt()) ++n;
  return n;
}

void tunnel_server::drain() {
  auto& st = *impl_;
  st.ctx->draining = true;
  asio::post(st.acceptor.get_executor(), [&st] {
    beast::error_code ignored;
    st.acceptor.close(ignored);
  });
  std::lock_guard lock(st.live_mu);
  for (auto& w : st.live)
    if (auto c = w.lock()) c->move_if_unowned();
}

void tunnel_server::stop(std::function<void()> on_tunnel_end, bool move) {
  auto& st = *impl_;
  st.ctx->on_end = std::move(on_tunnel_end);  // before `stopping`, which publishes it
  st.ctx->stopping = true;
  asio::post(st.acceptor.get_executor(), [&st] {
    beast::error_code ignored;
    st.acceptor.close(ignored);
  });
  // What the journal has not recorded one by one yet is recorded now, as summaries.
  journal_summaries(*st.ctx, st.ctx->adm.take_due(system_clock::instance().now(), true));
  std::lock_guard lock(st.live_mu);
  for (auto& w : st.live)
    if (auto c = w.lock()) c->close_for_restart(move);
}

}  // namespace rsgate::gateway
