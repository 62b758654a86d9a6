// Administration over the API, in process (service_admin.cpp): accounts and machines as an
// administrator manages them, refused to every other role, each change journaled before it
// takes effect, concurrent changes of one account or machine decided once.
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <catch2/catch.hpp>
#include <algorithm>
#include <atomic>
#include <thread>

#include "auth/totp.hpp"
#include "gateway/service.hpp"
#include "protocol/profile.hpp"
#include "tests/gateway/service_fixture.hpp"

using namespace rsgate;
using namespace rsgate::gateway;
using namespace rsgate::test;
namespace json = boost::json;

namespace {

// "action:outcome:actor" of the journal's entries of `kind`, in order.
std::vector<std::string> admin_log(api_fixture& f, const std::string& kind) {
  journal::reader rd({f.layout.journal_db()});
  journal::filter q;
  q.kind = kind;
  std::vector<std::string> out;
  for (auto& e : rd.query(q).entries)
    out.push_back(std::string(json::parse(e.detail).as_object()["action"].as_string()) + ":" +
                  std::string(journal::to_string(e.result)) + ":" + e.actor);
  return out;
}

std::string secret_of(const std::string& uri) {
  auto at = uri.find("secret=");
  return *auth::base32_decode(uri.substr(at + 7, uri.find('&', at) - at - 7));
}

}  // namespace

TEST_CASE("admin API: only administrators, every refusal journaled") {
  api_fixture f;
  const std::vector<std::pair<std::string, std::string>> routes = {
      {"GET", "/api/v1/users"},
      {"POST", "/api/v1/users"},
      {"POST", "/api/v1/users/dave/disable"},
      {"POST", "/api/v1/users/dave/enable"},
      {"POST", "/api/v1/users/dave/password"},
      {"POST", "/api/v1/users/dave/totp"},
      {"GET", "/api/v1/machines"},
      {"POST", "/api/v1/machines"},
      {"GET", "/api/v1/machines/9009-42A*7801234/profile"},
      {"DELETE", "/api/v1/machines/9009-42A*7801234"},
  };
  for (auto who : {"alice", "dave", "audrey"})
    for (auto& [method, target] : routes) {
      INFO(who << " " << method << " " << target);
      auto body = method == "POST" && target == "/api/v1/users" ? R"({"user":"x1","role":"developer"})"
                  : target == "/api/v1/machines" && method == "POST"
                      ? R"({"type":"9009","model":"42A","serial":"7800001","scopes":["hmc=127.0.0.1:22"],"gateway":"gw:4433"})"
                      : "";
      auto r = f.call(method, target, who, body);
      CHECK(r.status == 403);
      CHECK(f.code(r) == "forbidden");
    }
  CHECK(f.count("admin.user", journal::outcome::denied) + f.count("admin.machine", journal::outcome::denied) == 30);
  CHECK(f.call("GET", "/api/v1/users", "root").status == 200);
  // Someone else's token: admins only.
  CHECK(f.call("POST", "/api/v1/tokens", "alice", R"({"user":"bob"})").status == 403);
}

TEST_CASE("admin API: accounts added, disabled, enabled, their password and TOTP reset") {
  api_fixture f;
  auto users = f.obj(f.call("GET", "/api/v1/users", "root"))["users"].as_array();
  CHECK(users.size() == 6);
  CHECK(json::serialize(users).find("argon2") == std::string::npos);
  // A representative with a one-time password: the answer holds it and the TOTP enrolment.
  auto added = f.call("POST", "/api/v1/users", "root", R"({"user":"erin","role":"representative"})");
  REQUIRE(added.status == 201);
  auto a = f.obj(added);
  CHECK(a["must_change_password"].as_bool());
  auto pw = std::string(a["one_time_password"].as_string());
  auto& totp = a["totp"].as_object();
  auto uri = std::string(totp["uri"].as_string());
  CHECK(uri.starts_with("otpauth://totp/rsgate:erin?secret="));
  CHECK(std::string(totp["qr_svg"].as_string()).starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\""));
  CHECK(totp["recovery_codes"].as_array().size() == 10);
  // She signs in with them (changing the password).
  auto code = auth::totp_code(secret_of(uri), auth::totp_step(system_clock::instance().now()));
  CHECK(f.call("POST", "/api/v1/login", "",
               R"({"user":"erin","password":")" + pw + R"(","new_password":"erin's chosen password","totp":")" + code + R"("})")
            .status == 200);
  // A developer with a password given: no TOTP, nothing secret in the answer.
  auto dev = f.call("POST", "/api/v1/users", "root", R"({"user":"fred","role":"developer","password":"fred's long password"})");
  REQUIRE(dev.status == 201);
  CHECK_FALSE(f.obj(dev).contains("totp"));
  CHECK_FALSE(f.obj(dev).contains("one_time_password"));
  // Refusals.
  CHECK(f.call("POST", "/api/v1/users", "root", R"({"user":"erin","role":"developer"})").status == 409);
  CHECK(f.call("POST", "/api/v1/users", "root", R"({"user":"x","role":"boss"})").status == 400);
  CHECK(f.call("POST", "/api/v1/users", "root", R"({"user":"x","role":"developer","password":"short"})").status == 400);
  CHECK(f.call("POST", "/api/v1/users", "root", R"({"user":"x","role":"developer","admin":true})").status == 400);
  CHECK(f.call("POST", "/api/v1/users/nobody/disable", "root").status == 404);
  CHECK(f.call("POST", "/api/v1/users/root/disable", "root").status == 409);
  CHECK(f.call("POST", "/api/v1/users/erin/enable", "root").status == 409);
  CHECK(f.call("POST", "/api/v1/users/erin/frobnicate", "root").status == 404);
  // disable / enable: her token stops and works again.
  CHECK(f.call("POST", "/api/v1/users/dave/disable", "root").status == 200);
  CHECK(f.call("GET", "/api/v1/me", "dave").status == 401);
  CHECK(f.call("POST", "/api/v1/users/dave/enable", "root").status == 200);
  CHECK(f.call("GET", "/api/v1/me", "dave").status == 200);
  // A password reset to a one-time one; a TOTP reset gives a new secret.
  auto reset = f.call("POST", "/api/v1/users/bob/password", "root");
  REQUIRE(reset.status == 200);
  CHECK(f.obj(reset)["must_change_password"].as_bool());
  auto again = f.call("POST", "/api/v1/users/bob/totp", "root");
  REQUIRE(again.status == 200);
  CHECK(secret_of(std::string(f.obj(again)["totp"].as_object()["uri"].as_string())) != f.totp_secrets["bob"]);
  // Tokens over the API: never for another account (that would let an administrator act as
  // a representative without their TOTP), never with a token; from a console login, one's own.
  CHECK(f.call("POST", "/api/v1/tokens", "root", R"({"user":"fred","expires_in":"2h"})").status == 403);
  CHECK(f.call("POST", "/api/v1/tokens", "root", R"({"expires_in":"2h"})").status == 403);
  auto login = f.call("POST", "/api/v1/login", "",
                      R"({"user":"root","password":"password of root","totp":")" + f.totp("root") + R"("})");
  REQUIRE(login.status == 200);
  const auto cookie = api_fixture::cookie_of(login);
  const std::vector<std::pair<std::string, std::string>> console{
      {"Cookie", cookie}, {"X-CSRF-Token", std::string(f.obj(login)["csrf_token"].as_string())}};
  CHECK(f.call("POST", "/api/v1/tokens", "", R"({"user":"fred"})", console).status == 403);
  CHECK(f.call("POST", "/api/v1/tokens", "", R"({"expires_in":"400d"})", console).status == 400);
  auto tok = f.call("POST", "/api/v1/tokens", "", R"({"expires_in":"2h"})", console);
  REQUIRE(tok.status == 201);
  CHECK(f.obj(f.call("GET", "/api/v1/me", "", "",
                     {{"Authorization", "Bearer " + std::string(f.obj(tok)["token"].as_string())}}))["user"]
            .as_string() == "root");
  CHECK(admin_log(f, "admin.user") ==
        std::vector<std::string>{"add:ok:root", "add:ok:root", "add:denied:root", "disable:denied:root",
                                 "disable:denied:root", "enable:denied:root", "disable:ok:root", "enable:ok:root",
                                 "passwd:ok:root", "totp-reset:ok:root", "token_create:denied:root",
                                 "token_create:denied:root", "token_create:denied:root", "token_create:ok:root"});
  // A password reset ends the login sessions of that account.
  auto before = f.call("GET", "/api/v1/me", "", "", {{"Cookie", cookie}});
  CHECK(before.status == 200);
  CHECK(f.call("POST", "/api/v1/users/root/password", "root", R"({"password":"root's new long password"})").status == 200);
  CHECK(f.call("GET", "/api/v1/me", "", "", {{"Cookie", cookie}}).status == 401);
}

TEST_CASE("admin API: a machine enrolled, its profile downloaded once, listed, revoked, raced") {
  api_fixture f;
  // The profile pins the gateway's CA (the fixture makes no certificates).
  auto ca = run({"openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout",
                 (f.dir / "ca.key").string(), "-out", f.layout.ca_cert().string(), "-subj", "/CN=test CA", "-days", "1"});
  REQUIRE(ca.exit_code == 0);
  auto body = R"({"type":"9009","model":"42a","serial":"7800042","scopes":["hmc=127.0.0.1:22"],"gateway":"gw1.example.com:4433"})";
  auto enrolled = f.call("POST", "/api/v1/machines", "root", body);
  REQUIRE(enrolled.status == 201);
  CHECK(f.obj(enrolled)["machine"].as_string() == "9009-42A*7800042");
  auto url = std::string(f.obj(enrolled)["profile"].as_string());
  CHECK(url == "/api/v1/machines/9009-42A*7800042/profile");
  auto profile = f.call("GET", url, "root");
  REQUIRE(profile.status == 200);
  CHECK(profile.content_type == "application/toml");
  auto p = agent::parse_profile(profile.body, "downloaded");
  CHECK(p.machine() == "9009-42A*7800042");
  CHECK(p.primary == "gw1.example.com:4433");
  CHECK(p.secret.size() >= 32);
  CHECK(f.call("GET", url, "root").status == 404);  // once
  CHECK(f.call("POST", "/api/v1/machines", "root", body).status == 409);
  CHECK(f.call("POST", "/api/v1/machines", "root",
               R"({"type":"9009","model":"42A","serial":"7800043","scopes":["hmc=127.0.0.1:22"]})").status == 400);  // no gateway known
  CHECK(f.call("POST", "/api/v1/machines", "root",
               R"({"type":"9009","model":"42A","serial":"7800043","scopes":[],"gateway":"g:1"})").status == 400);
  CHECK(f.call("POST", "/api/v1/machines", "root",
               R"({"type":"9009","model":"42A","serial":"7800043","scopes":["hmc"],"gateway":"g:1"})").status == 400);
  auto list = f.obj(f.call("GET", "/api/v1/machines", "root"))["machines"].as_array();
  REQUIRE(list.size() == 2);
  for (auto& m : list) {
    CHECK(m.as_object()["online"].as_bool() == false);
    CHECK(m.as_object()["revoked"].as_bool() == false);
  }
  CHECK(f.call("DELETE", "/api/v1/machines/9009-42A*7800042", "root").status == 200);
  CHECK(f.call("DELETE", "/api/v1/machines/9009-42A*7800042", "root").status == 409);
  CHECK(f.call("DELETE", "/api/v1/machines/9009-42A*7899999", "root").status == 404);
  // Eight administrators' requests enroll one new machine at once: one enrollment, seven refusals.
  std::atomic<int> created{0}, conflicts{0};
  std::vector<std::thread> threads;
  for (int i = 0; i < 8; ++i)
    threads.emplace_back([&] {
      auto s = f.call("POST", "/api/v1/machines", "root",
                      R"({"type":"9009","model":"42A","serial":"7800077","scopes":["hmc=127.0.0.1:22"],"gateway":"g:1"})")
                   .status;
      if (s == 201) ++created;
      else if (s == 409) ++conflicts;
    });
  for (auto& t : threads) t.join();
  CHECK(created == 1);
  CHECK(conflicts == 7);
  auto log = admin_log(f, "admin.machine");
  CHECK(std::count(log.begin(), log.end(), "enroll:ok:root") == 2);
  CHECK(std::count(log.begin(), log.end(), "profile_download:ok:root") == 1);
  CHECK(std::count(log.begin(), log.end(), "profile_download:denied:root") == 1);
  CHECK(std::count(log.begin(), log.end(), "revoke:ok:root") == 1);
}

TEST_CASE("admin API: concurrent changes of one account are one step each, journaled as they were decided") {
  api_fixture f;
  f.add_user("root2", "admin");
  constexpr int kRacers = 8;
  // Eight administrators' requests to disable erin at once: one disables, seven are refused
  // as "disabled already", and the journal says exactly that, in that order.
  REQUIRE(f.call("POST", "/api/v1/users", "root", R"({"user":"erin","role":"developer"})").status == 201);
  auto race = [&](const std::string& path) {
    std::atomic<int> ok{0}, conflicts{0}, other{0};
    std::vector<std::thread> threads;
    for (int i = 0; i < kRacers; ++i)
      threads.emplace_back([&, i] {
        auto s = f.call("POST", path, i % 2 ? "root" : "root2").status;
        if (s == 200) ++ok;
        else if (s == 409) ++conflicts;
        else ++other;
      });
    for (auto& t : threads) t.join();
    CHECK(ok == 1);
    CHECK(conflicts == kRacers - 1);
    CHECK(other == 0);
  };
  race("/api/v1/users/erin/disable");
  race("/api/v1/users/erin/enable");
  auto log = admin_log(f, "admin.user");
  auto count = [&](const std::string& what) { return std::count(log.begin(), log.end(), what); };
  CHECK(count("disable:ok:root") + count("disable:ok:root2") == 1);
  CHECK(count("disable:denied:root") + count("disable:denied:root2") == kRacers - 1);
  CHECK(count("enable:ok:root") + count("enable:ok:root2") == 1);
  CHECK(count("enable:denied:root") + count("enable:denied:root2") == kRacers - 1);
  // Every refusal of the enable race comes after the enable that made it one: the journal's
  // order is the order in which the steps decided.
  std::vector<std::string> enables;
  for (auto& l : log)
    if (l.starts_with("enable:")) enables.push_back(l.substr(0, l.find(':', 7)));
  REQUIRE(enables.size() == kRacers);
  CHECK(enables[0] == "enable:ok");
  // And state.db agrees: erin is enabled.
  state_store st(f.layout.state_db());
  CHECK_FALSE(st.find_user("erin")->disabled);

  // Eight concurrent password resets: each is its own step, each journaled, and the password
  // that works is the one the last step answered.
  std::vector<std::string> passwords(kRacers);
  std::vector<std::thread> threads;
  for (int i = 0; i < kRacers; ++i)
    threads.emplace_back([&, i] {
      auto r = f.call("POST", "/api/v1/users/erin/password", "root");
      if (r.status == 200) passwords[static_cast<std::size_t>(i)] = std::string(api_fixture::obj(r)["one_time_password"].as_string());
    });
  for (auto& t : threads) t.join();
  log = admin_log(f, "admin.user");
  CHECK(count("passwd:ok:root") == kRacers);
  // (Checked against state.db: wrong logins would lock erin out.)
  const auto stored = st.find_user("erin")->password_hash;
  int working = 0;
  for (auto& pw : passwords) {
    REQUIRE_FALSE(pw.empty());
    working += auth::verify_password(stored, pw) ? 1 : 0;
  }
  CHECK(working == 1);
}
