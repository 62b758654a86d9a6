// Live events (docs/api.md §5.6) through the real programs: curl holds server-sent-event
// streams on a real gateway over TLS while a real agent's session is attached, granted, used
// by a channel, revoked and ended. Each stream sees what its caller may see and nothing else,
// channel byte counts move while the channel is open, administrators see the machine come and
// go, a keepalive arrives when nothing happens, and logout, a revoked token and the gateway's
// stop each end their streams at once.
#include <boost/json/parse.hpp>
#include <csignal>

#include "tests/integration/gateway_fixture.hpp"
#include "tests/support/echo_server.hpp"

using namespace rsgate;
using namespace rsgate::test;
namespace json = boost::json;
using namespace std::chrono_literals;

namespace {

struct sse_event {
  std::string type;
  json::object data;
};

// `curl -N` holding GET /api/v1/events; the response head is kept for its checks.
struct sse_stream {
  std::unique_ptr<child> curl;
  std::vector<std::string> head;  // status line and header lines, as received (lower-cased names)
  bool keepalive_seen = false;

  sse_stream(gateway_fixture& f, std::vector<std::string> auth) {
    std::vector<std::string> a = {"curl", "-sS", "-N", "-i", "--max-time", "300", "--cacert", (f.dir / "ca.pem").string()};
    a.insert(a.end(), auth.begin(), auth.end());
    a.push_back("https://" + f.https + "/api/v1/events");
    curl = std::make_unique<child>(a, f.t / "curl-events.err");
    for (;;) {
      auto l = curl->read_line(kWait);
      REQUIRE(l);
      if (!l->empty() && l->back() == '\r') l->pop_back();
      if (l->empty()) break;
      std::string low = *l;
      for (auto& ch : low) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
      head.push_back(low);
    }
  }
  [[nodiscard]] bool has_header(const std::string& line) const {
    return std::find(head.begin(), head.end(), line) != head.end();
  }
  // The next event within `timeout`; nullopt when none came or the stream ended.
  std::optional<sse_event> next(std::chrono::milliseconds timeout = kWait) {
    const auto until = std::chrono::steady_clock::now() + timeout;
    sse_event e;
    std::string data;
    for (;;) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(until - std::chrono::steady_clock::now());
      if (left.count() <= 0) return std::nullopt;
      auto l = curl->read_line(left);
      if (!l) return std::nullopt;
      if (l->starts_with(":")) {
        keepalive_seen = keepalive_seen || *l == ": keepalive";
        continue;
      }
      if (l->starts_with("event: ")) e.type = l->substr(7);
      if (l->starts_with("data: ")) data = l->substr(6);
      if (l->empty() && !e.type.empty()) {
        e.data = json::parse(data).as_object();
        return e;
      }
    }
  }
  // Reads until an event satisfying `p` (FAILs with what came instead).
  sse_event until(const std::function<bool(const sse_event&)>& p, std::chrono::milliseconds timeout = kWait) {
    std::string seen;
    const auto end = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < end) {
      auto e = next(std::chrono::duration_cast<std::chrono::milliseconds>(end - std::chrono::steady_clock::now()));
      if (!e) break;
      if (p(*e)) return *e;
      seen += e->type + " " + json::serialize(e->data) + "\n";
    }
    FAIL("no such event; seen:\n" << seen);
    return {};
  }
};

std::vector<std::string> bearer(gateway_fixture& f, const std::string& user) {
  return {"-H", "Authorization: Bearer " + f.tokens.at(user)};
}

bool about(const sse_event& e, const std::string& sid) {
  return e.type == "session" && e.data.contains("id") && e.data.at("id").as_string() == sid;
}

}  // namespace

TEST_CASE("live events over real TLS: each caller sees its sessions change, byte counts move, streams end") {
  std::signal(SIGPIPE, SIG_IGN);
  gateway_fixture f;
  f.add_user("adam", "admin");
  f.add_user("audrey", "auditor");
  echo_server echo;
  const auto target = "127.0.0.1:" + std::to_string(echo.port());

  // Input is strict, credentials are required, the stream answers only GET.
  auto strict = f.raw("GET", "/api/v1/events?since=5", {"Authorization: Bearer " + f.tokens.at("dave")});
  CHECK(strict.first == 400);
  CHECK(strict.second.find("since") != std::string::npos);
  CHECK(f.raw("GET", "/api/v1/events", {}).first == 401);
  CHECK(f.raw("POST", "/api/v1/events", {"Authorization: Bearer " + f.tokens.at("dave")}).first == 405);

  sse_stream alice(f, bearer(f, "alice")), dave(f, bearer(f, "dave")), bob(f, bearer(f, "bob")),
      adam(f, bearer(f, "adam")), audrey(f, bearer(f, "audrey"));
  CHECK(alice.head[0].starts_with("http/1.1 200"));
  CHECK(alice.has_header("content-type: text/event-stream; charset=utf-8"));
  CHECK(alice.has_header("transfer-encoding: chunked"));
  CHECK(alice.has_header("cache-control: no-store"));
  CHECK(alice.has_header("content-security-policy: default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' "
                         "data:; connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"));
  for (auto* s : {&alice, &dave, &bob, &adam, &audrey}) {
    auto r = s->next();
    REQUIRE(r);
    CHECK(r->type == "ready");
  }
  CHECK_FALSE(audrey.next(100ms).has_value());

  auto profile = f.enroll("7801700", false, {"hmc=" + target});
  auto sess = start_and_attach(f, profile, "alice", "TS000001700");
  auto online = adam.until([](const sse_event& e) { return e.type == "machine"; });
  CHECK(online.data["machine"].as_string() == "9009-42A*7801700");
  CHECK(online.data["online"].as_bool());
  auto attached = alice.until([&](const sse_event& e) { return about(e, sess.sid) && e.data.at("owner").as_string() == "alice"; });
  CHECK(attached.data["state"].as_string() == "active");
  CHECK(attached.data["connected"].as_bool());
  CHECK(attached.data["pmr"].as_string() == "TS000001700");

  const auto base = "/api/v1/sessions/" + sess.sid;
  REQUIRE(f.api("POST", base + "/grants", "alice", R"({"user":"dave","scopes":["hmc"]})").status == 201);
  auto granted = dave.until([&](const sse_event& e) { return about(e, sess.sid); });
  CHECK(granted.data["grants"].as_array()[0].as_object()["user"].as_string() == "dave");

  // dave's channel carries 200 KB each way and stays open: the counts show on his stream.
  {
    auto [conn, port] = connect_for(f, "dave", sess.sid, "hmc", "ssh");
    int s = connect_local(port);
    REQUIRE(s >= 0);
    auto data = random_bytes(200'000);
    CHECK(echo_back(s, data) == data);
    auto counted = dave.until([&](const sse_event& e) {
      if (!about(e, sess.sid) || e.data.at("channels").as_array().empty()) return false;
      auto c = e.data.at("channels").as_array()[0].as_object();
      return c["bytes_to_agent"].as_int64() >= 200'000 && c["bytes_from_agent"].as_int64() >= 200'000;
    });
    auto c = counted.data["channels"].as_array()[0].as_object();
    CHECK(c["user"].as_string() == "dave");
    CHECK(c["scope"].as_string() == "hmc");
    // GET shows the same live counts.
    auto now = f.api("GET", base, "dave");
    CHECK(now.body["channels"].as_array()[0].as_object()["bytes_to_agent"].as_int64() >= 200'000);
    ::close(s);
    (void)dave.until([&](const sse_event& e) { return about(e, sess.sid) && e.data.at("channels").as_array().empty(); });
  }

  // Revoked: the session leaves dave's view.
  REQUIRE(f.api("DELETE", base + "/grants/G1", "alice").status == 200);
  auto removed = dave.until([](const sse_event& e) { return e.type != "session"; });
  CHECK(removed.type == "session.removed");
  CHECK(removed.data["id"].as_string() == sess.sid);

  REQUIRE(f.api("DELETE", base, "alice").status == 200);
  (void)alice.until([&](const sse_event& e) { return about(e, sess.sid) && e.data.at("state").as_string() == "ended"; });
  auto offline = adam.until([](const sse_event& e) { return e.type == "machine" && !e.data.at("online").as_bool(); });
  CHECK(offline.data["machine"].as_string() == "9009-42A*7801700");

  // bob (another representative), the auditor and the administrator saw no session.
  for (auto* s : {&bob, &audrey, &adam})
    while (auto e = s->next(500ms)) CHECK(e->type != "session");
  // Nothing for bob since `ready`: a keepalive comes within 15 s.
  for (int i = 0; i < 20 && !bob.keepalive_seen; ++i) CHECK_FALSE(bob.next(1s).has_value());
  CHECK(bob.keepalive_seen);

  // A cookie login's stream ends at its logout.
  auto jar = (f.t / "jar").string();
  auto login = run({"curl", "-sS", "--cacert", (f.dir / "ca.pem").string(), "-c", jar, "-H",
                    "Content-Type: application/json", "--data", R"({"user":"dave","password":"a long enough password"})",
                    "https://" + f.https + "/api/v1/login"});
  auto csrf = std::string(json::parse(login.out).as_object()["csrf_token"].as_string());
  sse_stream by_cookie(f, {"-b", jar});
  REQUIRE(by_cookie.next()->type == "ready");
  auto out = run({"curl", "-sS", "--cacert", (f.dir / "ca.pem").string(), "-b", jar, "-X", "POST", "-H",
                  "X-CSRF-Token: " + csrf, "https://" + f.https + "/api/v1/logout"});
  CHECK(out.out.find("\"logged_out\":true") != std::string::npos);
  auto bye = by_cookie.until([](const sse_event& e) { return e.type == "end"; });  // after dave's ended session
  CHECK(bye.data["reason"].as_string() == "logged out");
  CHECK(by_cookie.curl->wait(10s) == 0);  // the response ended properly (the last chunk)

  // alice revokes the token her own stream uses.
  auto mine = f.api("GET", "/api/v1/tokens", "alice");
  auto id = std::string(mine.body["tokens"].as_array()[0].as_object()["id"].as_string());
  REQUIRE(f.api("DELETE", "/api/v1/tokens/" + id, "alice").status == 200);
  auto revoked = alice.until([](const sse_event& e) { return e.type == "end"; });
  CHECK(revoked.data["reason"].as_string() == "credential revoked");

  // The gateway stops: the streams end with it at once, not at its grace's end.
  const auto t0 = std::chrono::steady_clock::now();
  f.gw->signal(SIGTERM);
  auto last = dave.until([](const sse_event& e) { return e.type == "end"; }, 10s);
  CHECK(last.data["reason"].as_string() == "gateway stopping");
  CHECK(dave.curl->wait(10s) == 0);
  CHECK(f.gw->wait(20s) == 0);
  CHECK(std::chrono::steady_clock::now() - t0 < 10s);
}
