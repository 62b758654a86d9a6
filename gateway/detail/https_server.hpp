// Private to the gateway's network runtime: what runtime.cpp (the process: threads, signals,
// shutdown), https_server.cpp (the HTTPS listener and its connections) and channel_stream.cpp
// (the representative's side of a channel) share. Heavy Asio/Beast headers: never include it
// from a public header.
#pragma once
#include <atomic>
#include <memory>
#include <mutex>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/thread_pool.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/http/message.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/websocket/stream.hpp>
#include <functional>
#include <string>

#include "gateway/metrics.hpp"
#include "gateway/runtime.hpp"
#include "net/tls_stream.hpp"
#include "protocol/wire.hpp"

namespace rsgate::gateway {
class service;
class tunnel_server;
}

namespace rsgate::gateway::detail {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace websocket = beast::websocket;
namespace ssl = asio::ssl;
using tcp = asio::ip::tcp;

inline constexpr auto use_tuple = asio::as_tuple(asio::use_awaitable);

// What the HTTPS side shares; owned by run_https, which outlives every coroutine using it.
struct server_state {
  // The TLS context new connections use; SIGHUP swaps in a new one (reload_tls). A connection
  // keeps the context it started with (its SSL object holds a reference to it).
  std::shared_ptr<ssl::context> tls;  // guarded by tls_mu once serving
  [[nodiscard]] std::shared_ptr<ssl::context> current_tls() {
    std::lock_guard lock(tls_mu);
    return tls;
  }
  void reload_tls(std::shared_ptr<ssl::context> next) {
    std::lock_guard lock(tls_mu);
    tls = std::move(next);
  }
  api& handler;
  metrics& m;
  http_limits limits;
  service* svc = nullptr;
  bool strands = true;  // more than one I/O thread: each connection on its own strand
  asio::thread_pool* workers = nullptr;
  std::atomic<bool> stopping{false};
  std::atomic<int> sniffing{0};  // shared port: connections whose ClientHello is being read
  // Set before `stopping`; called (from any thread) each time a connection ends after it, so
  // that the shutdown's drain wakes instead of polling.
  std::function<void()> on_connection_end{};
  std::mutex tls_mu{};
};

// The WebSocket runs on the connection's net::tls_stream, which stays in the connection's
// coroutine frame (it is not movable).
using ws_stream = websocket::stream<net::tls_stream&>;
inline constexpr std::size_t kStreamMessageMax = tunnel::kMaxStreamMessage;  // both ways; docs/api.md §5.5

// https_server.cpp
http::response<http::string_body> to_wire(http_response r, unsigned version, bool keep_alive, bool head);
void configure_tls(ssl::context& ctx, const runtime_options& o);
// Accepts until the acceptor is closed or the server stops; one coroutine per connection.
// With `tunnels` (tunnel.listen = "http"), each connection's ClientHello is read first (without
// consuming it) and one offering ALPN rsgate/1 goes to the tunnel side.
asio::awaitable<void> run_acceptor(tcp::acceptor* acceptor, server_state* st, tunnel_server* tunnels = nullptr);

// channel_stream.cpp: a WebSocket upgrade to /api/v1/channels/stream on `stream` (which lives
// in the caller's frame). True when it was refused with an HTTP answer (the caller then shuts
// the connection down); false when the WebSocket ran (or failed) and the connection is done.
asio::awaitable<bool> serve_channel_stream(net::tls_stream* stream, http::request<http::string_body> msg,
                                           std::string remote, server_state* st);
bool is_stream_path(std::string_view target);

}  // namespace rsgate::gateway::detail
