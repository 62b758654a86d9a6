// Configuration: listen addresses, TOML loading over defaults, and clear errors for typos,
// wrong types and out-of-range values.
#include "gateway/config.hpp"

#include <catch2/catch.hpp>
#include <fstream>

#include "tests/support/process.hpp"

using namespace rsgate;
using namespace rsgate::gateway;

namespace {
std::filesystem::path write(const rsgate::test::temp_dir& t, const std::string& text) {
  auto p = t / "rsgate.toml";
  std::ofstream(p) << text;
  return p;
}
}  // namespace

TEST_CASE("parse_listen") {
  auto a = parse_listen("127.0.0.1:8443");
  REQUIRE(a);
  CHECK(a->host == "127.0.0.1");
  CHECK(a->port == 8443);
  a = parse_listen("[::1]:0");
  REQUIRE(a);
  CHECK(a->host == "::1");
  CHECK(a->port == 0);
  const std::string_view bads[] = {"", "8443", ":8443", "127.0.0.1:", "127.0.0.1:65536", "127.0.0.1:-1",
                          "::1:8443", "[::1:8443", "[]:1", "host name:1", "1.2.3.4:80x",
                          "localhost:8443", "[localhost]:1", "1.2.3:4", "256.1.1.1:80",
                          std::string_view("127.0.0.1\0junk:80", 18)};
  for (auto bad : bads) {
    INFO(bad);
    CHECK_FALSE(parse_listen(bad).has_value());
  }
}

TEST_CASE("load_config reads every section over the defaults") {
  rsgate::test::temp_dir t;
  auto p = write(t, R"(
[gateway]
name = "gw-prod-1"
data = "/var/lib/rsgate"
log_level = "warn"
threads = 4
workers = 3
[http]
listen = "[::1]:9443"
max_connections = 10
max_body_bytes = 4096
[tunnel]
listen = "0.0.0.0:4433"
rekey_interval = 60
keepalive = 30
grace = 300
reauth = 600
max_tunnels = 20000
[journal]
checkpoint_entries = 50
probe_ms = 0
[peer]
secret_file = "/etc/rsgate/peer.secret"
url = "https://[2001:db8::2]:8443"
timeout_ms = 1500
)");
  auto c = load_config(p);
  CHECK(c.gateway_name == "gw-prod-1");
  CHECK(c.data_dir == "/var/lib/rsgate");
  CHECK(c.log_level == "warn");
  CHECK(c.threads == 4);
  CHECK(c.workers == 3);
  CHECK(c.http.host == "::1");
  CHECK(c.http.port == 9443);
  CHECK(c.limits.max_connections == 10);
  CHECK(c.limits.max_body_bytes == 4096);
  CHECK(c.tunnel.port == 4433);
  CHECK(c.rekey_interval_s == 60);
  CHECK(c.keepalive_s == 30);
  CHECK(c.grace_s == 300);
  CHECK(c.reauth_s == 600);
  CHECK(c.max_tunnels == 20000);
  CHECK(c.checkpoint_entries == 50);
  CHECK(c.checkpoint_seconds == 60);  // default kept
  CHECK(c.probe_ms == 0);
  CHECK(c.cert_file() == "/var/lib/rsgate/server.pem");
  CHECK(c.peer_secret_file == "/etc/rsgate/peer.secret");
  CHECK(c.peer_url == "https://[2001:db8::2]:8443");
  CHECK(c.peer_ca.empty());  // the data directory's ca.pem
  CHECK(c.peer_timeout_ms == 1500);
}

TEST_CASE("the sample configuration loads, whatever the data path holds") {
  rsgate::test::temp_dir t;
  auto p = write(t, sample_config("/srv/rsgate", "gw1"));
  auto c = load_config(p);
  CHECK(c.gateway_name == "gw1");
  CHECK(c.data_dir == "/srv/rsgate");
  const std::string odd = "/srv/a \"quoted\" dir\\with\tbackslash";
  c = load_config(write(t, sample_config(odd, "gw-2.prod_1")));
  CHECK(c.data_dir == odd);
  CHECK(c.gateway_name == "gw-2.prod_1");
}

TEST_CASE("tunnel.listen = \"http\": tunnels on the HTTPS port, profiles name that address") {
  rsgate::test::temp_dir t;
  auto c = load_config(write(t, "[http]\nlisten = \"10.0.0.5:443\"\n[tunnel]\nlisten = \"http\"\n"));
  CHECK(c.tunnel_on_http);
  CHECK(agent_tunnel_address(c) == "10.0.0.5:443");
  c = load_config(write(t, "[tunnel]\nlisten = \"10.0.0.5:4433\"\n"));
  CHECK_FALSE(c.tunnel_on_http);
  CHECK_THROWS_WITH(load_config(write(t, "[tunnel]\nlisten = \"https\"\n")), Catch::Contains("tunnel.listen"));
}

TEST_CASE("gateway names") {
  CHECK(is_valid_gateway_name("gw-2.prod_1"));
  CHECK_FALSE(is_valid_gateway_name(""));
  CHECK_FALSE(is_valid_gateway_name(std::string(65, 'a')));
  CHECK_FALSE(is_valid_gateway_name("a\"b"));
  CHECK_FALSE(is_valid_gateway_name("gw 1"));
}

TEST_CASE("configuration errors name the key and the reason") {
  rsgate::test::temp_dir t;
  const std::pair<const char*, const char*> cases[] = {
      {"[gateway]\nnmae = \"x\"\n", "gateway.nmae: unknown setting"},
      {"[gatway]\n", "gatway: unknown section"},
      {"[http]\nlisten = \"localhost\"\n", "http.listen"},
      {"[http]\nmax_connections = 0\n", "http.max_connections"},
      {"[http]\nmax_connections = \"10\"\n", "http.max_connections"},
      {"[journal]\nprobe_ms = -1\n", "journal.probe_ms"},
      {"[gateway]\nthreads = 0\n", "gateway.threads"},
      {"[tunnel]\nrekey_interval = 0\n", "tunnel.rekey_interval"},
      {"[tunnel]\nrekey_interval = 86401\n", "tunnel.rekey_interval"},
      {"[tunnel]\nrekey_interval = 1.5\n", "tunnel.rekey_interval"},
      {"[tunnel]\nkeepalive = 5\n", "tunnel.keepalive"},
      {"[tunnel]\ngrace = 0\n", "tunnel.grace"},
      {"[tunnel]\nreauth = 4\n", "tunnel.reauth"},
      {"[tunnel]\nmax_tunnels = 0\n", "tunnel.max_tunnels"},
      {"[tunnel]\nmax_tunnels = 1000001\n", "tunnel.max_tunnels"},
      {"[tunnel]\nreauth = 604801\n", "tunnel.reauth"},
      {"[tunnel]\nreauth = 5.5\n", "tunnel.reauth"},
      {"[tunnel]\nkeepalive = 3601\n", "tunnel.keepalive"},
      {"[gateway]\nworkers = 65\n", "gateway.workers"},
      {"[gateway]\nlog_level = \"loud\"\n", "gateway.log_level"},
      {"[gateway]\nname = \"way too long and with spaces\"\n", "gateway.name"},
      {"[gateway\n", "rsgate.toml:"},
      {"[peer]\nurl = \"https://gw2:8443\"\n", "peer.secret_file: is required"},
      {"[peer]\nsecret_file = \"/s\"\nurl = \"http://gw2:8443\"\n", "peer.url: expected https://HOST:PORT"},
      {"[peer]\nsecret_file = \"/s\"\nurl = \"https://gw2\"\n", "peer.url"},
      {"[peer]\nsecret_file = \"/s\"\nurl = \"https://gw2:8443/api\"\n", "peer.url"},
      {"[peer]\nsecret_file = \"/s\"\ntimeout_ms = 50\n", "peer.timeout_ms"},
      {"[peer]\nsecret_file = \"/s\"\nsecret = \"x\"\n", "peer.secret: unknown setting"},
  };
  for (auto [text, expected] : cases) {
    INFO(text);
    auto p = write(t, text);
    CHECK_THROWS_WITH(load_config(p), Catch::Contains(expected));
  }
  CHECK_THROWS(load_config(t / "missing.toml"));
}

TEST_CASE("the tunnel address written into agent profiles") {
  config c;
  CHECK(agent_tunnel_address(c) == "127.0.0.1:4433");
  c.tunnel = {"::1", 6655};
  CHECK(agent_tunnel_address(c) == "[::1]:6655");
  for (auto unusable : {listen_address{"0.0.0.0", 4433}, listen_address{"::", 4433},
                        listen_address{"0:0:0:0:0:0:0:0", 1}, listen_address{"127.0.0.1", 0}}) {
    c.tunnel = unusable;
    INFO(unusable.host << " " << unusable.port);
    CHECK_THROWS_AS(agent_tunnel_address(c), std::invalid_argument);
  }
  c.tunnel_public = "gw1.example.com:4433";
  CHECK(agent_tunnel_address(c) == "gw1.example.com:4433");

  rsgate::test::temp_dir t;
  auto loaded = load_config(write(t, "[tunnel]\nlisten = \"0.0.0.0:4433\"\npublic_address = \"gw1.example.com:443\"\n"));
  CHECK(agent_tunnel_address(loaded) == "gw1.example.com:443");
  for (auto bad : {"gw1", "gw1:0", "gw1:99999", "gw 1:443", "gw1:443/x"}) {
    INFO(bad);
    CHECK_FALSE(is_valid_agent_address(bad));
    CHECK_THROWS_WITH(load_config(write(t, std::string("[tunnel]\npublic_address = \"") + bad + "\"\n")),
                      Catch::Contains("tunnel.public_address"));
  }
  CHECK(is_valid_agent_address("[2001:db8::1]:4433"));
  CHECK(is_valid_agent_address("10.0.0.1:1"));
}
