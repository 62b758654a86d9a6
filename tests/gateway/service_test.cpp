// The REST session API without a network: login with cookie + CSRF, bearer tokens, attach
// and the lock, grants and channel permission, revocation, transfer, end, PMR lookup and the
// auditors' journal endpoints — and "journal before access": when the journal cannot write,
// an attach is refused with 503 and nothing changes.
#include "gateway/service.hpp"

#include "tests/gateway/service_fixture.hpp"

#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <catch2/catch.hpp>
#include <atomic>
#include <cctype>
#include <future>
#include <thread>

#include "auth/scram.hpp"

#include "auth/password.hpp"
#include "auth/session_key.hpp"
#include "gateway/http/routes.hpp"
#include "tests/support/fsize_limit.hpp"
#include "tests/support/process.hpp"

using namespace rsgate;
using namespace rsgate::gateway;
using namespace rsgate::test;
namespace json = boost::json;


TEST_CASE("login: wrong password, forced change, cookie and CSRF") {
  api_fixture f;
  auto bad = f.call("POST", "/api/v1/login", "", R"({"user":"alice","password":"nope"})");
  CHECK(bad.status == 401);
  CHECK(f.count("user.login", journal::outcome::denied) == 1);
  auto unknown = f.call("POST", "/api/v1/login", "", R"({"user":"nobody","password":"nope"})");
  CHECK(unknown.status == 401);
  CHECK(f.obj(unknown) == f.obj(bad));  // an unknown account looks the same

  auto must = f.call("POST", "/api/v1/login", "", R"({"user":"carol","password":"password of carol"})");
  CHECK(must.status == 403);
  CHECK(f.code(must) == "password_change_required");
  // Her bearer token does not work around that.
  auto via_token = f.call("GET", "/api/v1/sessions", "carol");
  CHECK(via_token.status == 403);
  CHECK(f.code(via_token) == "password_change_required");
  auto changed = f.call("POST", "/api/v1/login", "",
                        R"({"user":"carol","password":"password of carol","new_password":"a much better password",)"
                        R"("totp":")" + f.totp("carol") + R"("})");
  CHECK(changed.status == 200);
  CHECK(f.call("GET", "/api/v1/sessions", "carol").status == 200);

  auto ok = f.call("POST", "/api/v1/login", "",
                   R"({"user":"alice","password":"password of alice","totp":")" + f.totp("alice") + R"("})");
  REQUIRE(ok.status == 200);
  std::string cookie;
  for (auto& [k, v] : ok.headers)
    if (k == "Set-Cookie") cookie = v;
  CHECK(cookie.find("HttpOnly") != std::string::npos);
  CHECK(cookie.find("Secure") != std::string::npos);
  CHECK(cookie.find("SameSite=Strict") != std::string::npos);
  auto jar = cookie.substr(0, cookie.find(';'));
  auto csrf = std::string(f.obj(ok)["csrf_token"].as_string());
  CHECK(f.call("GET", "/api/v1/sessions", "", "", {{"Cookie", jar}}).status == 200);
  auto no_csrf = f.call("POST", "/api/v1/sessions/attach", "", R"({"machine":"9009-42A*7801234","pmr":"TS012345678"})",
                        {{"Cookie", jar}});
  CHECK(no_csrf.status == 403);
  CHECK(f.code(no_csrf) == "csrf");
  f.customer_session();
  auto with_csrf = f.call("POST", "/api/v1/sessions/attach", "", R"({"machine":"9009-42A*7801234","pmr":"TS012345678"})",
                          {{"Cookie", jar}, {"X-CSRF-Token", csrf}});
  CHECK(with_csrf.status == 201);
  CHECK(f.call("POST", "/api/v1/logout", "", "", {{"Cookie", jar}}).status == 200);
  CHECK(f.call("GET", "/api/v1/sessions", "", "", {{"Cookie", jar}}).status == 401);
  CHECK(f.call("GET", "/api/v1/sessions", "").status == 401);
  CHECK(f.call("GET", "/api/v1/sessions", "", "", {{"Authorization", "Bearer rsg_forged"}}).status == 401);
}

TEST_CASE("attach: the key, the lock, roles and malformed input") {
  api_fixture f;
  auto [id, key] = f.customer_session();
  auto body = [&](const std::string& k, const std::string& pmr) {
    return json::serialize(json::object{{"session_key", k}, {"pmr", pmr}});
  };
  CHECK(f.call("POST", "/api/v1/sessions/attach", "alice", body(key, "12345,677")).status == 400);
  CHECK(f.call("POST", "/api/v1/sessions/attach", "alice", R"({"machine":"9009-42A","pmr":"TS012345678"})").status == 400);
  CHECK(f.call("POST", "/api/v1/sessions/attach", "alice", R"({"pmr":"TS012345678"})").status == 400);
  CHECK(f.call("POST", "/api/v1/sessions/attach", "alice", "not json").status == 400);
  auto dev = f.call("POST", "/api/v1/sessions/attach", "dave", body(key, "TS012345678"));
  CHECK(dev.status == 403);
  CHECK(f.call("POST", "/api/v1/sessions/attach", "root", body(key, "TS012345678")).status == 403);
  auto wrong = auth::generate_session_key();
  CHECK(f.call("POST", "/api/v1/sessions/attach", "alice", body(wrong, "TS012345678")).status == 403);

  auto ok = f.call("POST", "/api/v1/sessions/attach", "alice", body(key, "12345,677,000"));
  REQUIRE(ok.status == 201);
  auto s = f.obj(ok);
  CHECK(s["id"].as_string() == id);
  CHECK(s["owner"].as_string() == "alice");
  CHECK(s["pmr"].as_string() == "12345,677,000");

  auto second = f.call("POST", "/api/v1/sessions/attach", "bob",
                       R"({"machine":"9009-42A*7801234","pmr":"TS012345678"})");
  CHECK(second.status == 409);
  CHECK(f.obj(second)["error"].as_object()["message"].as_string().find("alice") != std::string::npos);
  CHECK(f.count("session.attach", journal::outcome::ok) == 1);
  CHECK(f.count("session.attach", journal::outcome::denied) == 4);  // dev, admin, wrong key, locked
}

TEST_CASE("grants, channels, revocation, transfer and end") {
  api_fixture f;
  auto [id, key] = f.customer_session();
  REQUIRE(f.call("POST", "/api/v1/sessions/attach", "alice",
                 json::serialize(json::object{{"session_key", key}, {"pmr", "TS012345678"}})).status == 201);
  auto base = "/api/v1/sessions/" + id;
  CHECK(f.call("POST", base + "/grants", "bob", R"({"user":"dave"})").status == 403);  // not the owner
  CHECK(f.call("POST", base + "/grants", "alice", R"({"user":"root"})").status == 403);  // admins get no access
  CHECK(f.call("POST", base + "/grants", "alice", R"({"user":"dave","access_types":["rdp"]})").status == 400);
  auto g = f.call("POST", base + "/grants", "alice",
                  R"({"user":"dave","scopes":["hmc"],"access_types":["ssh"],"expires_in":"2h"})");
  REQUIRE(g.status == 201);
  auto ch = f.call("POST", base + "/channels", "dave", R"({"scope":"hmc","access_type":"ssh"})");
  CHECK(ch.status == 201);
  CHECK(f.obj(ch)["token"].as_string().size() > 30);
  auto other = f.call("POST", base + "/channels", "dave", R"({"scope":"partition:LP01","access_type":"ssh"})");
  CHECK(other.status == 403);
  CHECK(f.code(other) == "outside_grant");
  CHECK(f.call("POST", base + "/channels", "bob", R"({"scope":"hmc","access_type":"ssh"})").status == 403);
  CHECK(f.call("GET", base, "dave").status == 200);  // a grantee sees the session
  CHECK(f.call("GET", base, "bob").status == 404);   // others do not
  auto full = f.obj(f.call("GET", base, "audrey"));  // auditors do, with the timeline,
  CHECK(full["timeline"].as_array().size() >= 2);
  CHECK(f.count("audit.query", journal::outcome::ok) == 1);  // and that read is journaled

  CHECK(f.call("DELETE", base + "/grants/G1", "dave").status == 403);
  CHECK(f.count("session.revoke", journal::outcome::denied) == 1);  // refusals are journaled too
  CHECK(f.call("DELETE", base + "/grants/G1", "alice").status == 200);
  CHECK(f.call("POST", base + "/channels", "dave", R"({"scope":"hmc","access_type":"ssh"})").status == 403);

  CHECK(f.call("POST", base + "/transfer", "alice", R"({"user":"dave"})").status == 403);
  CHECK(f.call("POST", base + "/transfer", "alice", R"({"user":"bob"})").status == 200);
  CHECK(f.call("POST", base + "/channels", "alice", R"({"scope":"hmc","access_type":"ssh"})").status == 403);
  CHECK(f.call("DELETE", base, "alice").status == 403);
  CHECK(f.count("session.end", journal::outcome::denied) == 1);
  CHECK(f.count("session.transfer", journal::outcome::denied) == 1);
  auto end = f.call("DELETE", base, "bob");
  CHECK(end.status == 200);
  CHECK(f.obj(end)["state"].as_string() == "ended");
  for (auto kind : {"session.grant", "session.revoke", "session.transfer", "session.end"})
    CHECK(f.count(kind, journal::outcome::ok) == 1);
  CHECK(f.count("channel.open", journal::outcome::denied) >= 2);
}

TEST_CASE("PMR lookup and the auditors' journal endpoints") {
  api_fixture f;
  auto [id, key] = f.customer_session();
  REQUIRE(f.call("POST", "/api/v1/sessions/attach", "alice",
                 json::serialize(json::object{{"session_key", key}, {"pmr", "TS012345678"}})).status == 201);
  auto pmr = f.call("GET", "/api/v1/pmrs/TS012345678/sessions", "audrey");
  REQUIRE(pmr.status == 200);
  auto o = f.obj(pmr);
  REQUIRE(o["sessions"].as_array().size() == 1);
  CHECK(o["sessions"].as_array()[0].as_object()["id"].as_string() == id);
  CHECK(f.call("GET", "/api/v1/pmrs/12345%2C677%2C000/sessions", "alice").status == 200);
  CHECK(f.call("GET", "/api/v1/pmrs/bogus/sessions", "audrey").status == 400);
  CHECK(f.call("GET", "/api/v1/pmrs/TS012345678/sessions", "dave").status == 403);
  auto j = f.call("GET", "/api/v1/journal?kind=session.attach&limit=5", "audrey");
  REQUIRE(j.status == 200);
  CHECK(f.obj(j)["entries"].as_array().size() == 1);
  CHECK(f.call("GET", "/api/v1/journal?kind=nonsense", "audrey").status == 400);
  CHECK(f.call("GET", "/api/v1/journal?since=yesterday", "audrey").status == 400);
  CHECK(f.call("GET", "/api/v1/journal", "alice").status == 403);
  auto v = f.call("GET", "/api/v1/journal/verify", "audrey");
  REQUIRE(v.status == 200);
  CHECK(f.obj(v)["ok"].as_bool());
  CHECK(f.count("audit.query", journal::outcome::ok) == 4);  // two PMR lookups, a query, a verify
}

TEST_CASE("journal before access: an attach the journal cannot record is refused, nothing changes") {
  api_fixture f;
  auto [id, key] = f.customer_session();
  auto body = json::serialize(json::object{{"session_key", key}, {"pmr", "TS012345678"}});
  http_response r;
  {
    test::fsize_limit full(1);
    r = f.call("POST", "/api/v1/sessions/attach", "alice", body);
  }
  CHECK(r.status == 503);
  CHECK(f.code(r) == "journal_unavailable");
  CHECK(f.obj(f.call("GET", "/api/v1/sessions", "alice"))["sessions"].as_array().empty());
  // With the journal writing again, the same key still works (it was not consumed).
  auto ok = f.call("POST", "/api/v1/sessions/attach", "alice", body);
  CHECK(ok.status == 201);
}

TEST_CASE("disabling an account (in another process) revokes its grants and ends the sessions it owns") {
  api_fixture f;
  auto [id, key] = f.customer_session();
  REQUIRE(f.call("POST", "/api/v1/sessions/attach", "alice",
                 json::serialize(json::object{{"session_key", key}, {"pmr", "TS012345678"}})).status == 201);
  REQUIRE(f.call("POST", "/api/v1/sessions/" + id + "/grants", "alice", R"({"user":"dave"})").status == 201);
  {
    state_store other(f.layout.state_db());  // as `rsgate user disable` would
    other.set_disabled("dave", true);
  }
  f.svc->housekeeping();
  CHECK(f.eventually("session.revoke", journal::outcome::ok, 1) == 1);
  auto s = f.obj(f.call("GET", "/api/v1/sessions/" + id, "alice"));
  CHECK(s["state"].as_string() == "active");
  CHECK(s["grants"].as_array()[0].as_object()["revoked"].as_bool());
  {
    state_store other(f.layout.state_db());
    other.set_disabled("alice", true);
  }
  f.svc->housekeeping();
  CHECK(f.eventually("session.end", journal::outcome::ok, 1) == 1);
  CHECK(f.call("GET", "/api/v1/sessions/" + id, "audrey").body.find("owner disabled") != std::string::npos);
}

TEST_CASE("login: TOTP required for representatives and admins, a code accepted once, recovery codes") {
  api_fixture f;
  auto login = [&](const std::string& user, const std::string& totp) {
    std::string body = R"({"user":")" + user + R"(","password":"password of )" + user + R"(")";
    if (!totp.empty()) body += R"(,"totp":")" + totp + R"(")";
    return f.call("POST", "/api/v1/login", "", body + "}");
  };
  auto last_login = [&] {
    journal::reader rd({f.layout.journal_db()});
    journal::filter q;
    q.kind = "user.login";
    auto es = rd.query(q).entries;
    REQUIRE_FALSE(es.empty());
    return json::parse(es.back().detail).as_object();
  };
  // No code: refused, the reason named, counted and journaled.
  auto none = login("alice", "");
  CHECK(none.status == 401);
  CHECK(f.code(none) == "totp_required");
  CHECK(last_login()["reason"].as_string() == "totp_required");
  // A wrong code and a code of another account: refused alike.
  auto code = f.totp("alice");
  std::string wrong = code == "000000" ? "000001" : "000000";
  CHECK(f.code(login("alice", wrong)) == "wrong_totp");
  CHECK(f.code(login("alice", f.totp("bob"))) == "wrong_totp");
  CHECK(f.code(login("alice", "12345")) == "wrong_totp");  // not six digits
  // The right code: signed in, the second factor in the journal.
  auto ok = login("alice", code);
  REQUIRE(ok.status == 200);
  CHECK(last_login()["second_factor"].as_string() == "totp");
  // The same code again: refused, even within its 30 s.
  auto again = login("alice", code);
  CHECK(again.status == 401);
  CHECK(f.code(again) == "wrong_totp");
  // The next step's code (one step of skew) is accepted, once.
  CHECK(login("alice", f.totp("alice", 1)).status == 200);
  // A recovery code, typed loosely (lower case, no hyphens), once; the others still work.
  auto rc = f.recovery_codes["bob"][0];
  std::string loose;
  for (char c : rc)
    if (c != '-') loose += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  auto rec = login("bob", loose);
  REQUIRE(rec.status == 200);
  CHECK(last_login()["second_factor"].as_string() == "recovery_code");
  CHECK(f.code(login("bob", rc)) == "wrong_totp");
  CHECK(login("bob", f.recovery_codes["bob"][1]).status == 200);
  CHECK(f.code(login("bob", f.recovery_codes["alice"][0])) == "wrong_totp");  // alice's is not bob's
  // Roles without TOTP sign in with the password alone; a representative not enrolled (a
  // data directory from before TOTP) is refused until an administrator enrols it.
  CHECK(login("dave", "").status == 200);
  CHECK(last_login()["second_factor"].is_null());
  f.add_user("erin", "representative");
  auto unenrolled = login("erin", "");
  CHECK(unenrolled.status == 403);
  CHECK(f.code(unenrolled) == "totp_not_enrolled");
  // Bearer tokens are unaffected.
  CHECK(f.call("GET", "/api/v1/sessions", "alice").status == 200);
  // Wrong codes count toward the account's lock-out like wrong passwords (5 in 15 minutes
  // since its last login).
  for (int i = 0; i < 5; ++i) (void)login("alice", wrong);
  auto locked = login("alice", f.totp("alice"));
  CHECK(locked.status == 429);
  CHECK(f.code(locked) == "rate_limited");
  bool retry_after = false;
  for (auto& [k, v] : locked.headers) retry_after = retry_after || (k == "Retry-After" && v == "900");
  CHECK(retry_after);
  CHECK(f.count("user.lockout", journal::outcome::denied) >= 1);
}

TEST_CASE("login: one TOTP code, sixteen concurrent logins: exactly one is accepted") {
  api_fixture f;
  const auto code = f.totp("root");
  std::vector<std::thread> threads;
  std::atomic<int> accepted{0}, refused{0};
  for (int i = 0; i < 16; ++i)
    threads.emplace_back([&, i] {
      http_request r;
      r.method = "POST";
      r.target = "/api/v1/login";
      r.remote = "198.51.100." + std::to_string(i + 1) + ":4000";  // not one source's lock-out
      r.body = R"({"user":"root","password":"password of root","totp":")" + code + R"("})";
      std::promise<http_response> p;
      auto fut = p.get_future();
      f.api->handle(r, [&p](http_response resp) { p.set_value(std::move(resp)); });
      auto status = fut.get().status;
      if (status == 200) ++accepted;
      else if (status == 401 || status == 429) ++refused;
    });
  for (auto& t : threads) t.join();
  CHECK(accepted == 1);
  CHECK(refused == 15);
}

TEST_CASE("GET /me, one's tokens listed and revoked, 401 says WWW-Authenticate, 429 Retry-After") {
  api_fixture f;
  auto header = [](const http_response& r, const std::string& name) {
    for (auto& [k, v] : r.headers)
      if (k == name) return v;
    return std::string();
  };
  auto me = f.call("GET", "/api/v1/me", "alice");
  REQUIRE(me.status == 200);
  auto o = f.obj(me);
  CHECK(o["user"].as_string() == "alice");
  CHECK(o["role"].as_string() == "representative");
  CHECK(o["auth"].as_string() == "token");
  CHECK(o["token"].as_string() == token_id(token_hash(f.tokens["alice"])));
  CHECK(o["totp"].as_bool());
  CHECK(o["recovery_codes_left"].as_int64() == 10);
  CHECK(f.obj(f.call("GET", "/api/v1/me", "dave"))["totp"].as_bool() == false);
  CHECK(f.call("GET", "/api/v1/me?x=1", "alice").status == 400);

  // A second token of alice's: she sees both, marked which one she is using.
  state_store st(f.layout.state_db());
  auto second = new_token();
  st.add_token({token_hash(second), "alice", 2, 0, false});
  auto mine = f.call("GET", "/api/v1/tokens", "alice");
  REQUIRE(mine.status == 200);
  auto list = f.obj(mine)["tokens"].as_array();
  REQUIRE(list.size() == 2);
  for (auto& t : list) {
    CHECK(t.as_object()["user"].as_string() == "alice");
    CHECK(t.as_object()["state"].as_string() == "active");
    CHECK(t.as_object()["current"].as_bool() == (t.as_object()["id"].as_string() == o["token"].as_string()));
  }
  CHECK(f.call("GET", "/api/v1/tokens?user=bob", "alice").status == 403);
  CHECK(f.call("GET", "/api/v1/tokens?owner=bob", "alice").status == 400);
  // Not a user name: 400 for anyone (not an empty list that looks like "no tokens").
  for (auto bad : {"", "Bob%20", "x%27%20OR%201", "%C3%A9"}) {
    CAPTURE(bad);
    auto r = f.call("GET", std::string("/api/v1/tokens?user=") + bad, "root");
    CHECK(r.status == 400);
    CHECK(f.obj(r)["error"].as_object()["code"].as_string() == "bad_request");
  }
  CHECK(f.obj(f.call("GET", "/api/v1/tokens", "root"))["tokens"].as_array().size() == 7);  // an admin: everyone's
  CHECK(f.obj(f.call("GET", "/api/v1/tokens?user=bob", "root"))["tokens"].as_array().size() == 1);

  // Revoking: her own, once; someone else's is invisible to her; an admin may.
  const auto id2 = token_id(token_hash(second));
  CHECK(f.call("DELETE", "/api/v1/tokens/" + token_id(token_hash(f.tokens["bob"])), "alice").status == 404);
  CHECK(f.call("DELETE", "/api/v1/tokens/nothex", "alice").status == 404);
  auto revoked = f.call("DELETE", "/api/v1/tokens/" + id2, "alice");
  REQUIRE(revoked.status == 200);
  CHECK(f.obj(revoked)["state"].as_string() == "revoked");
  auto used = f.call("GET", "/api/v1/me", "", "", {{"Authorization", "Bearer " + second}});
  CHECK(used.status == 401);
  CHECK(header(used, "WWW-Authenticate") == R"(Bearer realm="rsgate", error="invalid_token")");
  CHECK(header(f.call("GET", "/api/v1/me", ""), "WWW-Authenticate") == R"(Bearer realm="rsgate")");
  auto upper = id2;
  for (auto& ch : upper) ch = static_cast<char>(std::toupper(static_cast<unsigned char>(ch)));
  auto twice = f.call("DELETE", "/api/v1/tokens/" + upper, "alice");  // either case names it
  CHECK(twice.status == 409);
  CHECK(f.call("DELETE", "/api/v1/tokens/" + token_id(token_hash(f.tokens["bob"])), "root").status == 200);
  CHECK(f.call("GET", "/api/v1/me", "bob").status == 401);
  // Each revocation and the refused one are in the journal, before they took effect.
  journal::reader rd({f.layout.journal_db()});
  journal::filter q;
  q.kind = "admin.user";
  std::vector<std::string> seen;
  for (auto& e : rd.query(q).entries)
    seen.push_back(std::string(json::parse(e.detail).as_object()["action"].as_string()) + ":" +
                   std::string(journal::to_string(e.result)) + ":" + e.actor + ":" + e.subject);
  CHECK(seen == std::vector<std::string>{"token_revoke:ok:alice:alice", "token_revoke:denied:alice:alice",
                                         "token_revoke:ok:root:bob"});
}

TEST_CASE("one token revoked by eight concurrent requests: one record, seven refusals") {
  api_fixture f;
  const auto id = token_id(token_hash(f.tokens["dave"]));
  std::vector<std::thread> threads;
  std::atomic<int> ok{0}, conflict{0};
  for (int i = 0; i < 8; ++i)
    threads.emplace_back([&] {
      auto s = f.call("DELETE", "/api/v1/tokens/" + id, "root").status;
      if (s == 200) ++ok;
      else if (s == 409) ++conflict;
    });
  for (auto& t : threads) t.join();
  CHECK(ok == 1);
  CHECK(conflict == 7);
  CHECK(f.count("admin.user", journal::outcome::ok) == 1);
  CHECK(f.count("admin.user", journal::outcome::denied) == 7);
}

TEST_CASE("GET /sessions: filters, both sorts, keyset pages that neither repeat nor skip") {
  api_fixture f;
  std::vector<std::string> ids;  // oldest first
  for (int i = 0; i < 7; ++i) {
    auto [id, key] = f.customer_session();
    auto pmr = "TS00000010" + std::to_string(i);
    REQUIRE(f.call("POST", "/api/v1/sessions/attach", "alice",
                   R"({"session_key":")" + key + R"(","pmr":")" + pmr + R"("})").status == 201);
    if (i < 6) REQUIRE(f.call("DELETE", "/api/v1/sessions/" + id, "alice").status == 200);
    ids.push_back(id);
    std::this_thread::sleep_for(std::chrono::milliseconds(2));  // distinct creation times
  }
  auto page = [&](const std::string& query) {
    auto r = f.call("GET", "/api/v1/sessions" + query, "alice");
    REQUIRE(r.status == 200);
    return f.obj(r);
  };
  auto ids_of = [](json::object o) {
    std::vector<std::string> out;
    for (auto& s : o["sessions"].as_array()) out.emplace_back(s.as_object()["id"].as_string());
    return out;
  };
  // Newest first by default, three at a time.
  std::vector<std::string> seen;
  std::string cursor;
  int pages = 0;
  do {
    auto o = page("?limit=3" + (cursor.empty() ? "" : "&cursor=" + cursor));
    for (auto& id : ids_of(o)) seen.push_back(id);
    cursor = o["next_cursor"].is_null() ? "" : std::string(o["next_cursor"].as_string());
    ++pages;
  } while (!cursor.empty() && pages < 10);
  CHECK(pages == 3);
  CHECK(seen == std::vector<std::string>(ids.rbegin(), ids.rend()));
  // Oldest first; a session that appears between pages does not shift them.
  auto first = page("?sort=created_at&limit=4");
  CHECK(ids_of(first) == std::vector<std::string>(ids.begin(), ids.begin() + 4));
  (void)f.customer_session();  // not alice's yet: invisible to her anyway
  auto second = page("?sort=created_at&limit=4&cursor=" + std::string(first["next_cursor"].as_string()));
  CHECK(ids_of(second) == std::vector<std::string>(ids.begin() + 4, ids.end()));
  CHECK(second["next_cursor"].is_null());
  // Filters.
  auto active = page("?state=active");
  CHECK(ids_of(active) == std::vector<std::string>{ids.back()});
  auto by_pmr = page("?pmr=TS000000102");
  CHECK(ids_of(by_pmr) == std::vector<std::string>{ids[2]});
  CHECK(ids_of(page("?machine=9009-42a*7801234")).size() == 7);
  CHECK(ids_of(page("?machine=9009-42A*7809999")).empty());
  CHECK(ids_of(page("?owner=alice&state=ended")).size() == 6);
  CHECK(ids_of(page("?owner=bob")).empty());
  CHECK(ids_of(f.obj(f.call("GET", "/api/v1/sessions", "bob"))).empty());  // not bob's sessions
  // Strict input.
  for (auto bad : {"?limit=0", "?limit=201", "?limit=3.0", "?cursor=x", "?cursor=12", "?cursor=-1.S-x", "?sort=id",
                   "?machine=9009", "?pmr=123", "?owner=a%20b", "?page=2", "?state=open"}) {
    INFO(bad);
    CHECK(f.call("GET", std::string("/api/v1/sessions") + bad, "alice").status == 400);
  }
}
