// A grant's terms changed by its owner (PATCH /sessions/{id}/grants/{gid}) through the real
// programs: the narrowed grant closes the grantee's channel it no longer covers at once, the
// new scope opens, the customer sees the new terms, the journal has the change before it
// took effect, and the session's receipt lists it under the grant.
#include <boost/json/parse.hpp>
#include <csignal>
#include <fstream>

#include "tests/integration/gateway_fixture.hpp"
#include "tests/support/echo_server.hpp"

using namespace rsgate;
using namespace rsgate::test;
namespace json = boost::json;
using namespace std::chrono_literals;

TEST_CASE("the owner narrows and extends a grant: an uncovered channel closes, the receipt lists the change") {
  std::signal(SIGPIPE, SIG_IGN);
  gateway_fixture f;
  echo_server echo;
  const auto target = "127.0.0.1:" + std::to_string(echo.port());
  auto profile = f.enroll("7801610", false, {"hmc=" + target, "vios=" + target});
  auto sess = start_and_attach(f, profile, "alice", "TS000001610");
  const auto grants = "/api/v1/sessions/" + sess.sid + "/grants";
  REQUIRE(f.api("POST", grants, "alice", R"({"user":"dave","scopes":["hmc"],"expires_in":"1h"})").status == 201);
  (void)wait_line(*sess.agent, "alice granted dave access to hmc");

  // dave's channel to hmc carries data.
  auto [conn, port] = connect_for(f, "dave", sess.sid, "hmc", "ssh");
  int s = connect_local(port);
  REQUIRE(s >= 0);
  auto data = random_bytes(20'000);
  CHECK(echo_back(s, data) == data);  // and it stays open

  // Refusals first: only the owner, only a live grant, only offered scopes, strict input.
  CHECK(f.api("PATCH", grants + "/G1", "bob", R"({"expires_in":"2h"})").status == 403);
  CHECK(f.api("PATCH", grants + "/G9", "alice", R"({"expires_in":"2h"})").status == 404);
  CHECK(f.api("PATCH", grants + "/G1", "alice", R"({"scopes":["hypervisor"]})").status == 400);
  CHECK(f.api("PATCH", grants + "/G1", "alice", R"({})").status == 400);
  CHECK(f.api("PATCH", grants + "/G1", "alice", R"({"user":"bob"})").status == 400);
  CHECK(f.api("PATCH", grants + "/G1", "alice", R"({"expires_in":"8d"})").status == 400);

  // Narrowed to vios and extended to 3 h: the hmc channel closes at once.
  auto changed = f.api("PATCH", grants + "/G1", "alice", R"({"scopes":["vios"],"expires_in":"3h"})");
  REQUIRE(changed.status == 200);
  auto g = changed.body["grants"].as_array()[0].as_object();
  CHECK(json::serialize(g["scopes"]) == R"(["vios"])");
  (void)wait_line(*sess.agent, "alice granted dave access to vios");
  std::vector<std::string> closes;
  REQUIRE(eventually([&] { return !(closes = f.kinds("channel.close", "ok")).empty(); }, 10s));
  CHECK(detail(closes[0])["reason"].as_string() == "the grant no longer covers it");
  char b;
  CHECK(::recv(s, &b, 1, 0) <= 0);  // the representative's end sees it go
  ::close(s);
  CHECK(f.api("POST", "/api/v1/sessions/" + sess.sid + "/channels", "dave", R"({"scope":"hmc","access_type":"ssh"})")
            .status == 403);
  auto [vconn, vport] = connect_for(f, "dave", sess.sid, "vios", "ssh");
  int v = connect_local(vport);
  REQUIRE(v >= 0);
  CHECK(round_trip(v, data) == data);
  ::close(v);

  // The journal: the change, before the close it caused.
  auto grants_journaled = f.kinds("session.grant", "ok");
  REQUIRE(grants_journaled.size() == 2);
  auto d = detail(grants_journaled[1]);
  CHECK(d["change"].as_bool());
  CHECK(d["grant"].as_string() == "G1");
  CHECK(json::serialize(d["scopes"]) == R"(["vios"])");
  CHECK(json::parse(grants_journaled[1]).as_object()["seq"].as_int64() <
        json::parse(closes[0]).as_object()["seq"].as_int64());
  // The three refusals of the state (not owner, no such grant, a scope not offered); malformed
  // requests are 400 before any decision, as for a new grant.
  CHECK(f.kinds("session.grant", "denied").size() == 3);

  // The customer stops; the receipt lists the change under G1.
  sess.agent->signal(SIGTERM);
  auto receipt_line = wait_line(*sess.agent, "Receipt: ");
  auto file = receipt_line.substr(receipt_line.find("Receipt: ") + 9);
  auto text = read_file(file);
  INFO(text);
  CHECK(text.find(R"(\"changes\":[{\"at\":)") != std::string::npos);
  CHECK(run({agent_binary(), "receipt", "verify", file, "--profile", profile.string()}).exit_code == 0);
  CHECK(sess.agent->wait(20s) == 0);
}
