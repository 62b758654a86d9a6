// A primary and a backup gateway (issue 9, SPEC §2 step 1): the machine enrolled on one and
// imported on the other, the agent on the primary, the primary killed; the agent must be on
// the backup within 10 s, and the two journals together tell the whole story.
#include <csignal>
#include <thread>

#include <catch2/catch.hpp>

#include "core/files.hpp"
#include "tests/integration/gateway_fixture.hpp"

using namespace rsgate;
using namespace rsgate::test;
using namespace std::chrono_literals;
namespace json = boost::json;

namespace {

std::vector<json::object> lines_of(const std::string& out) {
  std::vector<json::object> v;
  std::istringstream in(out);
  for (std::string l; std::getline(in, l);) v.push_back(json::parse(l).as_object());
  return v;
}

json::object agent_status(const std::string& control) {
  auto r = run({agent_binary(), "status", "--json", "--control", control});
  REQUIRE(r.exit_code == 0);
  return json::parse(r.out).as_object();
}

}  // namespace

TEST_CASE("machine import: the other gateway of a pair learns the machine from its profile, journaled") {
  gateway_fixture primary;
  gateway_fixture backup(1, "", &primary);
  auto profile = primary.enroll("7801391", true);
  auto imp = rsgate_cmd({"machine", "import", "--profile", profile.string(), "--data", backup.dir.string()});
  INFO(imp.err);
  REQUIRE(imp.exit_code == 0);
  CHECK_THAT(imp.out, Catch::Contains("imported 9009-42A*7801391 from " + profile.string() + " (md5 allowed)"));
  // The secret is not printed, and it is not in the journal.
  auto secret_at = read_file(profile).find("secret = ");
  REQUIRE(secret_at != std::string::npos);
  auto secret = read_file(profile).substr(secret_at + 10, 32);  // after the opening quote
  REQUIRE(secret.find_first_of("\"'\n") == std::string::npos);
  CHECK(imp.out.find(secret) == std::string::npos);
  CHECK(imp.err.find(secret) == std::string::npos);

  // Twice is refused (exit 1), and the refusal is journaled; --replace imports it again.
  auto again = rsgate_cmd({"machine", "import", "--profile", profile.string(), "--data", backup.dir.string()});
  CHECK(again.exit_code == 1);
  CHECK_THAT(again.err, Catch::Contains("machine 9009-42A*7801391 is enrolled already"));
  CHECK(rsgate_cmd({"machine", "import", "--profile", profile.string(), "--replace", "--data", backup.dir.string()})
            .exit_code == 0);
  auto q = rsgate_cmd({"journal", "query", "--data", backup.dir.string(), "--kind", "admin.machine", "--format", "json"});
  REQUIRE(q.exit_code == 0);
  auto entries = lines_of(q.out);
  REQUIRE(entries.size() == 3);
  for (auto& e : entries) CHECK(e["machine"].as_string() == "9009-42A*7801391");
  CHECK(entries[0]["outcome"].as_string() == "ok");
  CHECK(entries[1]["outcome"].as_string() == "denied");
  CHECK(entries[2]["outcome"].as_string() == "ok");
  CHECK(entries[0]["detail"].as_object().at("action") == "import");
  CHECK(q.out.find(secret) == std::string::npos);

  // A profile that is not one: exit 2, the refusal journaled (outcome error), nothing else.
  auto bad = backup.t / "bad.toml";
  write_file_exclusive(bad, "[machine]\ntype = \"9009\"\n", 0600);
  auto r = rsgate_cmd({"machine", "import", "--profile", bad.string(), "--data", backup.dir.string()});
  CHECK(r.exit_code == 2);
  auto errors = backup.kinds("admin.machine", "error");
  REQUIRE(errors.size() == 1);
  CHECK(detail(errors[0])["action"].as_string() == "import");
  CHECK_THAT(std::string(detail(errors[0])["reason"].as_string()), Catch::Contains("bad.toml"));
  CHECK(backup.kinds("admin.machine", "ok").size() == 2);
}

TEST_CASE("primary and backup: SIGKILL the primary and the agent is on the backup within 10 s") {
  gateway_fixture primary;
  gateway_fixture backup(1, "", &primary);
  auto profile = primary.enroll("7801390", false, {"hmc=127.0.0.1:9"}, "", backup.tunnel);
  REQUIRE(rsgate_cmd({"machine", "import", "--profile", profile.string(), "--data", backup.dir.string()}).exit_code == 0);

  auto sess = start_and_attach(primary, profile, "alice", "TS000000390");
  auto st = agent_status(sess.control);
  CHECK(st["gateway"].as_string() == primary.tunnel);  // the customer sees where the tunnel is

  const auto t0 = std::chrono::steady_clock::now();
  primary.gw->signal(SIGKILL);
  auto on_backup = wait_line(*sess.agent, "Connected to ");
  const double took = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  INFO("failover took " << took << " s");
  CHECK(took < 10.0);
  CHECK_THAT(on_backup, Catch::Contains("Connected to " + backup.tunnel + " as 9009-42A*7801390"));
  auto key_line = wait_line(*sess.agent, "Session key: ");
  (void)primary.gw->wait(10s);
  primary.gw.reset();
  st = agent_status(sess.control);
  CHECK(st["gateway"].as_string() == backup.tunnel);

  // The backup never had the old session: it says so in its journal and gives a new one, to
  // which a representative attaches there.
  auto refused = backup.kinds("tunnel.reauth", "denied");
  REQUIRE(refused.size() == 1);
  CHECK(detail(refused[0])["resume"].as_string() == sess.sid);
  CHECK(detail(refused[0])["reason"].as_string() == "no such session of this machine");
  auto att = backup.api("POST", "/api/v1/sessions/attach", "alice",
                        json::serialize(json::object{{"machine", "9009-42A*7801390"}, {"pmr", "TS000000390"}}));
  CHECK(att.status == 201);

  // Both journals together, merged by time: the tunnel on the primary, then on the backup.
  auto q = rsgate_cmd({"journal", "query", "--db", (primary.dir / "journal.db").string(), "--db",
                       (backup.dir / "journal.db").string(), "--machine", "9009-42A*7801390", "--kind", "tunnel.auth",
                       "--format", "json"});
  REQUIRE(q.exit_code == 0);
  auto auths = lines_of(q.out);
  REQUIRE(auths.size() == 2);
  CHECK(auths[0]["gateway"].as_string() == "gw-flow");
  CHECK(auths[1]["gateway"].as_string() == "gw-backup");
  auto pmr = rsgate_cmd({"journal", "query", "--db", (primary.dir / "journal.db").string(), "--db",
                         (backup.dir / "journal.db").string(), "--pmr", "TS000000390", "--kind", "session.attach",
                         "--format", "json"});
  REQUIRE(pmr.exit_code == 0);
  CHECK(lines_of(pmr.out).size() == 2);
  sess.agent->signal(SIGTERM);
  CHECK(sess.agent->wait(20s) == 0);
}

TEST_CASE("a pair tells a representative where the machine is: the peer asked with the pair's secret, both journaled") {
  temp_dir keys;
  const auto secret = keys / "peer.secret";
  write_file_exclusive(secret, "0123456789abcdefghijklmnopqrstuvwxyzABCD\n", 0600);
  const std::string answers = "\n[peer]\nsecret_file = \"" + secret.string() + "\"\n";
  gateway_fixture primary(1, "", nullptr, answers);
  gateway_fixture backup(1, "", &primary,
                         answers + "url = \"https://" + primary.https + "\"\nca = \"" + (primary.dir / "ca.pem").string() +
                             "\"\ntimeout_ms = 2000\n");
  auto profile = primary.enroll("7801392", false, {"hmc=127.0.0.1:9"}, "", backup.tunnel);
  REQUIRE(rsgate_cmd({"machine", "import", "--profile", profile.string(), "--data", backup.dir.string()}).exit_code == 0);
  auto sess = start_and_attach(primary, profile, "alice", "TS000000392");
  const auto machine_attach = json::serialize(json::object{{"machine", "9009-42A*7801392"}, {"pmr", "TS000000392"}});

  // On the backup, attaching by machine: 409 naming the gateway that holds it.
  auto there = backup.api("POST", "/api/v1/sessions/attach", "bob", machine_attach);
  CHECK(there.status == 409);
  CHECK(there.body["error"].as_object()["code"].as_string() == "elsewhere");
  CHECK_THAT(std::string(there.body["error"].as_object()["message"].as_string()),
             Catch::Contains("machine 9009-42A*7801392 is connected to the other gateway of this pair, https://" +
                             primary.https + ": attach there"));
  auto denied = backup.kinds("session.attach", "denied");
  REQUIRE(denied.size() == 1);
  CHECK(detail(denied[0])["peer_answer"].as_string() == "connected");
  CHECK(detail(denied[0])["peer"].as_string() == "https://" + primary.https);
  // The primary journaled the question.
  auto asked = primary.kinds("audit.query", "ok");
  REQUIRE(asked.size() == 1);
  CHECK(json::parse(asked[0]).as_object()["actor"].as_string() == "peer");
  CHECK(json::parse(asked[0]).as_object()["machine"].as_string() == "9009-42A*7801392");
  CHECK(detail(asked[0])["connected"].as_bool());

  // A machine neither holds: the plain 404, with what the peer said.
  auto nowhere = backup.api("POST", "/api/v1/sessions/attach", "bob",
                            json::serialize(json::object{{"machine", "9009-42A*7801393"}, {"pmr", "TS000000392"}}));
  CHECK(nowhere.status == 404);
  REQUIRE(backup.kinds("session.attach", "denied").size() == 2);
  CHECK(detail(backup.kinds("session.attach", "denied")[1])["peer_answer"].as_string() == "not connected");

  // Only the pair's secret opens the endpoint: others get 401, journaled; input is strict.
  auto where = "/api/v1/machines/9009-42A*7801392/where";
  CHECK(primary.raw("GET", where, {}).first == 401);
  CHECK(primary.raw("GET", where, {"Authorization: RsgatePeer wrong-secret-of-the-right-length-xxxxx"}).first == 401);
  CHECK(primary.raw("GET", where, {"Authorization: Bearer " + primary.tokens.at("alice")}).first == 401);
  const std::string good = "Authorization: RsgatePeer 0123456789abcdefghijklmnopqrstuvwxyzABCD";
  auto ok = primary.raw("GET", where, {good});
  CHECK(ok.first == 200);
  CHECK(ok.second == R"({"machine":"9009-42A*7801392","connected":true})");
  CHECK(primary.raw("GET", std::string(where) + "?x=1", {good}).first == 400);
  CHECK(primary.raw("GET", "/api/v1/machines/9009-42A/where", {good}).first == 400);
  auto refusals = primary.kinds("user.login", "denied");
  CHECK(refusals.size() >= 3);
  for (auto& l : refusals) CHECK(detail(l)["method"].as_string() == "peer");

  // A peer that does not answer (frozen: it accepts, never speaks TLS): the attach is still
  // answered within the peer timeout (2 s here), saying so.
  primary.gw->signal(SIGSTOP);
  auto t_frozen = std::chrono::steady_clock::now();
  auto frozen = backup.api("POST", "/api/v1/sessions/attach", "bob",
                           json::serialize(json::object{{"machine", "9009-42A*7801394"}, {"pmr", "TS000000392"}}));
  const double waited = std::chrono::duration<double>(std::chrono::steady_clock::now() - t_frozen).count();
  primary.gw->signal(SIGCONT);
  CHECK(frozen.status == 404);
  CHECK(waited >= 1.5);
  CHECK(waited < 5.0);
  CHECK_THAT(std::string(detail(backup.kinds("session.attach", "denied").back())["peer_answer"].as_string()),
             Catch::StartsWith("unreachable: "));

  // The primary gone: the backup's attach is answered at once, with why.
  primary.gw->signal(SIGKILL);
  (void)primary.gw->wait(10s);
  primary.gw.reset();
  (void)wait_line(*sess.agent, "Connected to " + backup.tunnel);
  auto t0 = std::chrono::steady_clock::now();
  auto now_here = backup.api("POST", "/api/v1/sessions/attach", "bob", machine_attach);
  CHECK(std::chrono::steady_clock::now() - t0 < 5s);
  CHECK(now_here.status == 201);  // the machine is here now: no question asked
  sess.agent->signal(SIGTERM);
  CHECK(sess.agent->wait(20s) == 0);
  auto gone = backup.api("POST", "/api/v1/sessions/attach", "bob",
                         json::serialize(json::object{{"machine", "9009-42A*7801393"}, {"pmr", "TS000000392"}}));
  CHECK(gone.status == 404);
  auto last = backup.kinds("session.attach", "denied").back();
  CHECK_THAT(std::string(detail(last)["peer_answer"].as_string()), Catch::StartsWith("unreachable: cannot connect"));
}

TEST_CASE("serve refuses a peer secret that is short or readable by others") {
  temp_dir t;
  auto dir = t / "gw";
  init_data_dir(dir, "gw-peer", true);
  for (auto [text, mode, expect] : {std::tuple{"short\n", 0600, "must be 32 to 256 printable characters"},
                                    std::tuple{"0123456789abcdefghijklmnopqrstuvwxyzABCD", 0644, "chmod 600"}}) {
    auto secret = t / ("s" + std::to_string(mode) + ".secret");
    write_file_exclusive(secret, text, mode);
    auto cfg = t / ("c" + std::to_string(mode) + ".toml");
    std::ofstream(cfg) << read_file(dir / "rsgate.toml") << "\n[peer]\nsecret_file = \"" << secret.string() << "\"\n";
    auto r = rsgate_cmd({"serve", "--config", cfg.string()});
    CHECK(r.exit_code == 2);
    CHECK_THAT(r.err, Catch::Contains(expect));
  }
}
