// Live events (docs/api.md §5.6): the hub's fan-out rules on their own (audience, removal,
// idempotence, the byte bound, the limits), then the service's: who gets which session's
// events through GET /api/v1/events, that a change is published once its step settled, that a
// credential's end ends its streams, and that with many concurrent changes every subscriber's
// last event is the session's final state.
#include "gateway/events.hpp"

#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <catch2/catch.hpp>
#include <thread>

#include "tests/gateway/service_fixture.hpp"

using namespace rsgate;
using namespace rsgate::gateway;
using namespace rsgate::test;

namespace {

struct event {
  std::string type, data;
};

// The frames of a batch of SSE text.
std::vector<event> parse(const std::string& text) {
  std::vector<event> out;
  std::size_t at = 0;
  while (at < text.size()) {
    auto end = text.find("\n\n", at);
    REQUIRE(end != std::string::npos);
    auto f = text.substr(at, end - at);
    auto nl = f.find('\n');
    REQUIRE(f.starts_with("event: "));
    REQUIRE(f.substr(nl + 1).starts_with("data: "));
    out.push_back({f.substr(7, nl - 7), f.substr(nl + 7)});
    at = end + 2;
  }
  return out;
}

std::vector<event> drain(event_subscription& s) { return parse(s.take().text); }

std::vector<std::string> types(const std::vector<event>& evs) {
  std::vector<std::string> out;
  for (auto& e : evs) out.push_back(e.type);
  return out;
}

event_subscription::owner who(std::string user, role r = role::representative) {
  return {std::move(user), r, "", "", 0};
}

}  // namespace

TEST_CASE("event hub: a session's event goes to its audience, a user who left it is told once") {
  event_hub hub;
  auto alice = hub.subscribe(who("alice"), {});
  auto dave = hub.subscribe(who("dave", role::developer), {});
  auto bob = hub.subscribe(who("bob"), {});
  auto admin = hub.subscribe(who("root", role::admin), {});
  REQUIRE(alice);
  REQUIRE(dave);

  hub.publish_session("S1", R"({"v":1})", {"alice", "dave"}, false);
  CHECK(types(drain(*alice)) == std::vector<std::string>{"session"});
  CHECK(drain(*dave)[0].data == R"({"v":1})");
  CHECK(drain(*bob).empty());
  CHECK(drain(*admin).empty());

  // The same object for the same audience is sent once (publishing is idempotent).
  hub.publish_session("S1", R"({"v":1})", {"alice", "dave"}, false);
  CHECK(drain(*alice).empty());

  // dave's grant went: he learns that the session left his view, and nothing after it.
  hub.publish_session("S1", R"({"v":2})", {"alice"}, false);
  auto d = drain(*dave);
  REQUIRE(d.size() == 1);
  CHECK(d[0].type == "session.removed");
  CHECK(d[0].data == R"({"id":"S1"})");
  CHECK(drain(*alice)[0].data == R"({"v":2})");
  hub.publish_session("S1", R"({"v":3})", {"alice"}, false);
  CHECK(drain(*dave).empty());
  CHECK(drain(*alice).size() == 1);

  // Machines reach administrators only.
  hub.publish_machine(R"({"machine":"M","online":true})");
  CHECK(types(drain(*admin)) == std::vector<std::string>{"machine"});
  CHECK(drain(*alice).empty());

  // An ended session's last event, then the hub forgets it.
  hub.publish_session("S1", R"({"v":4})", {"alice"}, true);
  CHECK(drain(*alice).size() == 1);
  hub.publish_session("S1", R"({"v":4})", {"alice"}, true);
  CHECK(drain(*alice).size() == 1);
}

TEST_CASE("event hub: the initial state comes first, a subscriber that does not keep up ends with overflow") {
  event_hub::limits l;
  l.queue_bytes = 1000;
  event_hub hub(l);
  auto s = hub.subscribe(who("alice"), {event_hub::frame("ready", "{}"), event_hub::frame("session", R"({"v":0})")});
  REQUIRE(s);
  hub.publish_session("S1", R"({"v":1})", {"alice"}, false);
  CHECK(types(drain(*s)) == std::vector<std::string>{"ready", "session", "session"});
  // Nothing taken: the queue passes its bound and what is queued is replaced by the end.
  const std::string big(300, 'x');
  for (int i = 0; i < 5; ++i) hub.publish_session("S1", "\"" + big + std::to_string(i) + "\"", {"alice"}, false);
  auto b = s->take();
  CHECK(b.end);
  auto evs = parse(b.text);
  REQUIRE(evs.size() == 1);
  CHECK(evs[0].type == "end");
  CHECK(evs[0].data == R"({"reason":"overflow"})");
  CHECK(s->take().end);
  CHECK(s->take().text.empty());
}

TEST_CASE("event hub: at most 8 streams per user and the total, closes by login, token and user") {
  event_hub::limits l;
  l.max_subscriptions = 10;
  event_hub hub(l);
  std::vector<std::shared_ptr<event_subscription>> mine;
  for (int i = 0; i < 8; ++i) mine.push_back(hub.subscribe({"alice", role::representative, "L" + std::to_string(i), "", 0}, {}));
  for (auto& s : mine) REQUIRE(s);
  CHECK_FALSE(hub.subscribe(who("alice"), {}));
  auto t = hub.subscribe({"bob", role::representative, "", "T1", 0}, {});
  REQUIRE(t);
  REQUIRE(hub.subscribe(who("carol"), {}));
  CHECK_FALSE(hub.subscribe(who("dave"), {}));  // 10 in all
  hub.unsubscribe(mine.back());
  mine.pop_back();
  CHECK(hub.subscribe(who("dave"), {}));

  bool woken = false;
  mine[0]->set_wake([&] { woken = true; });
  hub.close_login("L0", kEventsLoggedOut);
  CHECK(woken);
  auto b = mine[0]->take();
  CHECK(b.end);
  CHECK(b.text == "event: end\ndata: {\"reason\":\"logged out\"}\n\n");
  CHECK_FALSE(mine[1]->closed());
  hub.close_token("T1", kEventsRevoked);
  CHECK(t->closed());
  hub.close_user("alice", kEventsDisabled);
  for (std::size_t i = 1; i < mine.size(); ++i) CHECK(parse(mine[i]->take().text)[0].data == R"({"reason":"account disabled"})");
  // A closed subscription queues nothing more.
  hub.publish_session("S1", "{}", {"alice"}, false);
  CHECK(mine[1]->take().text.empty());
}

namespace {

std::shared_ptr<event_subscription> subscribe(api_fixture& f, const std::string& user) {
  auto r = f.call("GET", "/api/v1/events", user);
  REQUIRE(r.status == 200);
  REQUIRE(r.content_type == "text/event-stream; charset=utf-8");
  REQUIRE(r.events);
  return r.events;
}

// The last `session` (or `session.removed`) event about `sid` in `evs`.
std::optional<event> last_about(const std::vector<event>& evs, const std::string& sid) {
  std::optional<event> out;
  for (auto& e : evs) {
    if (e.type != "session" && e.type != "session.removed") continue;
    auto v = json::parse(e.data);
    if (v.as_object()["id"].as_string() == sid) out = e;
  }
  return out;
}

}  // namespace

TEST_CASE("GET /events: the caller's sessions as they change, nobody else's, strict and authenticated") {
  api_fixture f;
  CHECK(f.call("GET", "/api/v1/events", "").status == 401);
  CHECK(api_fixture::code(f.call("GET", "/api/v1/events?since=1", "alice")) == "bad_request");
  CHECK(f.call("POST", "/api/v1/events", "alice").status == 405);

  auto alice = subscribe(f, "alice");
  auto dave = subscribe(f, "dave");
  auto bob = subscribe(f, "bob");
  auto root = subscribe(f, "root");
  auto audrey = subscribe(f, "audrey");
  auto ready = drain(*alice);
  REQUIRE(ready.size() == 1);
  CHECK(ready[0].type == "ready");
  CHECK(ready[0].data == R"({"user":"alice","role":"representative","keepalive_seconds":15})");
  for (auto* s : {dave.get(), bob.get(), root.get(), audrey.get()}) CHECK(types(drain(*s)) == std::vector<std::string>{"ready"});

  auto [sid, key] = f.customer_session();
  REQUIRE(f.call("POST", "/api/v1/sessions/attach", "alice",
                 json::serialize(json::object{{"session_key", key}, {"pmr", "TS012345678"}}))
              .status == 201);
  // The attach's answer comes after its step settled, and the event before the answer.
  auto a = last_about(drain(*alice), sid);
  REQUIRE(a);
  auto ao = json::parse(a->data).as_object();
  CHECK(ao["owner"].as_string() == "alice");
  CHECK(ao["state"].as_string() == "active");
  CHECK(ao["pmr"].as_string() == "TS012345678");

  auto g = f.call("POST", "/api/v1/sessions/" + sid + "/grants", "alice", R"({"user":"dave","scopes":["hmc"]})");
  REQUIRE(g.status == 201);
  auto d = last_about(drain(*dave), sid);
  REQUIRE(d);
  CHECK(d->type == "session");
  CHECK(json::parse(d->data).as_object()["grants"].as_array().size() == 1);
  CHECK(last_about(drain(*alice), sid));

  // A stream opened now starts with the session as it is.
  auto later = subscribe(f, "dave");
  auto lt = drain(*later);
  REQUIRE(lt.size() == 2);
  CHECK(lt[1].type == "session");
  CHECK(lt[1].data == d->data);

  REQUIRE(f.call("DELETE", "/api/v1/sessions/" + sid + "/grants/G1", "alice").status == 200);
  auto gone = drain(*dave);
  REQUIRE(gone.size() == 1);
  CHECK(gone[0].type == "session.removed");
  auto revoked = last_about(drain(*alice), sid);
  REQUIRE(revoked);
  CHECK(json::parse(revoked->data).as_object()["grants"].as_array()[0].as_object()["revoked"].as_bool());

  REQUIRE(f.call("DELETE", "/api/v1/sessions/" + sid, "alice").status == 200);
  auto end = last_about(drain(*alice), sid);
  REQUIRE(end);
  CHECK(json::parse(end->data).as_object()["state"].as_string() == "ended");
  // The ended session is every grantee's to see again (as GET /sessions shows it).
  CHECK(last_about(drain(*dave), sid)->type == "session");

  // Nobody else saw any of it: not bob, not the auditor, not the administrator.
  for (auto* s : {bob.get(), root.get(), audrey.get()}) CHECK(drain(*s).empty());
}

TEST_CASE("GET /events: logout, a revoked token and a disabled account end their streams") {
  api_fixture f;
  auto login = f.call("POST", "/api/v1/login", "", R"({"user":"dave","password":"password of dave"})");
  REQUIRE(login.status == 200);
  const auto cookie = api_fixture::cookie_of(login);
  REQUIRE_FALSE(cookie.empty());
  auto by_cookie = f.call("GET", "/api/v1/events", "", "", {{"Cookie", cookie}});
  REQUIRE(by_cookie.events);
  auto by_token = subscribe(f, "dave");
  (void)by_cookie.events->take();
  (void)by_token->take();

  auto csrf = std::string(api_fixture::obj(login)["csrf_token"].as_string());
  REQUIRE(f.call("POST", "/api/v1/logout", "", "", {{"Cookie", cookie}, {"X-CSRF-Token", csrf}}).status == 200);
  auto b = by_cookie.events->take();
  CHECK(b.end);
  CHECK(b.text == "event: end\ndata: {\"reason\":\"logged out\"}\n\n");
  CHECK_FALSE(by_token->closed());

  // dave revokes the token his stream uses.
  auto tokens = f.call("GET", "/api/v1/tokens", "dave");
  REQUIRE(tokens.status == 200);
  auto list = api_fixture::obj(tokens)["tokens"].as_array();
  REQUIRE(list.size() == 1);
  auto id = std::string(list[0].as_object()["id"].as_string());
  REQUIRE(f.call("DELETE", "/api/v1/tokens/" + id, "dave").status == 200);
  CHECK(by_token->take().text == "event: end\ndata: {\"reason\":\"credential revoked\"}\n\n");

  auto bob = subscribe(f, "bob");
  REQUIRE(f.call("POST", "/api/v1/users/bob/disable", "root").status == 200);
  auto evs = parse(bob->take().text);
  CHECK(evs.back().type == "end");
  CHECK(evs.back().data == R"({"reason":"account disabled"})");
}

TEST_CASE("GET /events: 24 concurrent grants and 12 revocations, every stream ends on the session's final state") {
  api_fixture f;
  constexpr int kUsers = 24;
  std::vector<std::string> users;
  for (int i = 0; i < kUsers; ++i) {
    users.push_back("dev" + std::to_string(i));
    f.add_user(users.back(), "developer");
  }
  auto owner = subscribe(f, "alice");
  std::vector<std::shared_ptr<event_subscription>> subs;
  for (auto& u : users) subs.push_back(subscribe(f, u));
  auto [sid, key] = f.customer_session();
  REQUIRE(f.call("POST", "/api/v1/sessions/attach", "alice",
                 json::serialize(json::object{{"session_key", key}, {"pmr", "TS012345678"}}))
              .status == 201);

  // Each stream is read while the changes run, as a client would.
  std::vector<std::vector<event>> seen(kUsers + 1);
  std::atomic<bool> changing{true};
  std::thread reader([&] {
    while (changing) {
      for (int i = 0; i < kUsers; ++i) {
        auto e = drain(*subs[static_cast<std::size_t>(i)]);
        seen[static_cast<std::size_t>(i)].insert(seen[static_cast<std::size_t>(i)].end(), e.begin(), e.end());
      }
      auto e = drain(*owner);
      seen[kUsers].insert(seen[kUsers].end(), e.begin(), e.end());
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
  });
  std::vector<std::thread> grants;
  std::atomic<int> ok{0};
  for (auto& u : users)
    grants.emplace_back([&, u] {
      if (f.call("POST", "/api/v1/sessions/" + sid + "/grants", "alice", R"({"user":")" + u + R"("})").status == 201) ++ok;
    });
  for (auto& t : grants) t.join();
  REQUIRE(ok == kUsers);
  auto now = api_fixture::obj(f.call("GET", "/api/v1/sessions/" + sid, "alice"));
  std::map<std::string, std::string> gid;
  for (auto& g : now["grants"].as_array()) gid[std::string(g.as_object().at("user").as_string())] = std::string(g.as_object().at("id").as_string());
  std::vector<std::thread> revokes;
  for (int i = 0; i < kUsers; i += 2)
    revokes.emplace_back([&, i] {
      if (f.call("DELETE", "/api/v1/sessions/" + sid + "/grants/" + gid[users[static_cast<std::size_t>(i)]], "alice").status == 200) ++ok;
    });
  for (auto& t : revokes) t.join();
  changing = false;
  reader.join();
  REQUIRE(ok == kUsers + kUsers / 2);
  for (int i = 0; i < kUsers; ++i) {
    auto e = drain(*subs[static_cast<std::size_t>(i)]);
    seen[static_cast<std::size_t>(i)].insert(seen[static_cast<std::size_t>(i)].end(), e.begin(), e.end());
  }
  auto e = drain(*owner);
  seen[kUsers].insert(seen[kUsers].end(), e.begin(), e.end());

  auto final_state = api_fixture::obj(f.call("GET", "/api/v1/sessions/" + sid, "alice"));
  final_state.erase("timeline");
  auto last = last_about(seen[kUsers], sid);
  REQUIRE(last);
  CHECK(json::parse(last->data).as_object() == final_state);
  for (int i = 0; i < kUsers; ++i) {
    INFO(users[static_cast<std::size_t>(i)]);
    auto l = last_about(seen[static_cast<std::size_t>(i)], sid);
    REQUIRE(l);
    if (i % 2 == 0) {
      CHECK(l->type == "session.removed");
    } else {
      CHECK(l->type == "session");
      CHECK(json::parse(l->data).as_object() == final_state);
    }
  }
}
