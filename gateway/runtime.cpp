// See runtime.hpp. The process side of the network runtime: the io_context and its threads,
// the worker pool, the HTTPS listener (https_server.cpp) and the tunnel listener
// (tunnel/tunnel_server.cpp), housekeeping once a second, and SIGINT/SIGTERM: stop accepting,
// ask every tunnel to end, then wait for the connections to drain within the grace period.
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <thread>
#include <vector>

#include "core/log.hpp"
#include "gateway/detail/https_server.hpp"
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

std::unique_ptr<tunnel_server> start_tunnels(asio::io_context& ioc, const runtime_options& opts, bool strands,
                                             metrics& m) {
  tunnel_config tc;
  tc.host = opts.tunnel_host;
  tc.port = opts.tunnel_port;
  tc.cert_file = opts.cert_file;
  tc.key_file = opts.key_file;
  tc.strands = strands;
  auto tunnels = std::make_unique<tunnel_server>(ioc, tc, *opts.sessions, m);
  auto tunnel_bound = tunnels->start();
  if (opts.on_tunnel_listening) opts.on_tunnel_listening(tunnel_bound);
  return tunnels;
}

// Revocations made by other processes and lapsing grants take effect within a second. The
// pass reads state.db, so it runs on the worker pool, not on an I/O thread.
class housekeeping_ticker {
 public:
  housekeeping_ticker(asio::io_context& ioc, asio::thread_pool& workers, service& svc)
      : timer_(ioc), workers_(workers), svc_(svc) {}
  void start() {
    timer_.expires_after(std::chrono::seconds(1));
    timer_.async_wait([this](beast::error_code ec) {
      if (ec || stopped_) return;
      asio::post(workers_, [&svc = svc_] {
        try {
          svc.housekeeping();
        } catch (const std::exception& e) {
          log::error("housekeeping failed: {}", e.what());
        }
      });
      start();
    });
  }
  // From the io_context's thread that handles the signal.
  void stop() {
    stopped_ = true;
    timer_.cancel();
  }

 private:
  asio::steady_timer timer_;
  asio::thread_pool& workers_;
  service& svc_;
  std::atomic<bool> stopped_{false};
};

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
  ssl::context tls(ssl::context::tls_server);
  configure_tls(tls, opts);
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
  std::unique_ptr<tunnel_server> tunnels;
  if (opts.sessions) tunnels = start_tunnels(ioc, opts, st.strands, m);

  // Policy steps that waited for the journal continue on the worker pool, never on the
  // journal writer's thread or an I/O thread.
  if (opts.sessions)
    opts.sessions->set_executor([&workers](std::function<void()> f) { asio::post(workers, std::move(f)); });
  std::optional<housekeeping_ticker> housekeeping;
  if (opts.sessions) housekeeping.emplace(ioc, workers, *opts.sessions).start();

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
    if (housekeeping) housekeeping->stop();
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
  if (opts.sessions) run_remaining(ioc, *opts.sessions);
  return stop_signal;
}

}  // namespace rsgate::gateway
