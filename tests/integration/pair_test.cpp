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

  // A profile that is not one: exit 2, nothing enrolled.
  auto bad = backup.t / "bad.toml";
  write_file_exclusive(bad, "[machine]\ntype = \"9009\"\n", 0600);
  auto r = rsgate_cmd({"machine", "import", "--profile", bad.string(), "--data", backup.dir.string()});
  CHECK(r.exit_code == 2);
  CHECK(rsgate_cmd({"machine", "list", "--data", backup.dir.string()}).out.find("9009-42A*7801391") != std::string::npos);
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
