// SIGTERM drains a gateway of a pair (issue 9, docs/operations.md §7) when
// gateway.drain_seconds is set: no new tunnel or attach; an agent whose session nobody holds
// is handed to the other gateway at once (END `move`); one a representative holds stays until
// its session ends or the drain's deadline, then moves too; the gateway then stops as before.
// Attaches that race the drain's start are each either attached or refused, and journaled
// as such. Two real gateways sharing a CA, real agents, curl.
#include <atomic>
#include <csignal>
#include <fstream>
#include <thread>

#include <catch2/catch.hpp>

#include "core/files.hpp"
#include "tests/integration/gateway_fixture.hpp"

using namespace rsgate;
using namespace rsgate::test;
using namespace std::chrono_literals;
namespace json = boost::json;

namespace {

// Restarts `f` with gateway.drain_seconds set (its ports change: enroll afterwards).
void set_drain(gateway_fixture& f, int seconds) {
  REQUIRE(f.stop() == 0);
  auto cfg = read_file(f.dir / "rsgate.toml");
  auto at = cfg.find("[gateway]\n");
  REQUIRE(at != std::string::npos);
  cfg.insert(at + 10, "drain_seconds = " + std::to_string(seconds) + "\n");
  std::ofstream(f.dir / "rsgate.toml") << cfg;
  f.start();
}

std::filesystem::path pair_profile(gateway_fixture& primary, gateway_fixture& backup, const std::string& serial) {
  auto profile = primary.enroll(serial, false, {"hmc=127.0.0.1:9"}, "", backup.tunnel);
  REQUIRE(rsgate_cmd({"machine", "import", "--profile", profile.string(), "--data", backup.dir.string()}).exit_code == 0);
  return profile;
}

std::string gateway_of(const std::string& control) {
  auto r = run({agent_binary(), "status", "--json", "--control", control});
  REQUIRE(r.exit_code == 0);
  return std::string(json::parse(r.out).as_object()["gateway"].as_string());
}

double since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace

TEST_CASE("SIGTERM drains: an unheld agent moves at once, a held one at the deadline, no attach meanwhile") {
  gateway_fixture primary;
  set_drain(primary, 6);
  gateway_fixture backup(1, "", &primary);
  auto idle_profile = pair_profile(primary, backup, "7801701");
  auto held_profile = pair_profile(primary, backup, "7801702");
  const auto idle_control = (primary.t / "idle.sock").string();
  child idle({agent_binary(), "start", "--profile", idle_profile.string(), "--control", idle_control},
             primary.t / "idle.err");
  (void)wait_line(idle, "Session key: ");
  auto held = start_and_attach(primary, held_profile, "alice", "TS000000702");
  CHECK(gateway_of(held.control) == primary.tunnel);

  const auto t0 = std::chrono::steady_clock::now();
  primary.gw->signal(SIGTERM);
  // Nobody held the idle machine's session: it is on the backup at once, with a new session.
  (void)wait_line(idle, "is stopping and hands this agent to the other gateway");
  CHECK_THAT(wait_line(idle, "Connected to "), Catch::Contains("Connected to " + backup.tunnel));
  CHECK(since(t0) < 5.0);
  // Meanwhile the draining gateway takes no new owner (503, journaled) and no new tunnel.
  auto refused = primary.api("POST", "/api/v1/sessions/attach", "bob",
                             json::serialize(json::object{{"machine", "9009-42A*7801702"}, {"pmr", "TS000000703"}}));
  CHECK(refused.status == 503);
  CHECK(refused.body["error"].as_object()["code"].as_string() == "draining");
  // The held session stays where its owner works until the deadline.
  CHECK(gateway_of(held.control) == primary.tunnel);
  CHECK_THAT(wait_line(*held.agent, "Connected to "), Catch::Contains("Connected to " + backup.tunnel));
  const double moved = since(t0);
  INFO("the held agent moved after " << moved << " s");
  CHECK(moved >= 5.0);
  CHECK(moved < 20.0);
  CHECK(primary.gw->wait(30s) == 0);
  primary.gw.reset();

  auto drains = primary.kinds("gateway.drain", "ok");
  REQUIRE(drains.size() == 1);
  CHECK(detail(drains[0])["drain_seconds"].as_int64() == 6);
  CHECK(detail(drains[0])["signal"].as_string() == "SIGTERM");
  CHECK(primary.kinds("session.attach", "denied").size() == 1);
  std::vector<std::string> reasons;
  for (auto& l : primary.kinds("tunnel.close", "ok")) reasons.emplace_back(detail(l)["reason"].as_string());
  CHECK(std::count(reasons.begin(), reasons.end(), "the gateway drains; the agent moves to the other gateway") == 1);
  CHECK(std::count(reasons.begin(), reasons.end(), "the gateway stopped draining; the agent moves to the other gateway") == 1);
  idle.signal(SIGTERM);
  held.agent->signal(SIGTERM);
  CHECK(idle.wait(30s) == 0);
  CHECK(held.agent->wait(30s) == 0);
}

TEST_CASE("a drain ends as soon as the last held session ends, HTTPS serves until then") {
  gateway_fixture primary;
  set_drain(primary, 120);
  gateway_fixture backup(1, "", &primary);
  auto profile = pair_profile(primary, backup, "7801703");
  auto held = start_and_attach(primary, profile, "alice", "TS000000704");
  const auto t0 = std::chrono::steady_clock::now();
  primary.gw->signal(SIGTERM);
  REQUIRE(eventually([&] { return primary.kinds("gateway.drain", "ok").size() == 1; }));
  // The owner ends the session on the draining gateway: the customer gets its receipt, and the
  // gateway, holding nothing more, stops long before its 120 s.
  REQUIRE(primary.api("DELETE", "/api/v1/sessions/" + held.sid, "alice").status == 200);
  (void)wait_line(*held.agent, "Receipt: ");
  CHECK(held.agent->wait(30s) == 0);
  CHECK(primary.gw->wait(30s) == 0);
  CHECK(since(t0) < 30.0);
  primary.gw.reset();
}

TEST_CASE("attaches racing the start of a drain: each is attached and journaled, or refused and journaled, never both") {
  constexpr int kAgents = 6;
  gateway_fixture f;
  set_drain(f, 5);
  std::vector<std::unique_ptr<child>> agents;
  std::vector<std::string> keys;
  for (int i = 0; i < kAgents; ++i) {
    auto profile = f.enroll("78017" + std::to_string(10 + i));
    agents.push_back(std::make_unique<child>(
        std::vector<std::string>{agent_binary(), "start", "--profile", profile.string(), "--control",
                                 (f.t / ("r" + std::to_string(i) + ".sock")).string()},
        f.t / ("r" + std::to_string(i) + ".err")));
    auto line = wait_line(*agents.back(), "Session key: ");
    keys.push_back(line.substr(line.find(": ") + 2));
  }
  // A held session keeps the drain (and HTTPS) going to its deadline; the other attaches and
  // the SIGTERM leave together.
  REQUIRE(f.api("POST", "/api/v1/sessions/attach", "alice",
                json::serialize(json::object{{"session_key", keys[0]}, {"pmr", "TS000000700"}}))
              .status == 201);
  keys.erase(keys.begin());
  std::atomic<int> ready{0};
  std::atomic<bool> go{false};
  std::vector<int> status(kAgents - 1, -1);
  std::vector<std::thread> reps;
  for (int i = 0; i < kAgents - 1; ++i)
    reps.emplace_back([&, i] {
      ++ready;
      while (!go) std::this_thread::yield();
      std::this_thread::sleep_for(std::chrono::milliseconds(25 * i));  // spread across the signal
      status[i] = f.api("POST", "/api/v1/sessions/attach", i % 2 ? "alice" : "bob",
                        json::serialize(json::object{{"session_key", keys[i]}, {"pmr", "TS00000071" + std::to_string(i)}}))
                      .status;
    });
  while (ready < kAgents - 1) std::this_thread::yield();
  go = true;
  std::this_thread::sleep_for(std::chrono::milliseconds(60));
  f.gw->signal(SIGTERM);
  for (auto& r : reps) r.join();
  CHECK(f.gw->wait(60s) == 0);  // the drain's 5 s deadline, then the stop
  f.gw.reset();

  int attached = 1, refused = 0;  // alice's first attach
  for (int s : status) {
    INFO("attach answered " << s);
    CHECK((s == 201 || s == 503));
    attached += s == 201;
    refused += s == 503;
  }
  // The journal tells the same story, attach by attach: one entry each, the same outcome.
  CHECK(static_cast<int>(f.kinds("session.attach", "ok").size()) == attached);
  auto denied = f.kinds("session.attach", "denied");
  CHECK(static_cast<int>(denied.size()) == refused);
  for (auto& d : denied) CHECK(detail(d)["reason"].as_string().find("this gateway is stopping") != std::string::npos);
  CHECK(f.kinds("gateway.drain", "ok").size() == 1);
  for (auto& a : agents) a->signal(SIGTERM);
  auto v = rsgate_cmd({"journal", "verify", "--data", f.dir.string(), "--pubkey", (f.dir / "keys/journal-signing.pub").string()});
  INFO(v.out << v.err);
  CHECK(v.exit_code == 0);
}
