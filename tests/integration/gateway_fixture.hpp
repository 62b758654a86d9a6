// Shared steps of the tests that run a whole gateway: `rsgate init` with certificates, `rsgate
// serve` on ephemeral loopback ports, accounts with bearer tokens, enrolled machines, curl
// against the REST API, `rsgate-agent start` and `rsgate connect` as real child processes.
#pragma once
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <fcntl.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <map>
#include <memory>
#include <optional>
#include <sstream>
#include <thread>

#include "core/files.hpp"
#include "tests/integration/common.hpp"
#include "tests/support/echo_server.hpp"

namespace rsgate::test {

namespace json = boost::json;


inline constexpr auto kWait = std::chrono::seconds(60);

// With RSGATE_API_LOG set (by tests/api/openapi_check.py), every answer that api() and raw()
// receive is appended to that file as one JSON line, so that real responses of these tests can
// be checked against docs/api/openapi.yaml. One write(2) per line, O_APPEND: tests call these
// from several threads.
inline void log_api_answer(const std::string& method, const std::string& target, int status,
                           const std::string& content_type, const std::string& body) {
  static const char* path = std::getenv("RSGATE_API_LOG");
  if (!path || !*path) return;
  auto line = json::serialize(json::object{{"method", method}, {"target", target}, {"status", status},
                                           {"content_type", content_type}, {"body", body}});
  line += '\n';
  int fd = ::open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
  if (fd < 0) return;
  (void)!::write(fd, line.data(), line.size());
  ::close(fd);
}

// Splits curl's output written with `-w "\n%{http_code} %{content_type}"`: status, content type, body.
struct curl_answer {
  int status = 0;
  std::string content_type, body;
};
inline std::optional<curl_answer> split_curl_output(const std::string& out) {
  auto nl = out.rfind('\n');
  if (nl == std::string::npos) return std::nullopt;
  curl_answer a;
  auto tail = out.substr(nl + 1);
  a.status = std::atoi(tail.c_str());
  if (auto sp = tail.find(' '); sp != std::string::npos) a.content_type = tail.substr(sp + 1);
  a.body = out.substr(0, nl);
  return a;
}

struct gateway_fixture {
  temp_dir t;
  std::filesystem::path dir = t / "gw";
  std::unique_ptr<child> gw;
  std::string https, tunnel;
  std::map<std::string, std::string> tokens;
  std::map<std::string, std::string> totp_uris;  // the otpauth URI `user add` printed (representatives, admins)

  // `threads`: the gateway's I/O threads; more than one puts each connection on a strand and
  // a channel's two ends on different threads. `tunnel_settings`: lines added to [tunnel].
  // `pair_of`: this gateway is the other of a pair with that one (named gw-backup, serving
  // the same CA's certificate, so one agent profile trusts both).
  // `extra_config`: text appended to the configuration (another section).
  // `tunnel_listen`: the tunnel listener's ADDR:PORT.
  explicit gateway_fixture(int threads = 1, const std::string& tunnel_settings = "",
                           const gateway_fixture* pair_of = nullptr, const std::string& extra_config = "",
                           const std::string& tunnel_listen = "127.0.0.1:0") {
    init_data_dir(dir, pair_of ? "gw-backup" : "gw-flow", true);
    if (pair_of)
      for (auto file : {"ca.pem", "server.pem", "keys/server.key", "keys/ca.key"})
        std::filesystem::copy_file(pair_of->dir / file, dir / file, std::filesystem::copy_options::overwrite_existing);
    auto cfg = read_file(dir / "rsgate.toml");
    auto t1 = cfg.find("threads = 1 ");
    REQUIRE(t1 != std::string::npos);
    cfg.replace(t1, 11, "threads = " + std::to_string(threads));
    for (auto port : {"8443", "4433"}) {
      auto from = std::string("listen = \"127.0.0.1:") + port + "\"";
      auto p = cfg.find(from);
      REQUIRE(p != std::string::npos);
      cfg.replace(p, from.size(), "listen = \"" + (port == std::string("4433") ? tunnel_listen : "127.0.0.1:0") + "\"");
    }
    if (!tunnel_settings.empty()) {
      auto sec = cfg.find("[tunnel]\n");
      REQUIRE(sec != std::string::npos);
      cfg.insert(sec + 9, tunnel_settings + "\n");
      // The sample's own line for each setting given here goes (a key twice is an error).
      std::istringstream given(tunnel_settings);
      for (std::string l; std::getline(given, l);) {
        std::string key = "\n";  // not "\n" + …: GCC 12's false -Wrestrict (PR 105329)
        key += l.substr(0, l.find('=') + 1);
        auto at = cfg.find(key, sec + 9 + tunnel_settings.size());
        if (at != std::string::npos) cfg.erase(at + 1, cfg.find('\n', at + 1) - at);
      }
    }
    std::ofstream(dir / "rsgate.toml") << cfg << extra_config;
    start();
    for (auto [name, role] : {std::pair{"alice", "representative"}, std::pair{"bob", "representative"},
                              std::pair{"dave", "developer"}})
      add_user(name, role);
  }

  // Starts `rsgate serve` (again) on the data directory; learns its ephemeral ports.
  void start() {
    https.clear();
    tunnel.clear();
    gw = std::make_unique<child>(std::vector<std::string>{rsgate_binary(), "serve", "--config", (dir / "rsgate.toml").string()},
                                 t / "gw.err");
    auto deadline = std::chrono::steady_clock::now() + kWait;
    while ((https.empty() || tunnel.empty()) && std::chrono::steady_clock::now() < deadline) {
      auto line = gw->read_line(std::chrono::seconds(5));
      if (!line) continue;
      if (auto p = line->find("tunnel: "); p != std::string::npos) tunnel = line->substr(p + 8);
      if (auto p = line->find("console: https://"); p != std::string::npos)
        https = line->substr(p + 17, line->size() - p - 18);  // host:port
    }
    REQUIRE_FALSE(https.empty());
    REQUIRE_FALSE(tunnel.empty());
  }
  // Stops it with `sig` and returns its exit status (or -signal).
  std::optional<int> stop(int sig = SIGTERM) {
    gw->signal(sig);
    auto code = gw->wait(std::chrono::seconds(30));
    // What it was doing, for the failure this leads to (its stderr goes with the test's files).
    if (!code) WARN("the gateway did not stop within 30 s of signal " << sig << "\n" << gw->recent_output());
    gw.reset();
    return code;
  }
  // An account with a bearer token, through the real administration commands.
  void add_user(const std::string& name, const std::string& role) {
    auto added = rsgate_cmd({"user", "add", name, "--role", role, "--password-stdin", "--data", dir.string()},
                            "a long enough password\n");
    REQUIRE(added.exit_code == 0);
    if (auto at = added.out.find("otpauth://"); at != std::string::npos)
      totp_uris[name] = added.out.substr(at, added.out.find('\n', at) - at);
    auto tok = rsgate_cmd({"token", "create", "--user", name, "--data", dir.string()});
    REQUIRE(tok.exit_code == 0);
    tokens[name] = tok.out.substr(0, tok.out.size() - 1);
  }
  ~gateway_fixture() {
    if (gw) {
      gw->signal(SIGTERM);
      (void)gw->wait(std::chrono::seconds(20));
    }
  }

  // One request through curl (its `extra` arguments, then headers and a JSON body); the answer
  // is logged for openapi_check.py. nullopt when curl itself failed, with its stderr in `err`.
  std::optional<curl_answer> curl(const std::string& method, const std::string& target,
                                  const std::vector<std::string>& headers, const std::string& body,
                                  const std::vector<std::string>& extra, std::string* err = nullptr) {
    std::vector<std::string> a = {"curl", "-sS", "--max-time", "20", "--cacert", (dir / "ca.pem").string(), "-X", method,
                                  "-o", "-", "-w", "\n%{http_code} %{content_type}"};
    a.insert(a.end(), extra.begin(), extra.end());
    for (auto& h : headers) {
      a.push_back("-H");
      a.push_back(h);
    }
    if (!body.empty()) {
      a.push_back("-H");
      a.push_back("Content-Type: application/json");
      a.push_back("--data-binary");
      a.push_back(body);
    }
    a.push_back("https://" + https + target);
    auto r = run(a, "", std::chrono::seconds(30));
    auto got = split_curl_output(r.out);
    if (!got) {
      if (err) *err = r.err;
      return std::nullopt;
    }
    log_api_answer(method, target, got->status, got->content_type, got->body);
    return got;
  }

  // A request as a client sends it: any method, target (sent as given, not re-encoded) and
  // headers. Returns the status and the body.
  std::pair<int, std::string> raw(const std::string& method, const std::string& target,
                                  std::vector<std::string> headers, const std::string& body = "") {
    std::string err;
    auto got = curl(method, target, headers, body, {"--path-as-is", "-g"}, &err);
    if (!got) return {0, err};
    return {got->status, got->body};
  }

  // A console login through curl: the Cookie header to send back and the CSRF token, or
  // nullopt when the login was refused (its answer is logged like raw()'s).
  struct login_session {
    std::string cookie;  // "Cookie: rsgate_session=…"
    std::string csrf;    // "X-CSRF-Token: …"
  };
  std::optional<login_session> login(const std::string& body) {
    auto jar = t / ("jar-" + std::to_string(++logins_));
    auto got = curl("POST", "/api/v1/login", {}, body, {"-c", jar.string()});
    if (!got || got->status != 200) return std::nullopt;
    login_session l;
    std::istringstream cookies(read_file(jar));
    for (std::string line; std::getline(cookies, line);) {
      auto tab = line.rfind('\t');
      if (tab != std::string::npos && line.find("rsgate_session\t") != std::string::npos)
        l.cookie = "Cookie: rsgate_session=" + line.substr(tab + 1);
    }
    l.csrf = "X-CSRF-Token: " + std::string(json::parse(got->body).as_object()["csrf_token"].as_string());
    return l;
  }
  int logins_ = 0;

  // `gateway`: the HOST:PORT the profile names (default: this gateway's tunnel listener).
  std::filesystem::path enroll(const std::string& serial, bool md5 = false,
                               std::vector<std::string> scopes = {"hmc=127.0.0.1:9", "partition:LP01=127.0.0.1:9"},
                               const std::string& gateway = "", const std::string& backup = "") {
    auto profile = t / (serial + ".toml");
    std::vector<std::string> a = {"machine", "enroll", "--type", "9009", "--model", "42A", "--serial", serial,
                                  "--gateway", gateway.empty() ? tunnel : gateway, "--profile-out", profile.string(),
                                  "--data", dir.string()};
    if (!backup.empty()) {
      a.push_back("--backup");
      a.push_back(backup);
    }
    for (auto& sc : scopes) {
      a.push_back("--scope");
      a.push_back(sc);
    }
    if (md5) a.push_back("--md5");
    auto r = rsgate_cmd(a);
    INFO(r.err);
    REQUIRE(r.exit_code == 0);
    return profile;
  }

  struct answer {
    int status = 0;
    json::object body;
  };
  answer api(const std::string& method, const std::string& path, const std::string& user, const std::string& body = "") {
    answer out;  // status 0: curl itself failed (no Catch2 assertion here: tests call this from threads)
    auto got = curl(method, path, {"Authorization: Bearer " + tokens.at(user)}, body, {});
    if (!got) return out;
    out.status = got->status;
    boost::system::error_code ec;
    auto v = json::parse(got->body, ec);
    if (!ec && v.is_object()) out.body = v.as_object();
    return out;
  }

  std::vector<std::string> kinds(const std::string& kind, const std::string& outcome) {
    auto r = rsgate_cmd({"journal", "query", "--data", dir.string(), "--kind", kind, "--outcome", outcome, "--format", "json"});
    REQUIRE(r.exit_code == 0);
    std::vector<std::string> lines;
    std::istringstream in(r.out);
    std::string l;
    while (std::getline(in, l)) lines.push_back(l);
    return lines;
  }
};

// The port of "HOST:PORT".
inline std::uint16_t port_of(const std::string& host_port) {
  return static_cast<std::uint16_t>(std::stoi(host_port.substr(host_port.rfind(':') + 1)));
}

// The `detail` object of a journal entry printed by `rsgate journal query --format json`.
inline json::object detail(const std::string& line) { return json::parse(line).as_object()["detail"].as_object(); }

// The TOTP code an authenticator app shows now for `uri` (an otpauth:// URI), from Debian's
// oathtool: an implementation independent of the gateway's. `ahead`: that many 30 s steps later.
inline std::string oath_code(const std::string& uri, int ahead = 0) {
  auto at = uri.find("secret=");
  REQUIRE(at != std::string::npos);
  auto secret = uri.substr(at + 7, uri.find('&', at) - at - 7);
  auto r = run({"oathtool", "--totp", "-b", "--now=@" + std::to_string(std::time(nullptr) + 30 * ahead), secret});
  REQUIRE(r.exit_code == 0);
  return r.out.substr(0, r.out.find('\n'));
}

// Polls `p` every 50 ms until it holds (true) or `limit` passes (false).
template <typename Pred>
bool eventually(Pred p, std::chrono::milliseconds limit = std::chrono::seconds(20)) {
  auto until = std::chrono::steady_clock::now() + limit;
  while (!p()) {
    if (std::chrono::steady_clock::now() >= until) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return true;
}

inline std::string wait_line(child& c, const std::string& needle) {
  auto l = c.wait_for(needle, kWait);
  if (!l) FAIL("waiting for: " << needle << "\n" << c.recent_output());
  return *l;
}

// The customer starts the agent, the representative `owner` attaches with the printed key.
struct attached {
  std::unique_ptr<child> agent;
  std::string control;
  std::string sid;
};
inline attached start_and_attach(gateway_fixture& f, const std::filesystem::path& profile, const std::string& owner,
                          const std::string& pmr) {
  attached a;
  a.control = (f.t / "a.sock").string();
  a.agent = std::make_unique<child>(
      std::vector<std::string>{agent_binary(), "start", "--profile", profile.string(), "--control", a.control},
      f.t / "agent.err");
  auto key_line = wait_line(*a.agent, "Session key: ");
  auto key = key_line.substr(key_line.find(": ") + 2);
  auto att = f.api("POST", "/api/v1/sessions/attach", owner,
                   json::serialize(json::object{{"session_key", key}, {"pmr", pmr}}));
  REQUIRE(att.status == 201);
  a.sid = std::string(att.body["id"].as_string());
  return a;
}


// `rsgate connect` for `user` to `scope` of session `sid`; returns the child and its port.
// `ca`: the CA file it trusts (default: the gateway's).
inline std::pair<std::unique_ptr<child>, std::uint16_t> connect_for(gateway_fixture& f, const std::string& user,
                                                             const std::string& sid, const std::string& scope,
                                                             const std::string& access_type, std::string ca = "") {
  if (ca.empty()) ca = (f.dir / "ca.pem").string();
  auto c = std::make_unique<child>(std::vector<std::string>{rsgate_binary(), "connect", "--gateway", "https://" + f.https,
                                                            "--token", f.tokens.at(user), "--session", sid, "--scope",
                                                            scope, "--access-type", access_type, "--listen",
                                                            "127.0.0.1:0", "--ca", ca},
                                   f.t / ("connect-" + user + ".err"));
  auto line = c->wait_for("listening on 127.0.0.1:", kWait);
  REQUIRE(line);
  auto p = line->find("127.0.0.1:") + 10;
  return {std::move(c), static_cast<std::uint16_t>(std::stoi(line->substr(p)))};
}

inline std::vector<std::uint8_t> random_bytes(std::size_t n) {
  std::vector<std::uint8_t> v(n);
  std::uint32_t x = 2463534242u;
  for (auto& b : v) {
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    b = static_cast<std::uint8_t>(x);
  }
  return v;
}

// One connection through `rsgate connect` to `scope` (an echo target): `n` bytes there and
// back; true when they came back intact. The connection and the connect child end here.
inline bool channel_round_trip(gateway_fixture& f, const std::string& user, const std::string& sid,
                               const std::string& scope, std::size_t n) {
  auto [conn, port] = connect_for(f, user, sid, scope, "ssh");
  int s = connect_local(port);
  if (s < 0) return false;
  auto data = random_bytes(n);
  const bool intact = round_trip(s, data) == data;
  ::close(s);
  return intact;
}

}  // namespace rsgate::test
