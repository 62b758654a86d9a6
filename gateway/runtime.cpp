// See runtime.hpp. The process side of the network runtime: the io_context and its threads,
// the worker pool, the HTTPS listener (https_server.cpp) and the tunnel listener
// (tunnel/tunnel_server.cpp), housekeeping once a second, and SIGINT/SIGTERM: stop accepting,
// ask every tunnel to end, then wait for the connections to drain within the grace period.
#include <malloc.h>

#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <mutex>
#include <optional>
#include <thread>
#include <vector>

#include "core/log.hpp"
#include "gateway/detail/https_server.hpp"
#include "gateway/peer_client.hpp"
#include "gateway/service.hpp"
#include "gateway/tunnel/tunnel_server.hpp"

namespace rsgate::gateway {
namespace {

using namespace detail;

// Binds and listens; returns the bound "host:port" (the port is real even when 0 was asked).
std::string open_listener(tcp::acceptor& acceptor, const std::string& host, std::uint16_t port) {
  beast::error_code ec;
  auto addr = asio::ip::make_address(host, ec);
  if (ec) throw std::runtime_error("invalid listen address " + host);
  tcp::endpoint ep(addr, port);
  acceptor.open(ep.protocol(), ec);
  if (!ec) acceptor.set_option(asio::socket_base::reuse_address(true), ec);
  if (!ec) acceptor.bind(ep, ec);
  if (!ec) acceptor.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) throw std::runtime_error("cannot listen on " + host + ":" + std::to_string(port) + ": " + ec.message());
  auto bound = acceptor.local_endpoint();
  return (bound.address().is_v6() ? "[" + bound.address().to_string() + "]" : bound.address().to_string()) + ":" +
         std::to_string(bound.port());
}

tunnel_config tunnel_config_for(const runtime_options& opts) {
  tunnel_config tc;
  tc.host = opts.tunnel_host;
  tc.port = opts.tunnel_port;
  tc.rekey_interval_ms = static_cast<std::int64_t>(opts.rekey_interval_s) * 1000;
  tc.dead_peer_ms = opts.keepalive_s * 1000;
  tc.grace_s = opts.grace_s;
  tc.max_tunnels = static_cast<std::size_t>(opts.max_tunnels);
  tc.tunnel_life_ms = static_cast<std::int64_t>(opts.reauth_s) * 1000;
  tc.cert_file = opts.cert_file;
  tc.key_file = opts.key_file;
  return tc;
}

// `https_bound`: with tunnel.listen = "http", the HTTPS listener's address, which then
// serves the tunnels too (no listener of their own).
std::unique_ptr<tunnel_server> start_tunnels(asio::io_context& ioc, const runtime_options& opts, bool strands,
                                             metrics& m, const std::string& https_bound) {
  auto tc = tunnel_config_for(opts);
  tc.strands = strands;
  auto tunnels = std::make_unique<tunnel_server>(ioc, std::move(tc), *opts.sessions, m);
  auto tunnel_bound = tunnels->start(!opts.tunnel_on_http);
  if (opts.tunnel_on_http) tunnel_bound = https_bound;
  if (opts.on_tunnel_listening) opts.on_tunnel_listening(tunnel_bound);
  return tunnels;
}

// Gives the memory of closed connections back to the system. glibc keeps what is freed in
// its heaps for reuse, and one live block near a heap's top pins everything below it, so
// without this the gateway's resident size would stay at its peak after thousands of tunnels
// closed (docs/performance.md, scale). Trims once the connections open fell by kTrimAfter
// since the last trim (or to none), at most once per tick.
class memory_trimmer {
 public:
  memory_trimmer(metrics& m, tunnel_server* tunnels) : m_(m), tunnels_(tunnels) {}
  void tick() {
    const std::int64_t open = m_.tunnels_active.load() + m_.http_connections_active.load();
    if (open > peak_) peak_ = open;
    if (peak_ - open >= kTrimAfter || (open == 0 && peak_ > 0)) {
      if (tunnels_) tunnels_->sweep();  // the ended tunnels' objects, held by weak references
      ::malloc_trim(0);
      peak_ = open;
    }
  }

 private:
  static constexpr std::int64_t kTrimAfter = 64;
  metrics& m_;
  tunnel_server* tunnels_;  // null without tunnels
  std::int64_t peak_ = 0;  // of open connections since the last trim; on the worker pool only
};

// Revocations made by other processes and lapsing grants take effect within a second. The
// pass reads state.db, so it runs on the worker pool, not on an I/O thread.
class housekeeping_ticker {
 public:
  // `ex` is the shutdown's strand: stop() runs there too (a timer is not thread-safe).
  housekeeping_ticker(const asio::any_io_executor& ex, asio::thread_pool& workers, service& svc, metrics& m,
                      tunnel_server* tunnels)
      : timer_(ex), workers_(workers), svc_(svc), trimmer_(m, tunnels) {}
  void start() {
    timer_.expires_after(std::chrono::seconds(1));
    timer_.async_wait([this](beast::error_code ec) {
      if (ec || stopped_) return;
      asio::post(workers_, [this] {
        std::unique_lock one(pass_mu_, std::try_to_lock);
        if (!one.owns_lock()) return;  // the previous pass still runs
        try {
          svc_.housekeeping();
        } catch (const std::exception& e) {
          log::error("housekeeping failed: {}", e.what());
        }
        trimmer_.tick();
      });
      start();
    });
  }
  // On the shutdown's strand.
  void stop() {
    stopped_ = true;
    timer_.cancel();
  }

 private:
  asio::steady_timer timer_;
  asio::thread_pool& workers_;
  service& svc_;
  std::mutex pass_mu_;       // one pass at a time (the trimmer is not thread-safe)
  memory_trimmer trimmer_;   // guarded by pass_mu_
  std::atomic<bool> stopped_{false};
};

// Wakes the shutdown's drain from any thread (a connection or a tunnel ended): posts the
// cancel of its timer to the timer's strand. close() once the io_context stopped running.
class drain_waker {
 public:
  explicit drain_waker(asio::steady_timer* t) : timer_(t) {}
  void wake() {
    std::lock_guard lock(mu_);
    if (timer_) asio::post(timer_->get_executor(), [t = timer_] { t->cancel(); });
  }
  void close() {
    std::lock_guard lock(mu_);
    timer_ = nullptr;
  }

 private:
  std::mutex mu_;
  asio::steady_timer* timer_;  // guarded by mu_; owned by run_https
};

// What a shutdown touches, all owned by run_https (which outlives the io_context's run). The
// signal set, the drain timer and the housekeeping ticker live on the shutdown's strand.
struct shutdown_parts {
  asio::io_context* ioc;
  asio::signal_set* hangups;  // SIGHUP's: cancelled, no reload during the shutdown
  server_state* st;
  tcp::acceptor* acceptor;
  asio::cancellation_signal* stop_accepting;  // bound to run_acceptor, emitted on its strand
  tunnel_server* tunnels;                     // null without sessions
  housekeeping_ticker* housekeeping;          // null without sessions
  asio::signal_set* signals;
  asio::steady_timer* drain;
  std::shared_ptr<drain_waker> waker;
  int* stop_signal;
  int grace_ms;
  service* sessions;                      // null without sessions
  int drain_ms;                           // gateway.drain_seconds: 0, no drain
  const std::function<void(int)>* on_drain;
  bool* drain_cut;                        // a second signal ends the drain at once
};

// A second SIGINT/SIGTERM while draining: the drain ends now (the stop goes on).
asio::awaitable<void> cut_drain_on_signal(asio::signal_set* signals, bool* cut, asio::steady_timer* drain) {
  auto [ec, signo] = co_await signals->async_wait(use_tuple);
  if (ec) co_return;
  log::info("signal {} received while draining: stopping now", signo);
  *cut = true;
  drain->cancel();
}

// SIGTERM's drain (docs/operations.md §7), before the stop: journaled; no new tunnel or
// attach; agents without an owner handed to the other gateway at once; then until no session
// has an owner, the deadline, or a second signal. A bounded poll (5 a second) of one counter.
asio::awaitable<void> drain_sessions(shutdown_parts p, int signo) {
  log::info("signal {} received: draining for at most {} s (a second signal stops at once)", signo, p.drain_ms / 1000);
  if (*p.on_drain) (*p.on_drain)(signo);
  p.sessions->set_draining();
  p.tunnels->drain();
  asio::co_spawn(p.drain->get_executor(), cut_drain_on_signal(p.signals, p.drain_cut, p.drain), asio::detached);
  const auto until = std::chrono::steady_clock::now() + std::chrono::milliseconds(p.drain_ms);
  // Until no session is held and every session that ended meanwhile has sent its receipt
  // (each waits at most kReceiptWaitSeconds): stopping closes the tunnels, and a receipt still
  // being built would be lost.
  auto busy = [&p] { return p.sessions->owned_sessions() > 0 || p.tunnels->awaiting_receipts() > 0; };
  while (!*p.drain_cut && std::chrono::steady_clock::now() < until && busy()) {
    p.drain->expires_after(std::min<std::chrono::steady_clock::duration>(std::chrono::milliseconds(200),
                                                                         until - std::chrono::steady_clock::now()));
    (void)co_await p.drain->async_wait(use_tuple);
  }
  log::info("drain over ({}); the remaining agents move to the other gateway",
            *p.drain_cut ? "second signal" : p.sessions->owned_sessions() == 0 ? "no session is held" : "deadline");
}

// Until no HTTPS connection and no tunnel is open, or `deadline`. No polling: every end of a
// connection or a tunnel during the shutdown cancels the timer (drain_waker), which is the
// condition variable of this loop; its expiry is the grace period's end.
asio::awaitable<void> drain_connections(asio::steady_timer* drain, metrics* m,
                                        std::chrono::steady_clock::time_point deadline) {
  drain->expires_at(deadline);
  while (m->http_connections_active.load() > 0 || m->tunnels_active.load() > 0) {
    auto [ec] = co_await drain->async_wait(use_tuple);
    if (!ec) break;  // the grace period is over: the rest is cut off with the io_context
  }
}

// The first SIGINT/SIGTERM: ask everything to stop (cancellation), let what is open drain
// within the grace period, then stop the io_context.
asio::awaitable<void> stop_on_signal(shutdown_parts p) {
  auto [sec, signo] = co_await p.signals->async_wait(use_tuple);
  if (sec) co_return;
  *p.stop_signal = signo;
  const bool drained = p.drain_ms > 0 && p.tunnels && p.sessions;
  if (drained) co_await drain_sessions(p, signo);
  p.signals->cancel();  // the drain's second-signal waiter, if any
  log::info("signal {} received: stopping (grace {} ms)", signo, p.grace_ms);
  p.hangups->cancel();
  p.st->on_connection_end = [w = p.waker] { w->wake(); };  // before `stopping`, which publishes it
  p.st->stopping = true;
  if (p.st->svc) p.st->svc->events().close_all(kEventsStopping);  // their streams end now
  if (p.housekeeping) p.housekeeping->stop();
  if (p.tunnels) p.tunnels->stop([w = p.waker] { w->wake(); }, drained);
  asio::post(p.acceptor->get_executor(), [acceptor = p.acceptor, stop = p.stop_accepting] {
    beast::error_code ignored;
    acceptor->close(ignored);
    stop->emit(asio::cancellation_type::terminal);  // also ends an accept error's back-off
  });
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(p.grace_ms);
  co_await drain_connections(p.drain, &p.st->m, deadline);
  p.ioc->stop();
}

// The SHA-256 fingerprint of the certificate `tls` serves, hex.
std::string fingerprint(ssl::context& tls) {
  X509* cert = SSL_CTX_get0_certificate(tls.native_handle());
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int n = 0;
  if (!cert || X509_digest(cert, EVP_sha256(), md, &n) != 1) return "";
  return to_hex(std::span<const std::uint8_t>(md, n));
}

// SIGHUP, until the shutdown cancels it: the configuration read again, the certificate and
// the timings for what starts from now on (runtime_options::reload). Both TLS contexts are
// built before either is swapped in, so a certificate that cannot be loaded changes nothing.
asio::awaitable<void> reload_on_hangup(asio::signal_set* hangups, server_state* st, tunnel_server* tunnels,
                                       const runtime_options* opts) {
  for (;;) {
    auto [ec, signo] = co_await hangups->async_wait(use_tuple);
    if (ec) co_return;
    std::vector<std::string> restart_required;
    std::string error, served;
    try {
      auto next = opts->reload(restart_required);
      auto tls = std::make_shared<ssl::context>(ssl::context::tls_server);
      configure_tls(*tls, next);
      if (tunnels) tunnels->reload(tunnel_config_for(next));
      st->reload_tls(tls);
      served = fingerprint(*tls);
      if (opts->sessions) opts->sessions->set_reconnect_grace(static_cast<micros>(next.grace_s) * 1'000'000);
      log::set_level(log::parse_level(next.log_level));
      log::info("SIGHUP: configuration and certificate reloaded (certificate sha256 {})", served);
    } catch (const std::exception& e) {
      error = e.what();
      log::error("SIGHUP: nothing reloaded: {}", error);
    }
    for (auto& k : restart_required) log::warn("SIGHUP: {} changed; it takes effect at the next start", k);
    if (opts->reloaded) opts->reloaded(error, restart_required, served);
  }
}

// Coroutines may still wait for the journal or a policy step, whose completions post to this
// io_context: let them arrive and run before it goes (bounded), or they would post into a
// destroyed io_context.
void run_remaining(asio::io_context& ioc, service& svc) {
  auto until = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  while (std::chrono::steady_clock::now() < until && !(svc.idle() && svc.journal().idle())) {
    ioc.restart();
    ioc.run_for(std::chrono::milliseconds(20));
  }
  ioc.restart();
  ioc.poll();
}

}  // namespace

int run_https(const runtime_options& opts, api& handler, metrics& m) {
  // Declared before the io_context so they outlive coroutine frames it destroys at the end.
  auto tls = std::make_shared<ssl::context>(ssl::context::tls_server);
  configure_tls(*tls, opts);
  server_state st{tls, handler, m, opts.limits, opts.sessions};
  st.strands = opts.threads > 1;
  asio::io_context ioc(opts.threads);
  asio::thread_pool workers(static_cast<std::size_t>(std::max(1, opts.workers)));
  st.workers = &workers;

  asio::any_io_executor acceptor_strand = ioc.get_executor();
  if (st.strands) acceptor_strand = asio::make_strand(ioc);
  tcp::acceptor acceptor(acceptor_strand);
  const auto bound_text = open_listener(acceptor, opts.host, opts.port);
  auto acceptor_ex = acceptor.get_executor();
  // The signal set, the drain and housekeeping timers share one strand: with several I/O
  // threads, a timer must not be touched from two at once.
  const asio::any_io_executor shutdown_ex = asio::make_strand(ioc);
  std::unique_ptr<tunnel_server> tunnels;
  if (opts.sessions) tunnels = start_tunnels(ioc, opts, st.strands, m, bound_text);
  if (opts.sessions && !opts.peer_secret.empty())
    opts.sessions->set_peer(opts.peer_secret, opts.peer_url,
                            opts.peer_url.empty() ? service::peer_lookup{}
                                                  : make_peer_lookup(ioc, opts.peer_url, opts.peer_ca,
                                                                     opts.peer_secret, opts.peer_timeout_ms));

  // Policy steps that waited for the journal continue on the worker pool, never on the
  // journal writer's thread or an I/O thread.
  if (opts.sessions)
    opts.sessions->set_executor([&workers](std::function<void()> f) { asio::post(workers, std::move(f)); });
  std::optional<housekeeping_ticker> housekeeping;
  if (opts.sessions) housekeeping.emplace(shutdown_ex, workers, *opts.sessions, m, tunnels.get()).start();

  int stop_signal = 0;
  asio::signal_set signals(shutdown_ex, SIGINT, SIGTERM);
  asio::signal_set hangups(shutdown_ex, SIGHUP);  // caught always: a hangup never kills the gateway
  if (opts.reload)
    asio::co_spawn(shutdown_ex, reload_on_hangup(&hangups, &st, tunnels.get(), &opts), asio::detached);
  asio::steady_timer drain(shutdown_ex);
  auto waker = std::make_shared<drain_waker>(&drain);
  // Its handler holds an executor of the io_context: declared after it, so destroyed first.
  asio::cancellation_signal stop_accepting;
  bool drain_cut = false;
  asio::co_spawn(shutdown_ex,
                 stop_on_signal({&ioc, &hangups, &st, &acceptor, &stop_accepting, tunnels.get(),
                                 housekeeping ? &*housekeeping : nullptr, &signals, &drain, waker, &stop_signal,
                                 opts.limits.shutdown_grace_ms, opts.sessions, opts.drain_s * 1000, &opts.on_drain,
                                 &drain_cut}),
                 asio::detached);
  asio::co_spawn(acceptor_ex, run_acceptor(&acceptor, &st, opts.tunnel_on_http ? tunnels.get() : nullptr),
                 asio::bind_cancellation_slot(stop_accepting.slot(), asio::detached));
  if (opts.on_listening) opts.on_listening(bound_text);

  std::vector<std::thread> pool;
  for (int i = 1; i < opts.threads; ++i) pool.emplace_back([&] { ioc.run(); });
  ioc.run();
  for (auto& t : pool) t.join();
  waker->close();  // connections that end from now on (their frames destroyed) wake no one
  // From now on policy steps continue inline: the pool is about to go.
  if (opts.sessions) opts.sessions->set_executor({});
  workers.join();
  // The lookup posts to this io_context, which goes with this function: no more lookups.
  if (opts.sessions) opts.sessions->stop_peer_lookups();
  if (opts.sessions) run_remaining(ioc, *opts.sessions);
  return stop_signal;
}

}  // namespace rsgate::gateway
