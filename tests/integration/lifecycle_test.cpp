// The tunnel's lifecycle through real processes. The dead-peer bound (tunnel.keepalive,
// docs/protocol.md §2.1) on both sides: the gateway tells the agent its bound in SUCCESS, the
// agent PINGs every third of it, and whichever side hears nothing for that long closes. A
// live idle agent is never closed; an agent frozen with SIGSTOP loses its tunnel at the
// gateway within the bound (journaled); an agent whose gateway is frozen gives up within the
// bound. And the window is the control: closing the agent's terminal (SIGHUP) ends the
// session at once, as ended by the customer, with no reconnect grace.
#include <csignal>
#include <fstream>
#include <thread>

#include <catch2/catch.hpp>

#include "tests/integration/gateway_fixture.hpp"
#include "core/files.hpp"
#include "tests/support/loopback.hpp"
#include "tests/support/tcp_relay.hpp"

using namespace rsgate;
using namespace rsgate::test;
using namespace std::chrono_literals;
namespace json = boost::json;

namespace {

constexpr int kBound = 6;  // tunnel.keepalive for these tests: the smallest allowed

std::unique_ptr<child> start_agent(gateway_fixture& f, const std::filesystem::path& profile) {
  auto a = std::make_unique<child>(std::vector<std::string>{agent_binary(), "start", "--profile", profile.string(),
                                                            "--control", (f.t / "a.sock").string()},
                                   f.t / "agent.err");
  (void)wait_line(*a, "Session key: ");
  return a;
}

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace

TEST_CASE("an agent frozen by SIGSTOP loses its tunnel at the gateway within tunnel.keepalive, journaled") {
  gateway_fixture f(1, "keepalive = " + std::to_string(kBound));
  auto profile = f.enroll("7801370");
  auto agent = start_agent(f, profile);
  // Alive and idle for longer than the bound: its PINGs keep the tunnel up.
  std::this_thread::sleep_for(std::chrono::seconds(kBound + 2));
  CHECK(f.kinds("tunnel.close", "error").empty());
  CHECK(f.kinds("tunnel.close", "ok").empty());

  agent->signal(SIGSTOP);
  const auto t0 = std::chrono::steady_clock::now();
  std::vector<std::string> closes;
  REQUIRE(eventually([&] { return !(closes = f.kinds("tunnel.close", "error")).empty(); }, 30s));
  const double took = seconds_since(t0);
  INFO("closed " << took << " s after SIGSTOP");
  // The deadline runs from the last frame (a PING at most a third of the bound before the
  // stop), so the close comes between two thirds of the bound and the bound, plus the time
  // this test takes to see it in the journal.
  CHECK(took >= kBound * 2.0 / 3 - 0.5);
  CHECK(took <= kBound + 4.0);  // slack for the sanitizer builds' slower journal queries
  CHECK(detail(closes[0])["reason"].as_string() ==
        "no frame from the agent for " + std::to_string(kBound) + " s: the tunnel is dead");

  // Thawed, it finds its connection gone and resumes its session on a new one (§9).
  agent->signal(SIGCONT);
  (void)wait_line(*agent, "Reconnected to ");
  std::vector<std::string> resumes;
  REQUIRE(eventually([&] { return !(resumes = f.kinds("tunnel.reauth", "ok")).empty(); }, 10s));
  CHECK(detail(resumes[0])["trigger"].as_string() == "resume");
}


TEST_CASE("an agent whose gateway is frozen by SIGSTOP drops the tunnel within tunnel.keepalive, then resumes") {
  gateway_fixture f(1, "keepalive = " + std::to_string(kBound));
  auto profile = f.enroll("7801371");
  auto agent = start_agent(f, profile);
  const std::string dead = "no frame from the gateway for " + std::to_string(kBound) + " s: the tunnel is dead";
  f.gw->signal(SIGSTOP);
  struct thaw {  // whatever fails below, the gateway is not left stopped
    child& gw;
    ~thaw() { gw.signal(SIGCONT); }
  } thaw_on_exit{*f.gw};
  const auto t0 = std::chrono::steady_clock::now();
  REQUIRE(eventually([&] { return read_file(f.t / "agent.err").find(dead) != std::string::npos; }, std::chrono::seconds(kBound * 3)));
  const double took = seconds_since(t0);
  INFO("the agent gave the tunnel up " << took << " s after the gateway stopped");
  CHECK(took <= kBound + 3.0);
  CHECK_THAT(read_file(f.t / "agent.err"), Catch::Contains("reconnecting (the gateway keeps session"));
  CHECK_FALSE(agent->wait(0s).has_value());  // still running: it keeps trying
  f.gw->signal(SIGCONT);
  (void)wait_line(*agent, "Reconnected to ");
}

TEST_CASE("closing the agent's terminal (SIGHUP) ends the remote support at once, as the customer's stop") {
  gateway_fixture f;
  auto profile = f.enroll("7801372");
  auto sess = start_and_attach(f, profile, "alice", "TS000000372");
  sess.agent->signal(SIGHUP);
  CHECK(sess.agent->wait(20s) == 0);  // the customer stopped it: exit 0
  std::vector<std::string> ends;
  REQUIRE(eventually([&] { return !(ends = f.kinds("session.end", "ok")).empty(); }, 10s));
  auto end = json::parse(ends[0]).as_object();
  CHECK(end["actor"].as_string() == "customer");
  CHECK(end["session_id"].as_string() == sess.sid);
  CHECK(detail(ends[0])["reason"].as_string() == "customer");
  // Ended, not waiting for a reconnect: the representative is told so at once.
  auto s = f.api("GET", "/api/v1/sessions/" + sess.sid, "alice");
  REQUIRE(s.status == 200);
  CHECK(s.body["state"].as_string() == "ended");
}

TEST_CASE("tunnel.grace: within it a restarted agent gets its session back, past it the session ends as tunnel lost") {
  // Long enough for a sanitizer-built agent to start and authenticate within it.
  constexpr int kGrace = 15;
  gateway_fixture f(1, "grace = " + std::to_string(kGrace));
  auto profile = f.enroll("7801373");
  auto sess = start_and_attach(f, profile, "alice", "TS000000373");
  REQUIRE(f.api("POST", "/api/v1/sessions/" + sess.sid + "/grants", "alice",
                R"({"user":"dave","scopes":["hmc"],"access_types":["ssh"]})")
              .status == 201);

  // The agent dies without STOP; another one of the machine comes back within the grace.
  sess.agent->signal(SIGKILL);
  (void)sess.agent->wait(20s);
  REQUIRE(eventually([&] { return !f.kinds("tunnel.close", "ok").empty(); }, 10s));
  auto again = std::make_unique<child>(std::vector<std::string>{agent_binary(), "start", "--profile", profile.string(),
                                                                "--control", (f.t / "b.sock").string()},
                                       f.t / "agent2.err");
  auto connected = wait_line(*again, "Connected to ");
  CHECK(connected.find("session " + sess.sid) != std::string::npos);
  (void)wait_line(*again, "alice attached");  // told who owns it
  auto s = f.api("GET", "/api/v1/sessions/" + sess.sid, "alice");
  REQUIRE(s.status == 200);
  CHECK(s.body["owner"].as_string() == "alice");
  CHECK(json::serialize(s.body["grants"]).find("\"dave\"") != std::string::npos);
  CHECK(f.kinds("session.end", "ok").empty());
  // Journaled as a join without HELLO's resume (a new agent process knows no session).
  auto joins = f.kinds("tunnel.reauth", "ok");
  REQUIRE(joins.size() == 1);
  CHECK(detail(joins[0])["trigger"].as_string() == "reconnect");
  CHECK(json::parse(joins[0]).as_object()["session_id"].as_string() == sess.sid);

  // Now it dies for good: the session ends once the grace has passed, journaled with why.
  again->signal(SIGKILL);
  (void)again->wait(20s);
  const auto t0 = std::chrono::steady_clock::now();
  std::vector<std::string> ends;
  REQUIRE(eventually([&] { return !(ends = f.kinds("session.end", "ok")).empty(); }, 20s));
  const double took = seconds_since(t0);
  INFO("ended " << took << " s after the agent died");
  CHECK(took >= kGrace - 1.0);  // not before the grace (less the time to notice the drop)
  CHECK(took <= kGrace + 5.0);  // the grace, the once-a-second housekeeping, the journal query
  auto end = json::parse(ends[0]).as_object();
  CHECK(end["actor"].as_string() == "gateway");
  CHECK(end["session_id"].as_string() == sess.sid);
  CHECK(detail(ends[0])["reason"].as_string() == "tunnel lost");
}

TEST_CASE("an agent started with SIGHUP ignored (nohup) keeps ignoring it") {
  gateway_fixture f;
  auto profile = f.enroll("7801374");
  auto agent = std::make_unique<child>(
      std::vector<std::string>{"nohup", agent_binary(), "start", "--profile", profile.string(), "--control",
                               (f.t / "a.sock").string()},
      f.t / "agent.err");
  (void)wait_line(*agent, "Session key: ");
  agent->signal(SIGHUP);
  CHECK_FALSE(agent->wait(3s).has_value());  // still running
  CHECK(f.kinds("session.end", "ok").empty());
  agent->signal(SIGTERM);
  CHECK(agent->wait(20s) == 0);
}

TEST_CASE("a lost connection: the agent resumes its session within tunnel.grace, past it the session ends") {
  constexpr int kGrace = 12;  // room for the outage below, and for the backoff to show
  gateway_fixture f(1, "grace = " + std::to_string(kGrace));
  tcp_relay net(port_of(f.tunnel));
  auto profile = f.enroll("7801375", false, {"hmc=127.0.0.1:9"}, "127.0.0.1:" + std::to_string(net.port()));
  auto sess = start_and_attach(f, profile, "alice", "TS000000375");
  REQUIRE(f.api("POST", "/api/v1/sessions/" + sess.sid + "/grants", "alice",
                R"({"user":"dave","scopes":["hmc"],"access_types":["ssh"]})")
              .status == 201);

  // The network drops the connection: the agent comes back by itself, HELLO naming its session.
  net.cut();
  auto back = wait_line(*sess.agent, "Reconnected to ");
  CHECK(back.find("session " + sess.sid + " resumed") != std::string::npos);
  (void)wait_line(*sess.agent, "alice attached");  // told who owns it, again
  auto s = f.api("GET", "/api/v1/sessions/" + sess.sid, "alice");
  REQUIRE(s.status == 200);
  CHECK(s.body["owner"].as_string() == "alice");
  CHECK(s.body["state"].as_string() == "active");
  CHECK(json::serialize(s.body["grants"]).find("\"dave\"") != std::string::npos);
  auto resumes = f.kinds("tunnel.reauth", "ok");
  REQUIRE(resumes.size() == 1);
  CHECK(json::parse(resumes[0]).as_object()["session_id"].as_string() == sess.sid);
  CHECK(detail(resumes[0])["trigger"].as_string() == "resume");
  CHECK(f.kinds("session.end", "ok").empty());

  // Access changes while the agent is away: told again on its return, the customer sees the
  // grants as they are now, not as they were.
  net.refuse(true);
  net.cut();
  REQUIRE(eventually([&] { return f.kinds("tunnel.close", "ok").size() == 2; }, 10s));
  REQUIRE(f.api("DELETE", "/api/v1/sessions/" + sess.sid + "/grants/G1", "alice").status == 200);
  REQUIRE(f.api("POST", "/api/v1/sessions/" + sess.sid + "/grants", "alice", R"({"user":"bob","scopes":["hmc"]})")
              .status == 201);
  net.refuse(false);
  (void)wait_line(*sess.agent, "Reconnected to ");
  (void)wait_line(*sess.agent, "granted bob");
  auto st = run({agent_binary(), "status", "--json", "--control", sess.control});
  REQUIRE(st.exit_code == 0);
  auto view = json::parse(st.out).as_object();
  CHECK(json::serialize(view["grants"]) == R"(["bob"])");
  CHECK(view["owner"].as_string() == "alice");

  // Now the gateway cannot be reached for longer than the grace: the agent tries, spaced out
  // by its backoff, and gives up once the grace is over; the gateway ends the session.
  net.refuse(true);
  const int before = net.accepted();
  net.cut();
  const auto t0 = std::chrono::steady_clock::now();
  auto code = sess.agent->wait(std::chrono::seconds(kGrace + 20));
  const double took = seconds_since(t0);
  const int attempts = net.accepted() - before;
  INFO("the agent gave up " << took << " s after the drop, after " << attempts << " attempts");
  CHECK(code == 1);
  CHECK(took >= kGrace - 0.5);
  CHECK(took <= kGrace + 3.0);
  // Waits of 1, 2, 4, 8 s (each drawn from its upper half) within 12 s, and one at its end.
  CHECK(attempts >= 3);
  CHECK(attempts <= 7);
  CHECK_THAT(read_file(f.t / "agent.err"), Catch::Contains("could not reconnect to the gateway within its " + std::to_string(kGrace) +
                                           " s grace; session " + sess.sid + " has ended"));
  std::vector<std::string> ends;
  REQUIRE(eventually([&] { return !(ends = f.kinds("session.end", "ok")).empty(); }, 10s));
  CHECK(json::parse(ends[0]).as_object()["session_id"].as_string() == sess.sid);
  CHECK(detail(ends[0])["reason"].as_string() == "tunnel lost");
}

TEST_CASE("tunnel.reauth: at the end of its life the agent authenticates again on a new connection, same session") {
  gateway_fixture f(1, "reauth = 5");
  auto profile = f.enroll("7801376");
  auto sess = start_and_attach(f, profile, "alice", "TS000000376");
  const auto t0 = std::chrono::steady_clock::now();
  (void)wait_line(*sess.agent, "authenticate again");
  auto back = wait_line(*sess.agent, "Reconnected to ");
  INFO("re-authenticated " << seconds_since(t0) << " s after the attach");
  CHECK(back.find("session " + sess.sid + " resumed") != std::string::npos);
  // The old tunnel's close says why; the new one passed CHAP from scratch and resumed.
  std::vector<std::string> closes;
  REQUIRE(eventually([&] { return !(closes = f.kinds("tunnel.close", "ok")).empty(); }, 10s));
  CHECK(detail(closes[0])["reason"].as_string() == "tunnel life of 5 s reached: the agent re-authenticates");
  CHECK(f.kinds("tunnel.auth", "ok").size() >= 2);
  auto resumes = f.kinds("tunnel.reauth", "ok");
  REQUIRE_FALSE(resumes.empty());
  CHECK(detail(resumes[0])["trigger"].as_string() == "resume");
  auto s = f.api("GET", "/api/v1/sessions/" + sess.sid, "alice");
  REQUIRE(s.status == 200);
  CHECK(s.body["owner"].as_string() == "alice");
  CHECK(s.body["state"].as_string() == "active");
  sess.agent->signal(SIGTERM);
  CHECK(sess.agent->wait(20s) == 0);
}

TEST_CASE("a gateway restart, killed or stopped, keeps the session: the agent resumes it with owner and grants") {
  gateway_fixture f;
  tcp_relay net(port_of(f.tunnel));
  auto profile = f.enroll("7801377", false, {"hmc=127.0.0.1:9"}, "127.0.0.1:" + std::to_string(net.port()));
  auto sess = start_and_attach(f, profile, "alice", "TS000000377");
  REQUIRE(f.api("POST", "/api/v1/sessions/" + sess.sid + "/grants", "alice", R"({"user":"dave","scopes":["hmc"]})")
              .status == 201);
  auto check_kept = [&] {
    auto s = f.api("GET", "/api/v1/sessions/" + sess.sid, "alice");
    REQUIRE(s.status == 200);
    CHECK(s.body["state"].as_string() == "active");
    CHECK(s.body["owner"].as_string() == "alice");
    CHECK(json::serialize(s.body["grants"]).find("\"dave\"") != std::string::npos);
  };
  // A crash: the agent finds its connection gone and comes back to the next run.
  REQUIRE(f.stop(SIGKILL) == -SIGKILL);
  f.start();
  net.set_upstream(port_of(f.tunnel));
  auto back = wait_line(*sess.agent, "Reconnected to ");
  CHECK(back.find("session " + sess.sid + " resumed") != std::string::npos);
  (void)wait_line(*sess.agent, "alice attached");
  check_kept();
  // A clean stop: END restart, and the same.
  REQUIRE(f.stop(SIGTERM) == 0);
  (void)wait_line(*sess.agent, "The gateway is restarting; reconnecting");
  f.start();
  net.set_upstream(port_of(f.tunnel));
  back = wait_line(*sess.agent, "Reconnected to ");
  CHECK(back.find("session " + sess.sid + " resumed") != std::string::npos);
  check_kept();
  CHECK(f.kinds("session.end", "ok").empty());
  auto resumes = f.kinds("tunnel.reauth", "ok");
  REQUIRE(resumes.size() == 2);
  for (auto& r : resumes) CHECK(detail(r)["trigger"].as_string() == "resume");
  auto closes = f.kinds("tunnel.close", "ok");
  REQUIRE_FALSE(closes.empty());
  CHECK(detail(closes.back())["reason"].as_string() == "the gateway stops; the session is kept for its agent");
  sess.agent->signal(SIGTERM);
  CHECK(sess.agent->wait(20s) == 0);
}

TEST_CASE("a restart drops the kept row of a session the journal shows ended, the machine's live session resumes") {
  gateway_fixture f;
  tcp_relay net(port_of(f.tunnel));
  auto profile = f.enroll("7801378", false, {"hmc=127.0.0.1:9"}, "127.0.0.1:" + std::to_string(net.port()));
  auto sess = start_and_attach(f, profile, "alice", "TS000000378");
  REQUIRE(f.stop(SIGTERM) == 0);  // keeps the live session's row in state.db
  (void)wait_line(*sess.agent, "The gateway is restarting; reconnecting");
  // A second row for the machine, of a session the journal does not show open: what a crash
  // between an end and its row's delete leaves (or, before this was mended, thousands of
  // sessions ending at once). It must go without taking the live session with it.
  const auto db = f.dir / "state.db";
  auto ins = run({"sqlite3", db.string(),
                  "INSERT INTO live_sessions SELECT 'S-2026-01-01-STALE001', machine, snapshot, journal_seq, updated_at "
                  "FROM live_sessions WHERE id = '" + sess.sid + "'"});
  REQUIRE(ins.exit_code == 0);
  REQUIRE(run({"sqlite3", db.string(), "SELECT count(*) FROM live_sessions"}).out == "2\n");
  f.start();
  net.set_upstream(port_of(f.tunnel));
  auto back = wait_line(*sess.agent, "Reconnected to ");
  CHECK(back.find("session " + sess.sid + " resumed") != std::string::npos);
  CHECK(f.kinds("session.end", "ok").empty());
  CHECK(run({"sqlite3", db.string(), "SELECT id FROM live_sessions"}).out == sess.sid + "\n");
  sess.agent->signal(SIGTERM);
  CHECK(sess.agent->wait(20s) == 0);
}

TEST_CASE("a resume the gateway cannot honour is journaled as refused, and the agent goes on in a new session") {
  gateway_fixture f;
  tcp_relay net(port_of(f.tunnel));
  auto profile = f.enroll("7801378", false, {"hmc=127.0.0.1:9"}, "127.0.0.1:" + std::to_string(net.port()));
  auto sess = start_and_attach(f, profile, "alice", "TS000000378");
  // While the agent cannot reach the gateway, its owner ends the session.
  net.refuse(true);
  net.cut();
  REQUIRE(eventually([&] { return !f.kinds("tunnel.close", "ok").empty(); }, 10s));
  REQUIRE(f.api("DELETE", "/api/v1/sessions/" + sess.sid, "alice").status == 200);
  net.refuse(false);
  (void)wait_line(*sess.agent, "The gateway no longer holds session " + sess.sid);
  auto connected = wait_line(*sess.agent, "Connected to ");
  CHECK(connected.find(sess.sid) == std::string::npos);
  (void)wait_line(*sess.agent, "Session key: ");  // a new key for the new session
  std::vector<std::string> refused;
  REQUIRE(eventually([&] { return !(refused = f.kinds("tunnel.reauth", "denied")).empty(); }, 10s));
  CHECK(detail(refused[0])["trigger"].as_string() == "resume");
  CHECK(detail(refused[0])["resume"].as_string() == sess.sid);
  CHECK(detail(refused[0])["reason"].as_string() == "the session has ended");

  // The customer stops the agent while it waits to reconnect: at once, exit 0.
  auto losses = [&] {
    auto text = read_file(f.t / "agent.err");
    std::size_t n = 0;
    for (auto at = text.find("; reconnecting"); at != std::string::npos; at = text.find("; reconnecting", at + 1)) ++n;
    return n;
  };
  const auto before = losses();
  net.refuse(true);
  net.cut();
  REQUIRE(eventually([&] { return losses() > before; }, 10s));
  const auto t0 = std::chrono::steady_clock::now();
  sess.agent->signal(SIGTERM);
  CHECK(sess.agent->wait(10s) == 0);
  CHECK(seconds_since(t0) < 2.0);
}

namespace {

// The customer's HTTP proxy: Debian's tinyproxy on loopback, with Basic authentication, its
// connections logged.
struct http_proxy {
  std::filesystem::path log;
  std::uint16_t port = 0;
  std::unique_ptr<child> proc;
  http_proxy(const std::filesystem::path& dir, const std::string& user, const std::string& password) {
    int fd = listen_loopback(port, "http_proxy");  // a free port for tinyproxy's own listener
    ::close(fd);
    log = dir / "tinyproxy.log";
    std::ofstream(dir / "tinyproxy.conf") << "Port " << port << "\nListen 127.0.0.1\nTimeout 60\nAllow 127.0.0.1\n"
                                          << "MaxClients 20\nLogFile \"" << log.string() << "\"\nLogLevel Connect\n"
                                          << "BasicAuth " << user << " " << password << "\n";
    proc = std::make_unique<child>(std::vector<std::string>{"tinyproxy", "-d", "-c", (dir / "tinyproxy.conf").string()},
                                   dir / "tinyproxy.err");
    REQUIRE(eventually([&] {
      int c = connect_local(port);
      if (c >= 0) ::close(c);
      return c >= 0;
    }, 10s));
  }
  ~http_proxy() {
    proc->signal(SIGTERM);
    (void)proc->wait(10s);
  }
};

// The profile of `serial` with its gateway reached through `proxy_url`.
std::filesystem::path with_proxy(const std::filesystem::path& profile, const std::string& proxy_url) {
  auto text = read_file(profile);
  auto at = text.find("\nproxy = ");
  REQUIRE(at != std::string::npos);
  text.replace(at + 1, text.find('\n', at + 1) - at - 1, "proxy = \"" + proxy_url + "\"");
  std::filesystem::remove(profile);
  write_file_exclusive(profile, text, 0600);
  return profile;
}

}  // namespace

TEST_CASE("the agent reaches its gateway through the customer's HTTP proxy (tinyproxy, Basic authentication)") {
  gateway_fixture f;
  http_proxy proxy(f.t.path(), "cust", "s3cr3t");
  const auto via = "127.0.0.1:" + std::to_string(proxy.port);
  auto profile = with_proxy(f.enroll("7801379"), "http://cust:s3cr3t@" + via);
  auto sess = start_and_attach(f, profile, "alice", "TS000000379");
  CHECK_THAT(read_file(proxy.log), Catch::Contains("CONNECT " + f.tunnel + " HTTP/1.1"));
  auto s = f.api("GET", "/api/v1/sessions/" + sess.sid, "alice");
  REQUIRE(s.status == 200);
  CHECK(s.body["state"].as_string() == "active");

  // A wrong password: the proxy refuses, the agent says so and ends, the password unsaid.
  auto wrong = with_proxy(f.enroll("7801380"), "http://cust:b4d%70ass@" + via);  // "b4dpass"
  child agent({agent_binary(), "start", "--profile", wrong.string(), "--control", (f.t / "w.sock").string()},
              f.t / "wrong.err");
  CHECK(agent.wait(30s) == 1);
  auto err = read_file(f.t / "wrong.err");
  // 407 by the standard; tinyproxy 1.11 answers 401.
  CHECK_THAT(err, Catch::Contains("the proxy " + via + " refused to connect to " + f.tunnel + ": 40"));
  CHECK_THAT(err, Catch::Contains("the profile's proxy user or password is wrong"));
  CHECK(err.find("b4dpass") == std::string::npos);
  CHECK(err.find("b4d%70ass") == std::string::npos);
}
