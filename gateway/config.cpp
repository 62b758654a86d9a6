// See config.hpp. toml++ is used only here, on operator-written files (TOOLCHAIN.md: its
// parser has undefined behaviour on some hostile input, so it never sees network data).
#include "gateway/config.hpp"

#include <fmt/format.h>

#include <arpa/inet.h>

#include <charconv>
#include <set>
#include <toml++/toml.h>

#include "protocol/profile.hpp"
#include "protocol/receipt.hpp"
#include "core/encoding.hpp"
#include "protocol/wire.hpp"
#include "journal/entry.hpp"

namespace rsgate::gateway {


// One rule for every place a gateway name comes from (flag, file, journal_meta): the journal's.
bool is_valid_gateway_name(std::string_view name) { return journal::is_valid_gateway_name(name); }

namespace {
// A TOML basic string: quotes, backslashes and control characters escaped.
std::string toml_string(std::string_view s) {
  std::string out = "\"";
  for (unsigned char ch : s) {
    if (ch == '"' || ch == '\\') {
      out += '\\';
      out += static_cast<char>(ch);
    } else if (ch < 0x20 || ch == 0x7f) {
      out += fmt::format("\\u{:04X}", ch);
    } else {
      out += static_cast<char>(ch);
    }
  }
  return out + "\"";
}
}  // namespace

bool is_valid_agent_address(std::string_view text) {
  if (text.empty() || text.size() > 260) return false;
  try {
    (void)agent::parse_scope_mapping("gateway=" + std::string(text));  // the profile's own rule
    return true;
  } catch (const std::invalid_argument&) {
    return false;
  }
}

std::string agent_tunnel_address(const config& c) {
  if (!c.tunnel_public.empty()) return c.tunnel_public;
  const auto& t = c.tunnel_on_http ? c.http : c.tunnel;
  bool wildcard = t.host == "0.0.0.0" || t.host == "::" || t.host.find_first_not_of(":0") == std::string::npos;
  std::string shown = t.host.find(':') != std::string::npos ? fmt::format("[{}]:{}", t.host, t.port)
                                                             : fmt::format("{}:{}", t.host, t.port);
  if (wildcard)
    throw std::invalid_argument(fmt::format(
        "the tunnel listens on {}, every address, which is not one an agent can connect to", shown));
  if (t.port == 0)
    throw std::invalid_argument(fmt::format("the tunnel listens on {}, a port chosen at start", shown));
  return shown;
}

std::filesystem::path config::cert_file() const {
  return tls_cert.empty() ? data_dir / "server.pem" : tls_cert;
}
std::filesystem::path config::key_file() const {
  return tls_key.empty() ? data_dir / "keys" / "server.key" : tls_key;
}

namespace {

struct reader {
  const toml::table& root;
  std::string file;

  [[noreturn]] void fail(std::string_view key, std::string_view why) const {
    throw std::runtime_error(fmt::format("{}: {}: {}", file, key, why));
  }
  const toml::table* section(std::string_view name, const std::set<std::string>& keys) const {
    auto node = root.get(name);
    if (!node) return nullptr;
    auto t = node->as_table();
    if (!t) fail(name, "must be a table");
    for (auto& [k, v] : *t)
      if (!keys.count(std::string(k.str())))
        fail(fmt::format("{}.{}", name, k.str()), "unknown setting");
    return t;
  }
  void str(const toml::table* t, std::string_view sec, std::string_view key, std::string& out) const {
    if (!t) return;
    if (auto n = t->get(key)) {
      auto v = n->value<std::string>();
      if (!v || v->empty()) fail(fmt::format("{}.{}", sec, key), "must be a non-empty string");
      out = *v;
    }
  }
  void integer(const toml::table* t, std::string_view sec, std::string_view key, std::int64_t lo,
               std::int64_t hi, std::int64_t& out) const {
    if (!t) return;
    if (auto n = t->get(key)) {
      auto v = n->value<std::int64_t>();
      if (!n->is_integer() || !v || *v < lo || *v > hi)
        fail(fmt::format("{}.{}", sec, key), fmt::format("must be an integer from {} to {}", lo, hi));
      out = *v;
    }
  }
  // integer() into a field of another integer type (its range checked by lo and hi).
  template <typename T>
  void number(const toml::table* t, std::string_view sec, std::string_view key, std::int64_t lo, std::int64_t hi,
              T& out) const {
    auto v = static_cast<std::int64_t>(out);
    integer(t, sec, key, lo, hi, v);
    out = static_cast<T>(v);
  }
  void listen(const toml::table* t, std::string_view sec, listen_address& out) const {
    std::string s;
    str(t, sec, "listen", s);
    if (s.empty()) return;
    auto a = parse_listen(s);
    if (!a) fail(fmt::format("{}.listen", sec), "expected IP:PORT, e.g. 127.0.0.1:8443 or [::1]:8443");
    out = *a;
  }
};

void read_gateway(const reader& r, config& c) {
  auto g = r.section("gateway", {"name", "data", "log_level", "threads", "workers", "drain_seconds"});
  if (!g) return;
  std::string data, name;
  r.str(g, "gateway", "data", data);
  r.str(g, "gateway", "name", name);
  r.str(g, "gateway", "log_level", c.log_level);
  r.number(g, "gateway", "threads", 1, 64, c.threads);
  r.number(g, "gateway", "workers", 1, 64, c.workers);
  r.number(g, "gateway", "drain_seconds", 0, 3600, c.drain_seconds);
  if (!data.empty()) c.data_dir = data;
  if (!name.empty()) {
    if (!is_valid_gateway_name(name)) r.fail("gateway.name", "must be 1 to 64 of A-Z a-z 0-9 . _ -");
    c.gateway_name = name;
  }
  if (c.log_level != "debug" && c.log_level != "info" && c.log_level != "warn" && c.log_level != "error")
    r.fail("gateway.log_level", "must be debug, info, warn or error");
}

void read_http(const reader& r, config& c) {
  auto h = r.section("http", {"listen", "cert", "key", "max_connections", "handshake_timeout_ms", "request_timeout_ms",
                              "idle_timeout_ms", "max_header_bytes", "max_body_bytes"});
  if (!h) return;
  r.listen(h, "http", c.http);
  std::string cert, key;
  r.str(h, "http", "cert", cert);
  r.str(h, "http", "key", key);
  if (!cert.empty()) c.tls_cert = cert;
  if (!key.empty()) c.tls_key = key;
  r.number(h, "http", "max_connections", 1, 100000, c.limits.max_connections);
  r.number(h, "http", "handshake_timeout_ms", 100, 600000, c.limits.handshake_timeout_ms);
  r.number(h, "http", "request_timeout_ms", 100, 600000, c.limits.request_timeout_ms);
  r.number(h, "http", "idle_timeout_ms", 100, 3600000, c.limits.idle_timeout_ms);
  r.number(h, "http", "max_header_bytes", 1024, 1 << 20, c.limits.max_header_bytes);
  r.number(h, "http", "max_body_bytes", 1024, 64 << 20, c.limits.max_body_bytes);
}

void read_tunnel(const reader& r, config& c) {
  auto t = r.section("tunnel", {"listen", "public_address", "rekey_interval", "keepalive", "grace", "reauth", "max_tunnels"});
  if (!t) return;
  if (t->contains("listen") && t->get("listen")->value<std::string>() == "http") {
    c.tunnel_on_http = true;  // one port for both, told apart by ALPN
  } else {
    r.listen(t, "tunnel", c.tunnel);
  }
  r.number(t, "tunnel", "rekey_interval", 1, 86'400, c.rekey_interval_s);
  r.number(t, "tunnel", "grace", 1, 86'400, c.grace_s);
  r.number(t, "tunnel", "max_tunnels", 1, 1'000'000, c.max_tunnels);
  r.number(t, "tunnel", "reauth", rsgate::tunnel::kMinTunnelSeconds, rsgate::tunnel::kMaxTunnelLifeSeconds, c.reauth_s);
  r.number(t, "tunnel", "keepalive", rsgate::tunnel::kMinDeadPeerSeconds, rsgate::tunnel::kMaxDeadPeerSeconds, c.keepalive_s);
  r.str(t, "tunnel", "public_address", c.tunnel_public);
  if (!c.tunnel_public.empty() && !is_valid_agent_address(c.tunnel_public))
    r.fail("tunnel.public_address", "expected HOST:PORT, e.g. gw1.example.com:4433");
}

void read_journal(const reader& r, config& c) {
  auto j = r.section("journal", {"checkpoint_entries", "checkpoint_seconds", "probe_ms", "max_queue"});
  if (!j) return;
  r.integer(j, "journal", "checkpoint_entries", 1, 10'000'000, c.checkpoint_entries);
  r.integer(j, "journal", "checkpoint_seconds", 1, 86400, c.checkpoint_seconds);
  r.integer(j, "journal", "probe_ms", 0, 3'600'000, c.probe_ms);
  r.integer(j, "journal", "max_queue", 16, 10'000'000, c.max_queue);
}

void read_peer(const reader& r, config& c) {
  auto p = r.section("peer", {"secret_file", "url", "ca", "timeout_ms", "receipt_key"});
  if (!p) return;
  std::string secret, ca;
  r.str(p, "peer", "secret_file", secret);
  r.str(p, "peer", "url", c.peer_url);
  r.str(p, "peer", "ca", ca);
  r.number(p, "peer", "timeout_ms", 100, 60'000, c.peer_timeout_ms);
  r.str(p, "peer", "receipt_key", c.peer_receipt_key);
  if (!c.peer_receipt_key.empty()) {
    auto k = tunnel::parse_receipt_key(c.peer_receipt_key);
    if (!k) r.fail("peer.receipt_key", "expected the peer's journal public key: 64 hex digits (rsgate journal pubkey)");
    c.peer_receipt_key = to_hex(*k);  // lower case, as profiles hold it
  }
  if (secret.empty()) r.fail("peer.secret_file", "is required: the file with the secret both gateways of the pair share");
  c.peer_secret_file = secret;
  if (!ca.empty()) c.peer_ca = ca;
  if (!c.peer_url.empty()) {
    std::string host;
    std::uint16_t port = 0;
    if (!c.peer_url.starts_with("https://") || !agent::parse_host_port(c.peer_url.substr(8), host, port))
      r.fail("peer.url", "expected https://HOST:PORT, e.g. https://gw2.example.com:8443");
  }
}

}  // namespace

config load_config(const std::filesystem::path& file) {
  toml::table root;
  try {
    root = toml::parse_file(file.string());
  } catch (const toml::parse_error& e) {
    throw std::runtime_error(fmt::format("{}:{}: {}", file.string(), e.source().begin.line,
                                         e.description()));
  }
  for (auto& [k, v] : root) {
    std::string key(k.str());
    if (key != "gateway" && key != "http" && key != "tunnel" && key != "journal" && key != "peer")
      throw std::runtime_error(fmt::format("{}: {}: unknown section", file.string(), key));
  }
  reader r{root, file.string()};
  config c;
  read_gateway(r, c);
  read_http(r, c);
  read_tunnel(r, c);
  read_journal(r, c);
  read_peer(r, c);
  return c;
}

std::string sample_config(const std::filesystem::path& data_dir, const std::string& gateway_name) {
  return fmt::format(R"(# rsgate gateway configuration (docs/operations.md explains every setting).

[gateway]
name = {}            # written into every journal entry's `gateway` field
data = {}
log_level = "info"      # debug, info, warn, error
threads = 1             # I/O threads (TLS, tunnels, channels); see docs/performance.md
workers = 2             # threads running API requests (password hashing, journal queries)

[http]
listen = "127.0.0.1:8443"
# cert = "/etc/rsgate/server.pem"       # default: <data>/server.pem
# key = "/etc/rsgate/server.key"        # default: <data>/keys/server.key
max_connections = 1024
handshake_timeout_ms = 10000
request_timeout_ms = 30000
idle_timeout_ms = 60000
max_header_bytes = 8192
max_body_bytes = 65536

[tunnel]
listen = "127.0.0.1:4433"
# public_address = "gw1.example.com:4433"   # what agents connect to, if not listen itself
rekey_interval = 900        # seconds between TLS key updates + CHAP re-challenges of a tunnel
keepalive = 90              # seconds without a frame after which a tunnel is dead (both sides)
grace = 120                 # seconds a session waits for its agent after the tunnel dropped
reauth = 86400              # seconds a tunnel lives; then its agent authenticates again from scratch
max_tunnels = 1024          # authenticated tunnels at once (mind the open-files limit: one each)

[journal]
checkpoint_entries = 1000   # a signed checkpoint at least every N entries
checkpoint_seconds = 60     # ... or every T seconds with new entries, and at shutdown
probe_ms = 2000             # readiness write probe while idle; 0 disables
max_queue = 65536           # appends waiting beyond this are refused

# The other gateway of a primary/backup pair (docs/operations.md §10). Both share the secret;
# a gateway with `url` asks the other where a machine is when a representative attaches to it here.
# [peer]
# secret_file = "/etc/rsgate/peer.secret"   # mode 0600, at least 32 characters, the same on both
# url = "https://gw2.example.com:8443"      # the other gateway's HTTPS address
# ca = "/etc/rsgate/ca.pem"                 # the CA of its certificate (default: <data>/ca.pem)
# timeout_ms = 3000                         # how long an attach waits for its answer
)",
                     toml_string(gateway_name), toml_string(data_dir.string()));
}

}  // namespace rsgate::gateway
