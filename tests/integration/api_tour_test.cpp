// The API endpoints the session flows do not reach, through curl against a real gateway, as
// their users call them: an administrator's account changes, a console login that mints a
// token and logs out, an auditor's export and verification, the health endpoints, and the
// pair's own question. Besides its own checks, openapi_check.py validates every answer seen
// here against docs/api/openapi.yaml.
#include <boost/json/parse.hpp>

#include "core/files.hpp"
#include "tests/integration/gateway_fixture.hpp"

using namespace rsgate;
using namespace rsgate::test;
namespace json = boost::json;

TEST_CASE("the API tour: accounts, a console login, export, verification, health, the pair's question") {
  temp_dir keys;
  const auto secret = keys / "peer.secret";
  write_file_exclusive(secret, "0123456789abcdefghijklmnopqrstuvwxyzABCD\n", 0600);
  gateway_fixture f(1, "", nullptr, "\n[peer]\nsecret_file = \"" + secret.string() + "\"\n");
  f.add_user("adam", "admin");
  f.add_user("audrey", "auditor");

  // Health, readiness and metrics, without credentials.
  auto health = f.raw("GET", "/healthz", {});
  CHECK(health.first == 200);
  CHECK(f.raw("GET", "/readyz", {}).first == 200);
  auto metrics = f.raw("GET", "/metrics", {});
  CHECK(metrics.first == 200);
  CHECK(metrics.second.find("rsgate_") != std::string::npos);

  // The administrator adds henry, who gets a one-time password, then disables, enables and
  // resets him.
  auto added = f.api("POST", "/api/v1/users", "adam", R"({"user":"henry","role":"developer"})");
  REQUIRE(added.status == 201);
  auto otp = std::string(added.body["one_time_password"].as_string());
  auto users = f.api("GET", "/api/v1/users", "adam");
  REQUIRE(users.status == 200);
  CHECK(json::serialize(users.body).find("\"henry\"") != std::string::npos);
  CHECK(f.api("POST", "/api/v1/users/henry/disable", "adam").status == 200);
  CHECK_FALSE(f.login(R"({"user":"henry","password":")" + otp + R"(","new_password":"henry's own password"})"));
  CHECK(f.api("POST", "/api/v1/users/henry/enable", "adam").status == 200);
  auto reset = f.api("POST", "/api/v1/users/henry/password", "adam");
  REQUIRE(reset.status == 200);
  otp = std::string(reset.body["one_time_password"].as_string());
  auto totp = f.api("POST", "/api/v1/users/henry/totp", "adam");
  CHECK(totp.status == 200);
  CHECK(totp.body["totp"].as_object()["uri"].as_string().starts_with("otpauth://totp/"));

  // henry signs in on the console with the one-time password and his TOTP (an enrolment
  // was just made), chooses his own password, mints a token for rsgate connect, and logs out.
  auto uri = std::string(totp.body["totp"].as_object()["uri"].as_string());
  auto henry = f.login(R"({"user":"henry","password":")" + otp + R"(","new_password":"henry's own password","totp":")" +
                       oath_code(uri) + R"("})");
  REQUIRE(henry);
  auto minted = f.raw("POST", "/api/v1/tokens", {henry->cookie, henry->csrf}, R"({"expires_in":"12h"})");
  CHECK(minted.first == 201);
  auto token = std::string(json::parse(minted.second).as_object()["token"].as_string());
  CHECK(f.raw("GET", "/api/v1/me", {"Authorization: Bearer " + token}).first == 200);
  CHECK(f.raw("POST", "/api/v1/tokens", {henry->cookie}, R"({"expires_in":"12h"})").first == 403);  // no CSRF
  auto out = f.raw("POST", "/api/v1/logout", {henry->cookie, henry->csrf});
  CHECK(out.first == 200);
  CHECK(f.raw("GET", "/api/v1/me", {henry->cookie}).first == 401);

  // The auditor exports the journal both ways and has it verified.
  auto csv = f.raw("GET", "/api/v1/journal/export?format=csv&kind=admin.user", {"Authorization: Bearer " + f.tokens.at("audrey")});
  CHECK(csv.first == 200);
  CHECK(csv.second.starts_with("seq,"));
  CHECK(csv.second.find("henry") != std::string::npos);
  auto jsonl = f.raw("GET", "/api/v1/journal/export?format=jsonl&kind=user.login", {"Authorization: Bearer " + f.tokens.at("audrey")});
  CHECK(jsonl.first == 200);
  CHECK(jsonl.second.find("\"actor\":\"henry\"") != std::string::npos);
  auto verify = f.api("GET", "/api/v1/journal/verify", "audrey");
  CHECK(verify.status == 200);
  CHECK(verify.body["ok"].as_bool());

  // A session handed over: alice attaches and transfers it to bob; it shows in their lists,
  // in the PMR lookup and in the journal.
  auto profile = f.enroll("7801720", false, {"hmc=127.0.0.1:9"});
  auto sess = start_and_attach(f, profile, "alice", "TS000001720");
  auto mine = f.api("GET", "/api/v1/sessions?state=active", "alice");
  REQUIRE(mine.status == 200);
  CHECK(mine.body["sessions"].as_array().size() == 1);
  auto moved = f.api("POST", "/api/v1/sessions/" + sess.sid + "/transfer", "alice", R"({"user":"bob"})");
  CHECK(moved.status == 200);
  CHECK(moved.body["owner"].as_string() == "bob");
  CHECK(f.api("GET", "/api/v1/sessions", "bob").body["sessions"].as_array().size() == 1);
  CHECK(f.api("GET", "/api/v1/sessions", "alice").body["sessions"].as_array().empty());
  auto by_pmr = f.api("GET", "/api/v1/pmrs/TS000001720/sessions", "audrey");
  CHECK(by_pmr.status == 200);
  CHECK(json::serialize(by_pmr.body).find(sess.sid) != std::string::npos);
  auto entries = f.api("GET", "/api/v1/journal?session=" + sess.sid + "&kind=session.transfer", "audrey");
  REQUIRE(entries.status == 200);
  CHECK(entries.body["entries"].as_array().size() == 1);

  // The pair's question, with its secret and without.
  const std::string peer = "Authorization: RsgatePeer 0123456789abcdefghijklmnopqrstuvwxyzABCD";
  auto where = f.raw("GET", "/api/v1/machines/9009-42A*7801234/where", {peer});
  CHECK(where.first == 200);
  CHECK(json::parse(where.second).as_object()["connected"].as_bool() == false);
  CHECK(f.raw("GET", "/api/v1/machines/9009-42A*7801234/where", {}).first == 401);
}
