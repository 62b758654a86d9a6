// The gateway's network runtime: an io_context with a few threads, the HTTPS listener
// (Beast, one coroutine per connection on its own strand), and SIGINT/SIGTERM handling with
// a bounded graceful shutdown. Asio and Beast stay behind this header.
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "gateway/http/api.hpp"
#include "gateway/metrics.hpp"

namespace rsgate::gateway {

struct http_limits {
  int max_connections = 1024;
  int handshake_timeout_ms = 10'000;
  int request_timeout_ms = 30'000;  // whole request, headers and body
  int idle_timeout_ms = 60'000;     // between requests on a kept-alive connection
  std::uint32_t max_header_bytes = 8 * 1024;
  std::uint64_t max_body_bytes = 64 * 1024;
  int max_requests_per_connection = 1000;
  int shutdown_grace_ms = 3'000;  // in-flight requests get this long after a stop signal
};

struct runtime_options {
  std::string host = "127.0.0.1";
  std::uint16_t port = 8443;
  std::string cert_file;  // PEM chain
  std::string key_file;   // PEM private key
  http_limits limits;
  int threads = 1;  // I/O threads (TLS, WebSocket, tunnels, relaying)
  int workers = 2;  // threads running API requests, so no request stalls the I/O
  // Called once listening, with the bound "host:port" (the port is real even when 0 was asked).
  std::function<void(const std::string& bound)> on_listening;
  // The agents' tunnel listener (TLS 1.3, ALPN rsgate/1), served when `sessions` is set.
  class service* sessions = nullptr;
  std::string tunnel_host = "127.0.0.1";
  std::uint16_t tunnel_port = 4433;
  // Tunnels on the HTTPS listener's port instead, told apart by the ClientHello's ALPN
  // (protocol/client_hello.hpp): `rsgate/1` goes to the tunnel side, anything else is HTTPS.
  bool tunnel_on_http = false;
  // SIGTERM: drain for up to this long first (gateway.drain_seconds; 0: stop at once). Draining:
  // no new tunnel or attach; agents without an owner move to the pair's other gateway at once,
  // the others when their session ends or at the deadline. on_drain journals its start.
  int drain_s = 0;
  std::function<void(int signo)> on_drain;
  int rekey_interval_s = 900;  // tunnel.rekey_interval
  int keepalive_s = 90;        // tunnel.keepalive
  int grace_s = 120;           // tunnel.grace (told to agents in SUCCESS)
  int max_tunnels = 1024;      // tunnel.max_tunnels
  int reauth_s = 86'400;       // tunnel.reauth
  std::function<void(const std::string& bound)> on_tunnel_listening;
  // The other gateway of a pair ([peer]): the shared secret ("" = none), where to ask ("" =
  // only answer), the CA of its certificate, the bound of one lookup.
  std::string peer_secret;
  std::string peer_url;
  std::string peer_ca;
  int peer_timeout_ms = 3000;
  std::string log_level = "info";
  // SIGHUP (docs/operations.md §7). `reload` reads the configuration again and returns the
  // options it gives now, naming in `restart_required` the settings that changed but take a
  // restart (listeners, threads, data directory, …; those are not applied); it throws
  // std::runtime_error when the configuration cannot be read, and then nothing changes. The
  // certificate and key are read again, the tunnel timings, the grace and the log level apply
  // to what starts from then on. `reloaded` is told the outcome: `error` "" when applied, and
  // the SHA-256 fingerprint of the certificate now served.
  std::function<runtime_options(std::vector<std::string>& restart_required)> reload;
  std::function<void(const std::string& error, const std::vector<std::string>& restart_required,
                     const std::string& cert_sha256)>
      reloaded;
};

// Runs until SIGINT or SIGTERM arrives and the shutdown completes; returns that signal's
// number. Throws std::runtime_error when it cannot listen or load the certificate.
int run_https(const runtime_options& opts, api& handler, metrics& m);

}  // namespace rsgate::gateway
