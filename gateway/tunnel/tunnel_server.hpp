// The gateway's tunnel listener (docs/protocol.md): TLS 1.3 only, ALPN "rsgate/1", one
// coroutine per agent connection. Included only by the network runtime's translation units.
#pragma once
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <functional>
#include <memory>
#include <string>

#include "gateway/metrics.hpp"

namespace rsgate::gateway {

class service;

struct tunnel_config {
  std::string host = "127.0.0.1";
  std::uint16_t port = 4433;
  std::string cert_file;
  std::string key_file;
  int handshake_timeout_ms = 20'000;   // TLS + HELLO + CHAP
  int dead_peer_ms = 90'000;           // no frame at all for this long: the tunnel is dead (tunnel.keepalive)
  std::int64_t rekey_interval_ms = 900'000;  // KeyUpdate + CHAP re-challenge (tunnel.rekey_interval)
  std::int64_t tunnel_life_ms = 86'400'000;  // then END reauthenticate (tunnel.reauth)
  int grace_s = 120;                         // the service's reconnect grace, told in SUCCESS
  std::size_t max_tunnels = 1024;      // authenticated at once (tunnel::kMaxTunnels); the limits
                                       // before authentication are tunnel::admission's
  bool strands = true;  // false with one I/O thread: no strand per connection
};

class tunnel_server {
 public:
  tunnel_server(boost::asio::io_context& ioc, tunnel_config cfg, service& svc, metrics& m);
  ~tunnel_server();
  // Binds and starts accepting; returns the bound "host:port". Throws when it cannot listen.
  // With `listen` false, nothing is bound: connections come through adopt() only.
  std::string start(bool listen = true);
  // A TCP connection another listener accepted whose ClientHello asks for rsgate/1 (one port
  // for HTTPS and tunnels): admitted and served as if accepted here. From any thread.
  void adopt(boost::asio::ip::tcp::socket sock);
  // Stops accepting and asks every tunnel to close. From then on `on_tunnel_end` is called
  // (from any thread) each time a tunnel ends, so that a drain is woken, not polled.
  // `move`: after a drain, END `move` instead of `restart` (the agents go to the other gateway).
  void stop(std::function<void()> on_tunnel_end = {}, bool move = false);
  // SIGTERM's drain: no new tunnel (the listener closes, adopt() refuses), and every tunnel
  // whose session has no owner is sent END `move` and closed.
  void drain();
  // Forgets the tunnels that ended: their memory (made with make_shared) goes only with the
  // last weak reference. From any thread; the housekeeping calls it before it trims the heap.
  void sweep();
  // Tunnels whose session ended and whose receipt is still to go: a drain waits for them.
  [[nodiscard]] std::size_t awaiting_receipts();
  // SIGHUP: the certificate and key (read again from cfg's files) and the timings of `cfg`
  // (rekey interval, dead-peer bound, grace, tunnel life) for tunnels accepted from now on;
  // live tunnels keep theirs. Throws std::runtime_error, changing nothing, when the
  // certificate or key cannot be loaded.
  void reload(const tunnel_config& cfg);

  struct impl;

 private:
  std::unique_ptr<impl> impl_;
};

}  // namespace rsgate::gateway
