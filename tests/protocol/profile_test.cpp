// Agent profiles: written by enrollment, read back identically; refused when readable by
// others, and every malformed field named.
#include "protocol/profile.hpp"
#include "protocol/http_connect.hpp"

#include <sys/stat.h>

#include <catch2/catch.hpp>
#include <fstream>

#include "core/files.hpp"
#include "tests/support/process.hpp"

using namespace rsgate;
using namespace rsgate::agent;

namespace {
profile sample() {
  profile p;
  p.primary = "gw.example.com:4433";
  p.backup = "[2001:db8::1]:4433";
  p.server_name = "gw.example.com";
  p.ca_pem = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
  p.type = "9009";
  p.model = "42A";
  p.serial = "7801234";
  p.secret = "SV63QZBH5P9VJ8E15G9WVCRXSC2YADCN";
  p.scopes = {{"hmc", "127.0.0.1", 443}, {"partition:LP01", "::1", 22}};
  return p;
}
}  // namespace

TEST_CASE("a profile round-trips through TOML") {
  test::temp_dir t;
  auto p = sample();
  write_file_exclusive(t / "p.toml", to_toml(p), 0600);
  auto q = load_profile(t / "p.toml");
  CHECK(q.primary == p.primary);
  CHECK(q.backup == p.backup);
  CHECK(q.ca_pem == p.ca_pem);
  CHECK(q.machine() == "9009-42A*7801234");
  CHECK(q.secret == p.secret);
  REQUIRE(q.scopes.size() == 2);
  CHECK(q.scopes[1].name == "partition:LP01");
  CHECK(q.scopes[1].host == "::1");
  CHECK(q.scopes[1].port == 22);
  CHECK(q.mechanisms == std::vector<std::string>{"scram-sha-256"});
  CHECK(q.scopes[0].policy == scope_policy::allow);
  CHECK(q.approval_seconds == 60);
}

TEST_CASE("the customer's policy per scope and the approval time round-trip, allow is the default") {
  test::temp_dir t;
  auto p = sample();
  p.scopes.push_back({"hypervisor", "127.0.0.1", 8443, scope_policy::deny});
  p.scopes[0].policy = scope_policy::ask;
  p.approval_seconds = 45;
  auto text = to_toml(p);
  CHECK_THAT(text, Catch::Contains("[policy]\n"));
  CHECK_THAT(text, Catch::Contains("'hmc' = 'ask'\n"));
  CHECK_THAT(text, Catch::Contains("'hypervisor' = 'deny'\n"));
  CHECK(text.find("'partition:LP01' = 'allow'") == std::string::npos);  // the default is not written
  write_file_exclusive(t / "p.toml", text, 0600);
  auto q = load_profile(t / "p.toml");
  REQUIRE(q.scopes.size() == 3);
  auto policy_of = [&](const std::string& name) {
    for (auto& sc : q.scopes)
      if (sc.name == name) return sc.policy;
    FAIL("no scope " << name);
    return scope_policy::allow;
  };
  CHECK(policy_of("hmc") == scope_policy::ask);
  CHECK(policy_of("partition:LP01") == scope_policy::allow);
  CHECK(policy_of("hypervisor") == scope_policy::deny);
  CHECK(q.approval_seconds == 45);
}

TEST_CASE("the pinned receipt keys and the receipts directory round-trip, a bad key is refused") {
  test::temp_dir t;
  auto p = sample();
  p.receipt_keys = {std::string(64, 'a'), std::string(64, 'b')};
  p.receipts_dir = "/var/lib/rsgate-agent/receipts";
  auto q = parse_profile(to_toml(p), "p.toml");
  CHECK(q.receipt_keys == p.receipt_keys);
  CHECK(q.receipts_dir == p.receipts_dir);
  CHECK(receipts_directory(q, t / "p.toml") == "/var/lib/rsgate-agent/receipts");
  q.receipts_dir.clear();
  CHECK(receipts_directory(q, t / "p.toml") == std::filesystem::absolute(t.path() / "receipts"));
  auto text = to_toml(p);
  auto at = text.find(std::string(64, 'b'));
  text.replace(at, 64, std::string(63, 'b'));
  CHECK_THROWS_WITH(parse_profile(text, "p.toml"), Catch::Contains("gateway.receipt_keys: each key must be 64 hex digits"));
}

TEST_CASE("a profile readable by others is refused") {
  test::temp_dir t;
  write_file_exclusive(t / "p.toml", to_toml(sample()), 0644);
  CHECK_THROWS_WITH(load_profile(t / "p.toml"), Catch::Contains("chmod 600"));
}

TEST_CASE("malformed profiles name the problem") {
  test::temp_dir t;
  auto good = to_toml(sample());
  auto with = [&](const std::string& from, const std::string& to) {
    auto s = good;
    auto pos = s.find(from);
    REQUIRE(pos != std::string::npos);
    s.replace(pos, from.size(), to);
    auto f = t / ("p" + std::to_string(std::hash<std::string>{}(s)) + ".toml");
    write_file_exclusive(f, s, 0600);
    return f;
  };
  const std::vector<std::tuple<std::string, std::string, std::string>> rows = {
      {"primary = 'gw.example.com:4433'", "primary = 'gw.example.com'", "gateway.primary"},
      {"serial = '7801234'", "serial = '78012'", "TTTT-MMM*SSSSSSS"},
      {"secret = 'SV63QZBH5P9VJ8E15G9WVCRXSC2YADCN'", "secret = 'short'", "too short"},
      {"'hmc' = '127.0.0.1:443'", "'hmc' = '127.0.0.1:0'", "scopes.hmc"},
      {"'hmc' = '127.0.0.1:443'", "'HMC!' = '127.0.0.1:443'", "scope name"},
      {"mechanisms = ['scram-sha-256']", "mechanisms = ['plain']", "mechanisms"},
      {"key_expiry_minutes = 60", "key_expiry_minutes = 0", "key_expiry_minutes"},
      {"[machine]", "[machine", "line"},
      {"server_name = 'gw.example.com'", "server_name = ''", "gateway.server_name is empty"},
      // Strict: a misspelt key or section is named, never ignored.
      {"backup = ", "backupp = ", "gateway.backupp: unknown setting"},
      {"key_expiry_minutes = 60", "key_expiry_minutes = 60\nexpiry = 5", "session.expiry: unknown setting"},
      {"[session]", "[sesion]", "sesion: unknown section"},
      {"[gateway]", "machine_type = '9009'\n[gateway]", "machine_type: unknown section"},
      {"key_expiry_minutes = 60", "key_expiry_minutes = '60'", "key_expiry_minutes must be a whole number"},
      {"key_expiry_minutes = 60", "key_expiry_minutes = 1.5", "key_expiry_minutes must be a whole number"},
      {"approval_seconds = 60", "approval_seconds = 4", "session.approval_seconds must be a whole number from 5 to 240"},
      {"approval_seconds = 60", "approval_seconds = 241", "session.approval_seconds"},
      {"approval_seconds = 60", "approval_seconds = '60'", "session.approval_seconds"},
      {"[policy]\n", "[policy]\n'hmc' = 'maybe'\n", "policy.hmc must be \"allow\", \"ask\" or \"deny\""},
      {"[policy]\n", "[policy]\n'hmc' = 1\n", "policy.hmc must be"},
      {"[policy]\n", "[policy]\n'nosuch' = 'ask'\n", "policy.nosuch: no such scope in [scopes]"},
  };
  for (auto& [from, to, expect] : rows) {
    INFO(to);
    CHECK_THROWS_WITH(load_profile(with(from, to)), Catch::Contains(expect));
  }
  CHECK_THROWS_WITH(load_profile(t / "missing.toml"), Catch::Contains("no such profile"));
}

TEST_CASE("scope mappings on the command line") {
  auto m = parse_scope_mapping("hmc=10.0.0.5:443");
  CHECK(m.name == "hmc");
  CHECK(m.host == "10.0.0.5");
  CHECK(m.port == 443);
  for (const char* bad : {"hmc", "hmc=", "hmc=host", "hmc=host:99999", "=h:1", "Bad Name=h:1", "hmc=h:0"}) {
    INFO(bad);
    CHECK_THROWS_AS(parse_scope_mapping(bad), std::invalid_argument);
  }
}

TEST_CASE("the proxy URL: credentials percent-decoded and sent as Basic, everything else refused") {
  std::string why;
  auto p = parse_proxy_url("http://cust%40corp:p%3Ass@proxy.example.com:3128/", why);
  INFO(why);
  REQUIRE(p);
  CHECK(p->host == "proxy.example.com");
  CHECK(p->port == 3128);
  CHECK(p->user == "cust@corp");
  CHECK(p->password == "p:ss");
  // "cust@corp:p:ss" in base64
  CHECK(connect_request("gw.example.com:4433", *p) ==
        "CONNECT gw.example.com:4433 HTTP/1.1\r\nHost: gw.example.com:4433\r\n"
        "Proxy-Authorization: Basic Y3VzdEBjb3JwOnA6c3M=\r\n\r\n");
  auto plain = parse_proxy_url("http://[::1]:8080", why);
  REQUIRE(plain);
  CHECK(plain->host == "::1");
  CHECK(connect_request("10.0.0.1:4433", *plain) == "CONNECT 10.0.0.1:4433 HTTP/1.1\r\nHost: 10.0.0.1:4433\r\n\r\n");
  for (auto bad : {"https://proxy:3128", "http://proxy", "http://proxy:0", "http://:pw@proxy:1", "http://a:b%0d%0aX@h:1",
                   "http://a:b%4@h:1", "proxy:3128"}) {
    INFO(bad);
    CHECK_FALSE(parse_proxy_url(bad, why));
  }
}

TEST_CASE("the proxy's answer to CONNECT: a status line and header lines, nothing looser") {
  std::string why;
  auto a = parse_connect_answer("HTTP/1.1 200 Connection established\r\nProxy-agent: tinyproxy/1.11.1\r\n\r\n", why);
  REQUIRE(a);
  CHECK(a->status == 200);
  CHECK(a->reason == "Connection established");
  a = parse_connect_answer("HTTP/1.0 407 Proxy Authentication Required\r\nProxy-Authenticate: Basic realm=\"x\"\r\n\r\n", why);
  REQUIRE(a);
  CHECK(a->status == 407);
  a = parse_connect_answer("HTTP/1.1 200\r\n\r\n", why);
  REQUIRE(a);
  CHECK(a->reason.empty());
  for (const std::string& bad : std::vector<std::string>{"HTTP/2 200 OK\r\n\r\n", "HTTP/1.1 20x OK\r\n\r\n", "HTTP/1.1 200 OK\r\n", "SSH-2.0-x\r\n\r\n",
                          "HTTP/1.1 200 OK\r\n folded\r\n\r\n", "HTTP/1.1 200 OK\r\nno colon\r\n\r\n",
                          "HTTP/1.1 200 O\x01K\r\n\r\n", "HTTP/1.1 099 x\r\n\r\n",
                          "HTTP/1.1 200 OK\r\nX: " + std::string(9000, 'a') + "\r\n\r\n"}) {
    INFO(bad.substr(0, 40));
    CHECK_FALSE(parse_connect_answer(bad, why));
    CHECK_FALSE(why.empty());
  }
}
