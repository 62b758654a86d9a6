// Gateway configuration: defaults, a TOML file (`rsgate serve --config FILE`), and the
// command-line flags that override it. Validated as a whole before anything starts.
#pragma once
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>

#include "core/address.hpp"
#include "gateway/runtime.hpp"

namespace rsgate::gateway {

// Gateway names go into every journal entry: 1–64 of A-Z a-z 0-9 . _ -
[[nodiscard]] bool is_valid_gateway_name(std::string_view name);

struct config {
  std::filesystem::path data_dir = "rsgate-dev";
  std::string gateway_name;  // empty: the name the journal was created with (else a default)
  listen_address http{"127.0.0.1", 8443};
  listen_address tunnel{"127.0.0.1", 4433};
  // tunnel.listen = "http": agents' tunnels share the HTTPS listener's port, told apart by
  // ALPN before TLS (docs/operations.md §13). `tunnel` is then ignored.
  bool tunnel_on_http = false;
  // HOST:PORT agents connect to, written into profiles by `rsgate machine enroll` (needed
  // when tunnel.listen is 0.0.0.0 or [::], or behind NAT); "" = tunnel.listen itself.
  std::string tunnel_public;
  // Every tunnel's TLS keys are renewed (KeyUpdate) and its agent re-challenged this often
  // (docs/protocol.md §6).
  int rekey_interval_s = 900;
  // No frame from an agent for this long: its tunnel is dead (the agent keeps the same bound).
  int keepalive_s = 90;
  // A session whose tunnel dropped waits this long for its agent, then ends (`tunnel lost`).
  int grace_s = 120;
  // A tunnel lives at most this long; then the gateway sends END `reauthenticate` and the agent
  // authenticates from scratch on a new connection, keeping its session (docs/protocol.md §6).
  int reauth_s = 86'400;
  // Authenticated tunnels one gateway holds at once (default tunnel::kMaxTunnels); one more
  // is refused after CHAP with FAILURE "tunnel limit", journaled. Each needs an open file.
  int max_tunnels = 1024;
  std::filesystem::path tls_cert;  // default: DATA/server.pem
  std::filesystem::path tls_key;   // default: DATA/keys/server.key
  std::string log_level = "info";
  int threads = 1;  // I/O threads: TLS and relaying
  int workers = 2;  // request threads: password hashing, journal queries
  // SIGTERM drains for up to this long before it stops (docs/operations.md §7); 0: stop at once.
  int drain_seconds = 0;
  http_limits limits;
  // Journal writer
  std::int64_t checkpoint_entries = 1000;
  std::int64_t checkpoint_seconds = 60;
  std::int64_t probe_ms = 2000;
  std::int64_t max_queue = 65536;

  // The other gateway of a pair (docs/operations.md §10): `peer_secret_file` holds the secret
  // both gateways share (this one answers GET /machines/{m}/where to it); `peer_url`, when set
  // (https://HOST:PORT), is where this one asks, checked against `peer_ca` (default DATA/ca.pem).
  std::filesystem::path peer_secret_file;
  std::string peer_url;
  std::filesystem::path peer_ca;
  int peer_timeout_ms = 3000;
  // The peer's journal public key (64 hex digits, `rsgate journal pubkey` there): `machine
  // enroll` pins it in profiles beside this gateway's, so receipts from either verify.
  std::string peer_receipt_key;

  [[nodiscard]] std::filesystem::path cert_file() const;
  [[nodiscard]] std::filesystem::path key_file() const;
};

// "HOST:PORT" an agent can be given (a DNS name or an IP literal, IPv6 in brackets, a port
// 1-65535): the rule of agent profiles.
[[nodiscard]] bool is_valid_agent_address(std::string_view text);

// The tunnel address to write into agent profiles: tunnel_public, else tunnel.listen when an
// agent can connect to it. Throws std::invalid_argument saying why not (0.0.0.0, [::], port 0).
[[nodiscard]] std::string agent_tunnel_address(const config& c);

// Reads a TOML file over the defaults. Unknown keys are errors (a typo must not silently
// fall back to a default). Throws std::runtime_error naming the file, key and reason.
[[nodiscard]] config load_config(const std::filesystem::path& file);

// The sample written by `rsgate init` (also deploy/rsgate.toml).
[[nodiscard]] std::string sample_config(const std::filesystem::path& data_dir,
                                        const std::string& gateway_name);

}  // namespace rsgate::gateway
