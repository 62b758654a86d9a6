// The authorisation matrix (docs/api.md §4): every route the service registers, called as
// every kind of caller, in one table. A letter per caller says what the gateway must answer:
//
//   A  allowed: done (2xx)
//   R  allowed, but refused on its merits (400, 409: already so, not possible now)
//   F  forbidden: 403
//   H  hidden: 404 (the thing exists, but not for this caller)
//   U  unauthenticated: 401
//
// The callers, in column order: the session's owner (alice, representative); another
// representative (bob); the grantee (dave, developer); a developer without a grant (erin); an
// auditor (audrey); an administrator (root); then no credentials; a login session that
// expired (dave's, idle for 31 minutes); a revoked token (alice's second); a disabled
// account's token (zed). All through the real router and service, state.db and journal.
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <catch2/catch.hpp>
#include <fstream>

#include "gateway/service.hpp"
#include "tests/gateway/service_fixture.hpp"

using namespace rsgate;
using namespace rsgate::gateway;
using namespace rsgate::test;

namespace {

struct row {
  std::string method, path, body;
  std::string expect;  // one letter per caller, in column order; spaces are ignored
};

constexpr int kCallers = 10;
const char* const kCallerNames[kCallers] = {"owner",  "representative", "grantee", "developer", "auditor",
                                            "admin",  "none",           "expired", "revoked",   "disabled"};

char classify(int status) {
  switch (status) {
    case 401: return 'U';
    case 403: return 'F';
    case 404: return 'H';
    case 400:
    case 409: return 'R';
    default: return status >= 200 && status < 300 ? 'A' : '?';
  }
}

std::string letters(std::string s) {
  std::erase(s, ' ');
  return s;
}

std::vector<std::string> segments(const std::string& path) {
  std::vector<std::string> out;
  for (std::size_t i = 0, j; i <= path.size(); i = j + 1) {
    j = std::min(path.find('/', i), path.size());
    out.push_back(path.substr(i, j - i));
  }
  return out;
}

std::string replace_all(std::string s, const std::string& from, const std::string& to) {
  for (auto at = s.find(from); at != std::string::npos; at = s.find(from, at + to.size())) s.replace(at, from.size(), to);
  return s;
}

}  // namespace

TEST_CASE("authorisation matrix: every route as every caller, in one table") {
  manual_clock clk(system_clock::instance().now());
  api_fixture f(clk);
  f.add_user("erin", "developer");
  f.add_user("frank", "developer");
  f.add_user("gina", "developer");
  f.add_user("zed", "representative");
  f.svc->set_peer("the pair's shared secret", "", {});  // so that /machines/{m}/where exists
  std::ofstream(f.layout.ca_cert()) << "the CA certificate an enrolled profile carries\n";
  std::string revoked_token = new_token(), foreign_token = new_token();
  {
    state_store st(f.layout.state_db());
    (void)st.set_disabled("zed", true);
    st.add_token({token_hash(revoked_token), "alice", 1, 0, false});
    (void)st.revoke_token(token_hash(revoked_token));
    st.add_token({token_hash(foreign_token), "root", 1, 0, false});
  }
  // dave's console login, then 31 minutes without a request: idle past its 30.
  auto login = f.call("POST", "/api/v1/login", "", R"({"user":"dave","password":"password of dave"})");
  REQUIRE(login.status == 200);
  const auto cookie = api_fixture::cookie_of(login);
  REQUIRE_FALSE(cookie.empty());
  REQUIRE(f.call("GET", "/api/v1/me", "", "", {{"Cookie", cookie}}).status == 200);  // it worked
  clk.advance(31 * 60 * 1'000'000LL);

  // A session owned by alice, with dave's grant G1 and frank's G2 (revoked by a row). The last
  // two rows change it for good: alice hands it to bob, who then ends it.
  auto [s, key] = f.customer_session();
  REQUIRE(f.call("POST", "/api/v1/sessions/attach", "alice",
                 json::serialize(json::object{{"session_key", key}, {"pmr", "TS012345678"}}))
              .status == 201);
  REQUIRE(f.call("POST", "/api/v1/sessions/" + s + "/grants", "alice", R"({"user":"dave"})").status == 201);
  REQUIRE(f.call("POST", "/api/v1/sessions/" + s + "/grants", "alice", R"({"user":"frank"})").status == 201);
  const std::string foreign_id = token_hash(foreign_token).substr(0, 16);

  // clang-format off
  const std::vector<row> table = {
      //                                                                                      owner rep grantee dev aud admin | none expired revoked disabled
      {"GET",    "/api/v1/me", "",                                                              "A A A A A A  U U U U"},
      {"GET",    "/api/v1/events", "",                                                          "A A A A A A  U U U U"},
      {"GET",    "/api/v1/tokens", "",                                                          "A A A A A A  U U U U"},
      // Only from a console login: a bearer token cannot mint tokens.
      {"POST",   "/api/v1/tokens", R"({"expires_in":"1h"})",                                      "F F F F F F  U U U U"},
      // Another account's token: invisible to all but an administrator.
      {"DELETE", "/api/v1/tokens/" + foreign_id, "",                                            "H H H H H A  U U U U"},
      {"GET",    "/api/v1/users", "",                                                           "F F F F F A  U U U U"},
      {"POST",   "/api/v1/users", R"({"user":"henry","role":"developer"})",                     "F F F F F A  U U U U"},
      {"POST",   "/api/v1/users/henry/disable", "",                                             "F F F F F A  U U U U"},
      {"POST",   "/api/v1/users/henry/enable", "",                                              "F F F F F A  U U U U"},
      {"POST",   "/api/v1/users/henry/password", "",                                            "F F F F F A  U U U U"},
      {"POST",   "/api/v1/users/henry/totp", "",                                                "F F F F F A  U U U U"},
      {"GET",    "/api/v1/machines", "",                                                        "F F F F F A  U U U U"},
      {"POST",   "/api/v1/machines", R"({"type":"9009","model":"42A","serial":"7809999","scopes":["hmc=127.0.0.1:22"],"gateway":"127.0.0.1:4433"})", "F F F F F A  U U U U"},
      {"GET",    "/api/v1/machines/9009-42A*7809999/profile", "",                               "F F F F F A  U U U U"},
      {"DELETE", "/api/v1/machines/9009-42A*7809999", "",                                       "F F F F F A  U U U U"},
      // The pair's own endpoint takes the pair's secret, never a user's credential.
      {"GET",    "/api/v1/machines/9009-42A*7801234/where", "",                                 "U U U U U U  U U U U"},
      {"GET",    "/api/v1/sessions", "",                                                        "A A A A A A  U U U U"},
      // Representatives may attach; this machine's session is alice's already (409 locked).
      {"POST",   "/api/v1/sessions/attach", R"({"machine":"9009-42A*7801234","pmr":"TS012345678"})", "R R F F F F  U U U U"},
      {"GET",    "/api/v1/sessions/{S}", "",                                                    "A H A H A H  U U U U"},
      {"POST",   "/api/v1/sessions/{S}/grants", R"({"user":"gina"})",                           "A F F F F F  U U U U"},
      {"PATCH",  "/api/v1/sessions/{S}/grants/G1", R"({"expires_in":"2h"})",                    "A F F F F F  U U U U"},
      {"DELETE", "/api/v1/sessions/{S}/grants/G2", "",                                          "A F F F F F  U U U U"},
      {"POST",   "/api/v1/sessions/{S}/channels", R"({"scope":"hmc","access_type":"ssh"})",     "A F A F F F  U U U U"},
      {"GET",    "/api/v1/pmrs/TS012345678/sessions", "",                                       "A A F F A F  U U U U"},
      {"GET",    "/api/v1/journal", "",                                                         "F F F F A F  U U U U"},
      {"GET",    "/api/v1/journal/export?format=jsonl", "",                                     "F F F F A F  U U U U"},
      {"GET",    "/api/v1/journal/verify", "",                                                  "F F F F A F  U U U U"},
      {"POST",   "/api/v1/sessions/{S}/transfer", R"({"user":"bob"})",                         "A F F F F F  U U U U"},
      {"DELETE", "/api/v1/sessions/{S}", "",                                                    "F A F F F F  U U U U"},
  };
  // clang-format on

  const std::string bearer_of[kCallers] = {f.tokens.at("alice"), f.tokens.at("bob"),  f.tokens.at("dave"),
                                           f.tokens.at("erin"),  f.tokens.at("audrey"), f.tokens.at("root"),
                                           "",                   "",                   revoked_token,
                                           f.tokens.at("zed")};
  std::set<std::string> covered;
  std::string failures;
  for (auto& r : table) {
    const auto path = replace_all(r.path, "{S}", s);
    const auto want = letters(r.expect);
    REQUIRE(want.size() == kCallers);
    // Those who must be refused go first, so that what an allowed caller does (an end, a
    // transfer) cannot change the answer the others get.
    std::vector<int> order;
    for (int c = 0; c < kCallers; ++c)
      if (want[static_cast<std::size_t>(c)] != 'A' && want[static_cast<std::size_t>(c)] != 'R') order.push_back(c);
    for (int c = 0; c < kCallers; ++c)
      if (want[static_cast<std::size_t>(c)] == 'A' || want[static_cast<std::size_t>(c)] == 'R') order.push_back(c);
    std::string got(kCallers, ' ');
    for (int c : order) {
      std::vector<std::pair<std::string, std::string>> headers;
      if (!bearer_of[c].empty()) headers.emplace_back("Authorization", "Bearer " + bearer_of[c]);
      if (c == 7) headers.emplace_back("Cookie", cookie);
      auto resp = f.call(r.method, path, "", r.body, headers);
      got[static_cast<std::size_t>(c)] = classify(resp.status);
      if (got[static_cast<std::size_t>(c)] != want[static_cast<std::size_t>(c)])
        failures += r.method + " " + r.path + " as " + kCallerNames[c] + ": " + std::to_string(resp.status) + " " +
                    resp.body.substr(0, 160) + "\n";
    }
    covered.insert(r.method + " " + r.path.substr(0, r.path.find('?')));
  }
  CHECK(failures == "");

  // The table covers the route table: every route once.
  std::vector<std::string> missing;
  for (auto& [method, route] : service::api_routes()) {
    bool found = false;
    for (auto& c : covered) {
      auto sp = c.find(' ');
      if (c.substr(0, sp) != method) continue;
      // The table's concrete path against the route's template, segment by segment.
      const auto sa = segments(c.substr(sp + 1)), sb = segments(route);
      if (sa.size() != sb.size()) continue;
      bool same = true;
      for (std::size_t k = 0; k < sa.size() && same; ++k)
        same = sb[k].starts_with('{') ? !sa[k].empty() : sa[k] == sb[k];
      found = found || same;
    }
    if (!found) missing.push_back(method + " " + route);
  }
  // POST /login and /logout answer whoever calls them; the login tests cover them.
  std::erase_if(missing, [](const std::string& m) { return m == "POST /api/v1/login" || m == "POST /api/v1/logout"; });
  CHECK(missing == std::vector<std::string>{});
}
