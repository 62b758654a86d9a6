// The session policy under concurrency and hostile input, in-process (the integration tests
// repeat the essentials through the real gateway): concurrent grants and transfers, a hammer
// of every session operation from many threads whose end state must agree exactly with the
// journal, strict input through the API, a revocation while the journal cannot write, and the
// refusals that used to leave no trace (control characters in a login name, an address
// lock-out, bad bearer tokens, a refused attach without its session, a long audit query).
#include "gateway/service.hpp"

#include <atomic>
#include <barrier>
#include <condition_variable>
#include <deque>
#include <filesystem>
#include <fstream>
#include <random>

#include "journal/tool/format.hpp"
#include "tests/gateway/service_fixture.hpp"
#include "tests/support/fsize_limit.hpp"
#include "tests/support/session_replay.hpp"

using namespace rsgate;
using namespace rsgate::gateway;
using namespace rsgate::test;

namespace {

// A small worker pool, as the HTTPS server gives the service: policy steps that waited for
// the journal continue here.
class pool {
 public:
  explicit pool(int n) {
    for (int i = 0; i < n; ++i) threads_.emplace_back([this] { run(); });
  }
  ~pool() {
    {
      std::lock_guard l(mu_);
      stop_ = true;
    }
    cv_.notify_all();
    for (auto& t : threads_) t.join();
  }
  void post(std::function<void()> f) {
    {
      std::lock_guard l(mu_);
      q_.push_back(std::move(f));
    }
    cv_.notify_one();
  }

 private:
  void run() {
    for (;;) {
      std::function<void()> f;
      {
        std::unique_lock l(mu_);
        cv_.wait(l, [&] { return stop_ || !q_.empty(); });
        if (q_.empty()) return;
        f = std::move(q_.front());
        q_.pop_front();
      }
      f();
    }
  }
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> q_;
  bool stop_ = false;
  std::vector<std::thread> threads_;
};

struct policy_fixture : api_fixture {
  pool workers{2};
  std::string id, base;
  policy_fixture() {
    svc->set_executor([this](std::function<void()> f) { workers.post(std::move(f)); });
    for (int i = 1; i <= 4; ++i) add_user("rep" + std::to_string(i), "representative");
    for (int i = 1; i <= 6; ++i) add_user("dev" + std::to_string(i), "developer");
    auto [sid, key] = customer_session();
    id = sid;
    base = "/api/v1/sessions/" + id;
    REQUIRE(call("POST", "/api/v1/sessions/attach", "alice",
                 json::serialize(json::object{{"session_key", key}, {"pmr", "TS012345678"}})).status == 201);
  }
  ~policy_fixture() { svc->set_executor({}); }
  std::vector<json::object> session_entries() {
    journal::reader rd({layout.journal_db()});
    journal::filter f;
    f.session_id = id;
    f.limit = journal::kMaxQueryLimit;
    std::vector<json::object> out;
    for (auto& e : rd.query(f).entries) out.push_back(journal::to_json_object(e));
    return out;
  }
  std::vector<std::string> disagreements() {
    auto s = obj(call("GET", base, "audrey"));
    return compare_with_state(replay_session(session_entries()), s);
  }
  std::string owner() { return std::string(obj(call("GET", base, "audrey"))["owner"].as_string()); }
};

// Runs `n` calls at once (released together by a barrier); returns their answers.
std::vector<http_response> at_once(int n, const std::function<http_response(int)>& f) {
  std::barrier start(n);
  std::vector<http_response> out(static_cast<std::size_t>(n));
  std::vector<std::thread> ts;
  for (int i = 0; i < n; ++i)
    ts.emplace_back([&, i] {
      start.arrive_and_wait();
      out[static_cast<std::size_t>(i)] = f(i);
    });
  for (auto& t : ts) t.join();
  return out;
}

}  // namespace

TEST_CASE("concurrent grants get distinct ids, one live grant per user, however they race") {
  policy_fixture f;
  for (int round = 0; round < 10; ++round) {
    // Six grants to six users at once: six distinct ids.
    auto answers = at_once(6, [&](int i) {
      return f.call("POST", f.base + "/grants", "alice", R"({"user":"dev)" + std::to_string(i + 1) + R"("})");
    });
    std::set<std::string> ids;
    for (auto& a : answers) {
      REQUIRE(a.status == 201);
      auto s = f.obj(a);
      for (auto& g : s["grants"].as_array()) ids.insert(std::string(g.as_object().at("id").as_string()));
    }
    // Six racing grants to one user: exactly one.
    auto same = at_once(6, [&](int) { return f.call("POST", f.base + "/grants", "alice", R"({"user":"bob"})"); });
    CHECK(std::count_if(same.begin(), same.end(), [](auto& a) { return a.status == 201; }) == 1);
    CHECK(std::count_if(same.begin(), same.end(), [](auto& a) { return a.status == 409; }) == 5);
    auto s = f.obj(f.call("GET", f.base, "alice"));
    std::set<std::string> live;
    for (auto& gv : s["grants"].as_array()) {
      auto& g = gv.as_object();
      if (!g.at("revoked").as_bool()) CHECK(live.insert(std::string(g.at("id").as_string())).second);
    }
    CHECK(live.size() == 7);
    // Revoke them all at once: each exactly once.
    std::vector<std::string> gids(live.begin(), live.end());
    auto revoked = at_once(static_cast<int>(gids.size()), [&](int i) {
      return f.call("DELETE", f.base + "/grants/" + gids[static_cast<std::size_t>(i)], "alice");
    });
    for (auto& a : revoked) CHECK(a.status == 200);
  }
  CHECK(f.disagreements().empty());
}

TEST_CASE("concurrent transfers: one wins, and only the winner is journaled as a transfer") {
  policy_fixture f;
  for (int round = 0; round < 10; ++round) {
    auto from = f.owner();
    auto answers = at_once(3, [&](int i) {
      auto to = "rep" + std::to_string(i + 1);
      return f.call("POST", f.base + "/transfer", from, R"({"user":")" + to + R"("})");
    });
    CHECK(std::count_if(answers.begin(), answers.end(), [](auto& a) { return a.status == 200; }) == 1);
    for (auto& a : answers) CHECK((a.status == 200 || a.status == 403));  // the losers are no longer the owner
    // Hand it back to alice for the next round.
    REQUIRE(f.call("POST", f.base + "/transfer", f.owner(), R"({"user":"alice"})").status == 200);
  }
  CHECK(f.count("session.transfer", journal::outcome::ok) == 20);
  auto problems = f.disagreements();
  INFO(problems.size() << " problem(s), first: " << (problems.empty() ? "" : problems[0]));
  CHECK(problems.empty());
}

TEST_CASE("a hammer of grants, revokes, transfers, channels, attaches and an end: state and journal agree") {
  policy_fixture f;
  std::atomic<bool> stop{false};
  std::atomic<int> calls{0}, server_errors{0};
  auto worker = [&](unsigned seed) {
    std::mt19937 rng(seed);
    auto pick = [&](int n) { return static_cast<int>(rng() % static_cast<unsigned>(n)); };
    std::vector<std::string> reps = {"alice", "bob", "rep1", "rep2", "rep3", "rep4"};
    while (!stop) {
      auto me = reps[static_cast<std::size_t>(pick(6))];
      http_response r;
      switch (pick(7)) {
        case 0:
        case 1:
          r = f.call("POST", f.base + "/grants", me, R"({"user":"dev)" + std::to_string(pick(6) + 1) + R"("})");
          break;
        case 2: r = f.call("DELETE", f.base + "/grants/G" + std::to_string(pick(40) + 1), me); break;
        case 3: r = f.call("POST", f.base + "/transfer", me, R"({"user":")" + reps[static_cast<std::size_t>(pick(6))] + R"("})"); break;
        case 4:
          r = f.call("POST", f.base + "/channels", "dev" + std::to_string(pick(6) + 1), R"({"scope":"hmc","access_type":"ssh"})");
          break;
        case 5: r = f.call("POST", "/api/v1/sessions/attach", me, R"({"machine":"9009-42A*7801234","pmr":"TS000000001"})"); break;
        default: r = f.call("GET", f.base, me); break;
      }
      ++calls;
      if (r.status >= 500) ++server_errors;
    }
  };
  std::vector<std::thread> ts;
  for (unsigned i = 0; i < 8; ++i) ts.emplace_back(worker, 1000 + i);
  std::this_thread::sleep_for(std::chrono::milliseconds(1500));
  // The owner ends it while everything else still runs; nothing may be granted after.
  for (int i = 0; i < 20; ++i) {
    auto r = f.call("DELETE", f.base, f.owner());
    if (r.status == 200) break;
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  stop = true;
  for (auto& t : ts) t.join();
  INFO(calls.load() << " calls");
  CHECK(calls > 100);
  CHECK(server_errors == 0);
  CHECK(f.obj(f.call("GET", f.base, "audrey"))["state"].as_string() == "ended");
  auto problems = f.disagreements();
  INFO(problems.size() << " problem(s), first: " << (problems.empty() ? "" : problems[0]));
  CHECK(problems.empty());
}

TEST_CASE("strict input: misspelled fields, stray parameters and partial numbers are refused, naming them") {
  policy_fixture f;
  auto msg = [&](const http_response& r) {
    return std::string(f.obj(r)["error"].as_object()["message"].as_string());
  };
  // The misspelled restriction of the report: refused, and nothing granted.
  auto typo = f.call("POST", f.base + "/grants", "alice",
                     R"({"user":"dave","scope":["hmc"],"access_type":["ssh"],"expires":"1h"})");
  CHECK(typo.status == 400);
  CHECK_THAT(msg(typo), Catch::Contains("\"scope\"") && Catch::Contains("\"access_type\"") && Catch::Contains("\"expires\""));
  CHECK(f.obj(f.call("GET", f.base, "alice"))["grants"].as_array().empty());
  CHECK(f.count("session.grant", journal::outcome::ok) == 0);
  for (auto body : {R"({"user":"dave","scopes":[]})", R"({"user":"dave","expires_in":2.9})",
                    R"({"user":"dave","expires_in":"5x"})", R"({"user":"dave","expires_in":true})",
                    R"({"user":"dave","expires_in":0})", R"({"user":"dave","user":"bob"})",
                    R"({"user":"da ve"})", R"({"user":"dave","scopes":["*","hmc"]})"}) {
    INFO(body);
    CHECK(f.call("POST", f.base + "/grants", "alice", body).status == 400);
  }
  auto j = f.call("GET", "/api/v1/journal?sesion=" + f.id, "audrey");
  CHECK(j.status == 400);
  CHECK_THAT(msg(j), Catch::Contains("\"sesion\""));
  for (auto q : {"limit=1e2", "limit=5x", "limit=2.9", "limit=-1", "limit=0", "limit=1&limit=2", "kind=x%01"}) {
    INFO(q);
    CHECK(f.call("GET", std::string("/api/v1/journal?") + q, "audrey").status == 400);
  }
  CHECK(f.call("GET", "/api/v1/journal?limit=10", "audrey").status == 200);
  CHECK(f.call("GET", "/api/v1/journal?subject=dave&actor=alice", "audrey").status == 200);
  CHECK(f.call("GET", f.base + "?verbose=1", "alice").status == 400);
  CHECK(f.call("DELETE", f.base, "alice", R"({"reason":"x"})").status == 400);
  CHECK(f.call("GET", "/api/v1/sessions?state=active&page=2", "alice").status == 400);
  CHECK(f.call("POST", "/api/v1/login", "", R"({"user":"alice","password":"x","otp":"123456"})").status == 400);
  // Explicit wildcards and explicit lists still work.
  auto all = f.call("POST", f.base + "/grants", "alice", R"({"user":"dave","scopes":["*"],"expires_in":"2h"})");
  REQUIRE(all.status == 201);
  auto g = f.obj(all)["grants"].as_array()[0].as_object();
  CHECK(json::serialize(g["scopes"]) == R"(["*"])");
  CHECK(json::serialize(g["access_types"]) == R"(["*"])");
  CHECK(f.disagreements().empty());
}

TEST_CASE("a revocation while the journal cannot write: effective at once, recorded in order later") {
  policy_fixture f;
  REQUIRE(f.call("POST", f.base + "/grants", "alice", R"({"user":"dave"})").status == 201);
  {
    fsize_limit full(1);
    auto r = f.call("DELETE", f.base + "/grants/G1", "alice");
    CHECK(r.status == 200);  // fail closed: the access is gone whatever the journal says
    CHECK(f.call("POST", f.base + "/channels", "dave", R"({"scope":"hmc","access_type":"ssh"})").status == 403);
    // Nothing that grants access may overtake the unwritten record.
    auto g = f.call("POST", f.base + "/grants", "alice", R"({"user":"dev1"})");
    CHECK(g.status == 503);
  }
  CHECK(f.count("session.revoke", journal::outcome::ok) == 0);
  f.svc->housekeeping();  // writes what was kept
  CHECK(f.eventually("session.revoke", journal::outcome::ok, 1) == 1);
  // The kept records are appended one after the other: wait for the last one as well.
  CHECK(f.eventually("channel.open", journal::outcome::denied, 1) == 1);
  auto entries = f.session_entries();
  auto revoke = std::find_if(entries.begin(), entries.end(), [](auto& e) { return str_of(e, "kind") == "session.revoke"; });
  REQUIRE(revoke != entries.end());
  CHECK(revoke->at("detail").as_object().contains("effective_at"));
  // The channel refused meanwhile was kept too, and written after the revocation it follows.
  REQUIRE(revoke + 1 != entries.end());
  CHECK(str_of(*(revoke + 1), "kind") == "channel.open");
  CHECK(str_of(*(revoke + 1), "outcome") == "denied");
  CHECK(f.call("POST", f.base + "/grants", "alice", R"({"user":"dev1"})").status == 201);
  CHECK(f.disagreements().empty());
}

TEST_CASE("refusals that used to leave no trace are journaled") {
  manual_clock clk(system_clock::instance().now());
  api_fixture f(clk);
  auto entries = [&](const std::string& kind) {
    journal::reader rd({f.layout.journal_db()});
    journal::filter flt;
    flt.kind = kind;
    flt.limit = 1000;
    return rd.query(flt).entries;
  };
  SECTION("a login name with control characters is journaled escaped") {
    for (auto name : {"al\\tice", "a\\u0000b", "x\\u0001", "esc\\u001b[2J", "del\\u007f"}) {
      auto r = f.call("POST", "/api/v1/login", "", std::string(R"({"user":")") + name + R"(","password":"nope"})");
      CHECK(r.status == 401);
    }
    auto e = entries("user.login");
    REQUIRE(e.size() == 5);
    CHECK(e[0].actor == "al\\x09ice");
    CHECK(e[1].actor == "a\\x00b");
    CHECK(e[3].actor == "esc\\x1b[2J");
    CHECK(e[4].actor == "del\\x7f");
    CHECK(e[0].detail.find("\"name_escaped\":true") != std::string::npos);
  }
  SECTION("an address lock-out is journaled; floods are summarized, not dropped") {
    for (int i = 0; i < 25; ++i)
      (void)f.call("POST", "/api/v1/login", "", R"({"user":"u)" + std::to_string(i) + R"(","password":"nope"})");
    auto lock = entries("user.lockout");
    REQUIRE(lock.size() == 1);
    CHECK(lock[0].detail.find("\"locked\":\"address\"") != std::string::npos);
    CHECK(lock[0].source == "203.0.113.9:40000");
    CHECK(f.call("POST", "/api/v1/login", "", R"({"user":"alice","password":"password of alice"})").status == 429);
    auto individual = entries("user.login").size();
    CHECK(individual == 10);  // the per-address, per-minute bound
    clk.advance(61'000'000);
    f.svc->housekeeping();
    auto after = entries("user.login");
    for (int i = 0; i < 100 && after.size() == individual; ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
      after = entries("user.login");
    }
    REQUIRE(after.size() == individual + 1);
    CHECK(after.back().detail.find("\"count\":16") != std::string::npos);  // 15 failures + the 429
  }
  SECTION("unknown, expired and disabled-account bearer tokens are journaled with the token's keyed hash") {
    {
      state_store st(f.layout.state_db());
      st.add_token({token_hash("rsg_expired"), "alice", 1, 2, false});
    }
    CHECK(f.call("GET", "/api/v1/sessions", "", "", {{"Authorization", "Bearer rsg_forged"}}).status == 401);
    CHECK(f.call("GET", "/api/v1/sessions", "", "", {{"Authorization", "Bearer rsg_expired"}}).status == 401);
    auto e = entries("user.login");
    REQUIRE(e.size() == 2);
    CHECK(e[0].detail.find("unknown_token") != std::string::npos);
    CHECK(e[0].secret_hmac == f.svc->hmac().hash_of("rsg_forged"));
    CHECK(e[1].detail.find("expired_token") != std::string::npos);
  }
  SECTION("a refused attach names the locked session; a long UTF-8 audit query is answered") {
    auto [id, key] = f.customer_session();
    REQUIRE(f.call("POST", "/api/v1/sessions/attach", "alice",
                   json::serialize(json::object{{"session_key", key}, {"pmr", "TS012345678"}})).status == 201);
    REQUIRE(f.call("POST", "/api/v1/sessions/attach", "bob", R"({"machine":"9009-42A*7801234","pmr":"TS000000777"})").status == 409);
    auto refused = entries("session.attach");
    REQUIRE(refused.size() == 2);
    CHECK(refused[1].session_id == id);
    auto pmr = f.obj(f.call("GET", "/api/v1/pmrs/TS000000777/sessions", "audrey"));
    REQUIRE(pmr["sessions"].as_array().size() == 1);
    CHECK(pmr["sessions"].as_array()[0].as_object()["id"].as_string() == id);
    std::string accents;
    for (int i = 0; i < 100; ++i) accents += "%C3%A9";  // "é" x 100: 200 bytes
    auto q = f.call("GET", "/api/v1/journal?session=" + std::string(90, 'x') + "&actor=" + accents, "audrey");
    CHECK(q.status == 200);
    // Raw (unencoded) UTF-8 in the target, as curl sends it: refused as a malformed URL, not
    // a 503 from a detail cut inside a character.
    std::string raw;
    for (int i = 0; i < 100; ++i) raw += "\xc3\xa9";
    CHECK(f.call("GET", "/api/v1/journal?session=" + std::string(97, 'x') + "&actor=" + raw, "audrey").status == 400);
    auto audit = entries("audit.query");
    REQUIRE_FALSE(audit.empty());
    CHECK(audit.back().detail.find("\"endpoint\":\"journal\"") != std::string::npos);
  }
}

TEST_CASE("the fault firewall: a journal file that cannot be read answers 500, and the gateway recovers") {
  api_fixture f;
  auto [id, key] = f.customer_session();
  REQUIRE(f.call("POST", "/api/v1/sessions/attach", "alice",
                 json::serialize(json::object{{"session_key", key}, {"pmr", "TS012345678"}})).status == 201);
  // Readers open journal.db afresh for each query; the writer keeps its open file. Put
  // something that is not a database where the readers look.
  auto db = f.layout.journal_db().string();
  for (auto ext : {"", "-wal", "-shm"}) std::filesystem::rename(db + ext, db + ext + ".aside");
  { std::ofstream(db) << std::string(4096, 'x'); }
  for (auto target : {"/api/v1/journal", "/api/v1/journal/verify", "/api/v1/pmrs/TS012345678/sessions"}) {
    auto r = f.call("GET", target, "audrey");
    INFO(target);
    CHECK(r.status == 500);
    CHECK(f.code(r) == "internal");
  }
  CHECK(f.call("GET", "/api/v1/sessions/" + id, "alice").status == 500);
  std::filesystem::remove(db);
  for (auto ext : {"", "-wal", "-shm"}) std::filesystem::rename(db + ext + ".aside", db + ext);
  CHECK(f.call("GET", "/api/v1/journal", "audrey").status == 200);
  CHECK(f.call("GET", "/api/v1/sessions/" + id, "alice").status == 200);
}

TEST_CASE("kept records stay in order: a later refusal waits behind them, and shutdown writes them oldest first") {
  policy_fixture f;
  REQUIRE(f.call("POST", f.base + "/grants", "alice", R"({"user":"dave"})").status == 201);
  REQUIRE(f.call("POST", f.base + "/grants", "alice", R"({"user":"dev1"})").status == 201);
  {
    fsize_limit full(1);
    CHECK(f.call("DELETE", f.base + "/grants/G1", "alice").status == 200);
  }
  // The journal works again, but the revocation is still kept: a refusal about G1 must not be
  // written before it.
  CHECK(f.call("DELETE", f.base + "/grants/G1", "alice").status == 409);
  {
    fsize_limit full(1);
    CHECK(f.call("DELETE", f.base + "/grants/G2", "alice").status == 200);
    CHECK(f.call("DELETE", f.base, "alice").status == 200);
  }
  f.svc->end_all_sessions("gateway shutdown");
  std::vector<std::string> order;
  for (auto& e : f.session_entries()) {
    auto kind = str_of(e, "kind");
    if (kind == "session.revoke" || kind == "session.end")
      order.push_back(kind + ":" + str_of(e, "outcome") + ":" + str_of(e.at("detail").as_object(), "grant"));
  }
  CHECK(order == std::vector<std::string>{"session.revoke:ok:G1", "session.revoke:denied:G1", "session.revoke:ok:G2",
                                          "session.end:ok:"});
  CHECK(f.disagreements().empty());
}
