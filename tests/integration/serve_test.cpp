// The gateway as an operator runs it: `rsgate serve --dev` from nothing, real HTTPS checked
// with curl against the development CA, clean shutdown on SIGINT and SIGTERM (journaled),
// `rsgate init` + `serve --config`, and readiness that follows the journal's ability to write
// when the running gateway's file-size limit is lowered with prlimit (as a full disk would).
#include <sys/stat.h>

#include <boost/json/parse.hpp>
#include <fstream>
#include <thread>

#include "core/files.hpp"
#include "tests/integration/common.hpp"

using namespace rsgate;
using namespace rsgate::test;

namespace {

constexpr auto kStartTimeout = std::chrono::seconds(60);

struct http_answer {
  int status = 0;
  std::string body;
  int curl_exit = 0;
};

http_answer https_get(const std::string& url, const std::filesystem::path& ca,
                      std::vector<std::string> extra = {}) {
  std::vector<std::string> a = {"curl", "-sS", "--max-time", "20", "--cacert", ca.string(),
                                "-o", "-", "-w", "\n%{http_code}"};
  a.insert(a.end(), extra.begin(), extra.end());
  a.push_back(url);
  auto r = run(a, "", std::chrono::seconds(30));
  http_answer h;
  h.curl_exit = r.exit_code;
  auto nl = r.out.rfind('\n');
  if (nl != std::string::npos) {
    h.body = r.out.substr(0, nl);
    h.status = std::atoi(r.out.c_str() + nl + 1);
  }
  return h;
}

// Reads the child's stdout until the console line; returns the base URL and every line seen.
std::string wait_console(child& c, std::vector<std::string>& lines) {
  auto deadline = std::chrono::steady_clock::now() + kStartTimeout;
  while (std::chrono::steady_clock::now() < deadline) {
    auto line = c.read_line(std::chrono::seconds(5));
    if (!line) continue;
    lines.push_back(*line);
    auto pos = line->find("console: https://");
    if (pos != std::string::npos) {
      auto url = line->substr(pos + 9);
      return url.substr(0, url.size() - 1);  // without the trailing '/'
    }
  }
  FAIL("the gateway did not print its console URL");
  return {};
}

std::vector<std::string> kinds_of(const std::filesystem::path& db) {
  auto r = rsgate_cmd({"journal", "query", "--db", db.string(), "--format", "json"});
  REQUIRE(r.exit_code == 0);
  std::vector<std::string> out;
  std::istringstream in(r.out);
  std::string line;
  while (std::getline(in, line))
    out.emplace_back(boost::json::parse(line).as_object()["kind"].as_string());
  return out;
}

unsigned mode_of(const std::filesystem::path& p) {
  struct stat st {};
  REQUIRE(::stat(p.c_str(), &st) == 0);
  return st.st_mode & 0777;
}

}  // namespace

TEST_CASE("serve --dev starts from nothing, serves HTTPS, stops cleanly on SIGINT") {
  temp_dir t;
  auto dir = t / "rsgate-dev";
  std::string password;
  {
    child gw({rsgate_binary(), "serve", "--dev", "--data", dir.string(), "--http-listen",
              "127.0.0.1:0", "--tunnel-listen", "127.0.0.1:0"},
             t / "gw1.err");
    std::vector<std::string> lines;
    auto base = wait_console(gw, lines);
    const std::string needle = "one-time password for administrator 'admin': ";
    for (auto& l : lines) {
      auto p = l.find(needle);
      if (p != std::string::npos) password = l.substr(p + needle.size());
    }
    CHECK(password.size() == 20);
    // The demo machine's agent line, with a profile that points at this gateway's tunnel. It
    // names the rsgate-agent binary by its full path (it need not be on the PATH) and the
    // profile by an absolute path, so it can be pasted in any directory (defect 27).
    std::string agent, demo;
    for (auto& l : lines) {
      auto p = l.find("demo machine agent: ");
      auto q = l.find(" start --profile ");
      if (p != std::string::npos && q != std::string::npos) {
        agent = l.substr(p + 20, q - p - 20);
        demo = l.substr(q + 17);
      }
    }
    REQUIRE_FALSE(demo.empty());
    CHECK(std::filesystem::path(demo).is_absolute());
    CHECK(mode_of(demo) == 0600);
    CHECK(std::filesystem::equivalent(agent, agent_binary()));
    CHECK(run({agent, "--help"}).exit_code == 0);
    auto ca = dir / "ca.pem";

    auto h = https_get(base + "/healthz", ca);
    CHECK(h.status == 200);
    CHECK(boost::json::parse(h.body).as_object()["status"].as_string() == "ok");
    CHECK(https_get(base + "/readyz", ca).status == 200);
    CHECK(https_get(base + "/api/v1/readyz", ca).status == 200);
    auto m = https_get(base + "/metrics", ca);
    CHECK(m.status == 200);
    CHECK(m.body.find("rsgate_journal_ready 1") != std::string::npos);
    CHECK(m.body.find("rsgate_http_requests_total{code=\"2xx\"}") != std::string::npos);
    auto nf = https_get(base + "/api/v1/sessions/none", ca);  // not logged in
    CHECK(nf.status == 401);
    CHECK(nf.body.find("\"error\"") != std::string::npos);
    CHECK(https_get(base + "/nothing/here", ca).status == 404);
    // The certificate names localhost too.
    auto port = base.substr(base.rfind(':') + 1);
    CHECK(https_get("https://localhost:" + port + "/healthz", ca).status == 200);
    // Old protocol versions are refused; without the CA the certificate is not trusted.
    CHECK(https_get(base + "/healthz", ca, {"--tlsv1.1", "--tls-max", "1.1"}).curl_exit != 0);
    auto untrusted = run({"curl", "-sS", "--max-time", "10", base + "/healthz"});
    CHECK(untrusted.exit_code != 0);
    // Oversized headers are answered with 431 and do not hurt the server.
    auto big = https_get(base + "/healthz", ca, {"-H", "X-Big: " + std::string(20000, 'a')});
    CHECK(big.status == 431);
    CHECK(https_get(base + "/healthz", ca).status == 200);

    gw.signal(SIGINT);
    auto code = gw.wait(std::chrono::seconds(20));
    REQUIRE(code.has_value());
    CHECK(*code == 0);
  }
  // Files: private directory, secret keys 0600, databases 0600.
  CHECK(mode_of(dir) == 0700);
  CHECK(mode_of(dir / "keys") == 0700);
  for (auto k : {"journal-signing.key", "journal-hmac.key", "server.key", "ca.key"})
    CHECK(mode_of(dir / "keys" / k) == 0600);
  CHECK(mode_of(dir / "journal.db") == 0600);
  CHECK(mode_of(dir / "state.db") == 0600);

  auto kinds = kinds_of(dir / "journal.db");
  CHECK(kinds == std::vector<std::string>{"gateway.start", "admin.user", "admin.machine", "gateway.stop",
                                          "journal.checkpoint"});
  auto q = rsgate_cmd({"journal", "query", "--data", dir.string(), "--kind", "gateway.stop",
                       "--format", "json"});
  CHECK(q.out.find("\"signal\":\"SIGINT\"") != std::string::npos);
  // Who ran the gateway (PCI DSS 10.2.2): the gateway's own entries record their origin.
  CHECK(q.out.find("\"source\":\"cli:") != std::string::npos);
  auto v = rsgate_cmd({"journal", "verify", "--data", dir.string(), "--pubkey",
                       (dir / "keys/journal-signing.pub").string()});
  CHECK(v.exit_code == 0);

  // The one-time password is in no file and no log.
  REQUIRE_FALSE(password.empty());
  for (auto f : {dir / "journal.db", dir / "state.db", t / "gw1.err"})
    CHECK(read_file(f).find(password) == std::string::npos);

  // A second start reuses everything and does not print a password again; SIGTERM stops it.
  {
    child gw({rsgate_binary(), "serve", "--dev", "--data", dir.string(), "--http-listen",
              "127.0.0.1:0", "--tunnel-listen", "127.0.0.1:0"},
             t / "gw2.err");
    std::vector<std::string> lines;
    wait_console(gw, lines);
    for (auto& l : lines) CHECK(l.find("password") == std::string::npos);
    gw.signal(SIGTERM);
    auto code = gw.wait(std::chrono::seconds(20));
    REQUIRE(code.has_value());
    CHECK(*code == 0);
  }
  auto q2 = rsgate_cmd({"journal", "query", "--data", dir.string(), "--kind", "gateway.stop",
                        "--format", "json"});
  CHECK(q2.out.find("\"signal\":\"SIGTERM\"") != std::string::npos);
}

TEST_CASE("init + serve --config, readiness follows the journal under a file-size limit") {
  temp_dir t;
  auto dir = t / "gw";
  auto r = rsgate_cmd({"init", "--data", dir.string(), "--name", "gw-prod"});
  INFO(r.err);
  REQUIRE(r.exit_code == 0);
  CHECK(r.out.find("one-time password for administrator 'admin'") != std::string::npos);
  CHECK(r.out.find(read_file(dir / "keys/journal-signing.pub").substr(0, 64)) != std::string::npos);
  // init twice: refused, nothing changed.
  auto again = rsgate_cmd({"init", "--data", dir.string()});
  CHECK(again.exit_code == 1);
  CHECK(line_count(again.err) == 1);

  // Listen on an ephemeral port and probe the journal every 100 ms.
  auto cfg = read_file(dir / "rsgate.toml");
  auto replace = [&](const std::string& from, const std::string& to) {
    auto p = cfg.find(from);
    REQUIRE(p != std::string::npos);
    cfg.replace(p, from.size(), to);
  };
  replace("listen = \"127.0.0.1:8443\"", "listen = \"127.0.0.1:0\"");
  replace("probe_ms = 2000", "probe_ms = 100");
  std::ofstream(dir / "rsgate.toml") << cfg;

  child gw({rsgate_binary(), "serve", "--config", (dir / "rsgate.toml").string()}, t / "gw.err");
  std::vector<std::string> lines;
  auto base = wait_console(gw, lines);
  auto ca = dir / "ca.pem";
  REQUIRE(https_get(base + "/readyz", ca).status == 200);

  auto pid = std::to_string(gw.pid());
  REQUIRE(run({"prlimit", "--pid", pid, "--fsize=1:unlimited"}).exit_code == 0);
  int status = 0;
  for (int i = 0; i < 100 && status != 503; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    status = https_get(base + "/readyz", ca).status;
  }
  CHECK(status == 503);
  auto body = https_get(base + "/readyz", ca).body;
  CHECK(body.find("journal_unavailable") != std::string::npos);
  CHECK(https_get(base + "/metrics", ca).body.find("rsgate_journal_ready 0") != std::string::npos);
  CHECK(https_get(base + "/healthz", ca).status == 200);  // alive, just not ready

  REQUIRE(run({"prlimit", "--pid", pid, "--fsize=unlimited:unlimited"}).exit_code == 0);
  for (int i = 0; i < 100 && status != 200; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    status = https_get(base + "/readyz", ca).status;
  }
  CHECK(status == 200);

  gw.signal(SIGTERM);
  auto code = gw.wait(std::chrono::seconds(20));
  REQUIRE(code.has_value());
  CHECK(*code == 0);
  auto v = rsgate_cmd({"journal", "verify", "--data", dir.string(), "--pubkey",
                       (dir / "keys/journal-signing.pub").string()});
  INFO(v.out << v.err);
  CHECK(v.exit_code == 0);
  auto kinds = kinds_of(dir / "journal.db");
  CHECK(kinds == std::vector<std::string>{"admin.user", "journal.checkpoint", "gateway.start",
                                          "gateway.stop", "journal.checkpoint"});
  auto q = rsgate_cmd({"journal", "query", "--data", dir.string(), "--kind", "gateway.start",
                       "--format", "json"});
  CHECK(q.out.find("\"gateway\":\"gw-prod\"") != std::string::npos);
}

TEST_CASE("serve refuses bad usage with exit 2 and one line") {
  temp_dir t;
  std::ofstream(t / "bad.toml") << "[http]\nlisten = \"nowhere\"\n";
  const std::vector<std::vector<std::string>> cases = {
      {"serve", "--data", (t / "empty").string()},
      {"serve", "--dev", "--data", (t / "d").string(), "--http-listen", "localhost"},
      {"serve", "--dev", "--config", (t / "bad.toml").string()},
      {"serve", "--config", (t / "bad.toml").string()},
      {"serve", "--config", (t / "missing.toml").string()},
      {"serve", "--dev", "--data", (t / "d").string(), "--log-level", "loud"},
      {"serve", "--bogus"},
      {"init"},
      {"nonsense"},
  };
  for (auto& args : cases) {
    auto r = rsgate_cmd(args);
    INFO(args[0] << " " << (args.size() > 1 ? args[1] : "") << "\n" << r.err);
    CHECK(r.exit_code == 2);
    CHECK(line_count(r.err) >= 1);
  }
  CHECK_FALSE(std::filesystem::exists(t / "d"));
}

TEST_CASE("a port already in use is a clear start-up failure, journaled") {
  temp_dir t;
  auto dir = t / "dev";
  child first({rsgate_binary(), "serve", "--dev", "--data", dir.string(), "--http-listen",
               "127.0.0.1:0", "--tunnel-listen", "127.0.0.1:0"},
              t / "first.err");
  std::vector<std::string> lines;
  auto base = wait_console(first, lines);
  auto addr = base.substr(std::string("https://").size());
  auto r = rsgate_cmd({"serve", "--dev", "--data", (t / "dev2").string(), "--http-listen", addr,
                       "--tunnel-listen", "127.0.0.1:0"});
  CHECK(r.exit_code == 1);
  CHECK(r.err.find("cannot listen") != std::string::npos);
  first.signal(SIGTERM);
  CHECK(first.wait(std::chrono::seconds(20)) == 0);
  auto q = rsgate_cmd({"journal", "query", "--data", (t / "dev2").string(), "--kind",
                       "gateway.stop", "--outcome", "error", "--format", "json"});
  CHECK(line_count(q.out) == 1);
}
