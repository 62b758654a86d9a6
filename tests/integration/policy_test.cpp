// Trust under pressure through the real gateway (issue 7): representatives as concurrent curl
// clients against `rsgate serve` with a real agent attached. Racing grants and transfers, a
// hammer of every session operation whose end state must agree exactly with the journal (read
// with the real `rsgate journal query`), strict input, refusals that used to leave no trace,
// a journal file the readers cannot open while requests run, and sessions that must not vanish
// from the journal when the gateway stops or is killed.
#include <atomic>
#include <barrier>
#include <filesystem>
#include <random>

#include "tests/integration/gateway_fixture.hpp"
#include "tests/support/echo_server.hpp"
#include "tests/support/session_replay.hpp"

using namespace rsgate;
using namespace rsgate::test;

namespace {

struct attached_gateway {
  gateway_fixture f;
  attached a;
  std::string base;
  attached_gateway() {
    for (auto [name, role] : {std::pair{"rep1", "representative"}, std::pair{"rep2", "representative"},
                              std::pair{"audrey", "auditor"}, std::pair{"dev1", "developer"},
                              std::pair{"dev2", "developer"}, std::pair{"dev3", "developer"}})
      f.add_user(name, role);
    a = start_and_attach(f, f.enroll("7801300"), "alice", "TS012345678");
    base = "/api/v1/sessions/" + a.sid;
  }
  ~attached_gateway() {
    if (a.agent) {
      (void)run({agent_binary(), "stop", "--control", a.control});
      (void)a.agent->wait(std::chrono::seconds(20));
    }
  }
  std::vector<json::object> session_entries() {
    auto r = rsgate_cmd({"journal", "query", "--data", f.dir.string(), "--session", a.sid, "--format", "json", "--limit", "100000"});
    REQUIRE(r.exit_code == 0);
    std::vector<json::object> out;
    std::istringstream in(r.out);
    for (std::string l; std::getline(in, l);) out.push_back(json::parse(l).as_object());
    return out;
  }
  std::vector<std::string> disagreements() {
    auto s = f.api("GET", base, "audrey");
    REQUIRE(s.status == 200);
    return compare_with_state(replay_session(session_entries()), s.body);
  }
  std::string owner() { return std::string(f.api("GET", base, "audrey").body["owner"].as_string()); }
};

std::vector<gateway_fixture::answer> at_once(int n, const std::function<gateway_fixture::answer(int)>& call) {
  std::barrier start(n);
  std::vector<gateway_fixture::answer> out(static_cast<std::size_t>(n));
  std::vector<std::thread> ts;
  for (int i = 0; i < n; ++i)
    ts.emplace_back([&, i] {
      start.arrive_and_wait();
      out[static_cast<std::size_t>(i)] = call(i);
    });
  for (auto& t : ts) t.join();
  return out;
}

std::size_t count_status(const std::vector<gateway_fixture::answer>& v, int status) {
  return static_cast<std::size_t>(std::count_if(v.begin(), v.end(), [&](auto& a) { return a.status == status; }));
}

}  // namespace

TEST_CASE("racing grants through the real gateway: unique ids, one live grant per user, an honest journal") {
  attached_gateway g;
  for (int round = 0; round < 4; ++round) {
    auto grants = at_once(3, [&](int i) {
      return g.f.api("POST", g.base + "/grants", "alice", R"({"user":"dev)" + std::to_string(i + 1) + R"("})");
    });
    CHECK(count_status(grants, 201) == 3);
    auto same = at_once(3, [&](int) { return g.f.api("POST", g.base + "/grants", "alice", R"({"user":"bob"})"); });
    CHECK(count_status(same, 201) == 1);
    CHECK(count_status(same, 409) == 2);
    auto s = g.f.api("GET", g.base, "alice").body;
    std::vector<std::string> live;
    for (auto& gv : s["grants"].as_array())
      if (!gv.as_object().at("revoked").as_bool()) live.push_back(std::string(gv.as_object().at("id").as_string()));
    REQUIRE(live.size() == 4);
    CHECK(std::set<std::string>(live.begin(), live.end()).size() == 4);
    auto revokes = at_once(4, [&](int i) {
      return g.f.api("DELETE", g.base + "/grants/" + live[static_cast<std::size_t>(i)], "alice");
    });
    CHECK(count_status(revokes, 200) == 4);
  }
  auto problems = g.disagreements();
  INFO(problems.size() << " problem(s); first: " << (problems.empty() ? "" : problems[0]));
  CHECK(problems.empty());
}

TEST_CASE("racing transfers through the real gateway: one winner, and only the winner journaled") {
  attached_gateway g;
  for (int round = 0; round < 4; ++round) {
    auto from = g.owner();
    auto transfers = at_once(3, [&](int i) {
      static const char* to[] = {"bob", "rep1", "rep2"};
      return g.f.api("POST", g.base + "/transfer", from, std::string(R"({"user":")") + to[i] + R"("})");
    });
    CHECK(count_status(transfers, 200) == 1);
    REQUIRE(g.f.api("POST", g.base + "/transfer", g.owner(), R"({"user":"alice"})").status == 200);
  }
  CHECK(g.f.kinds("session.transfer", "ok").size() == 8);
  auto problems = g.disagreements();
  INFO(problems.size() << " problem(s); first: " << (problems.empty() ? "" : problems[0]));
  CHECK(problems.empty());
}

TEST_CASE("a hammer of every session operation from many clients: state and journal agree exactly") {
  attached_gateway g;
  std::atomic<bool> stop{false};
  std::atomic<int> calls{0}, server_errors{0};
  auto client = [&](unsigned seed) {
    std::mt19937 rng(seed);
    auto pick = [&](int n) { return static_cast<int>(rng() % static_cast<unsigned>(n)); };
    const char* reps[] = {"alice", "bob", "rep1", "rep2"};
    while (!stop) {
      std::string me = reps[pick(4)];
      gateway_fixture::answer r;
      switch (pick(6)) {
        case 0:
        case 1: r = g.f.api("POST", g.base + "/grants", me, R"({"user":"dev)" + std::to_string(pick(3) + 1) + R"("})"); break;
        case 2: r = g.f.api("DELETE", g.base + "/grants/G" + std::to_string(pick(20) + 1), me); break;
        case 3: r = g.f.api("POST", g.base + "/transfer", me, std::string(R"({"user":")") + reps[pick(4)] + R"("})"); break;
        case 4:
          r = g.f.api("POST", g.base + "/channels", "dev" + std::to_string(pick(3) + 1), R"({"scope":"hmc","access_type":"ssh"})");
          break;
        default: r = g.f.api("POST", "/api/v1/sessions/attach", me, R"({"machine":"9009-42A*7801300","pmr":"TS000000001"})");
      }
      ++calls;
      if (r.status >= 500 || r.status == 0) ++server_errors;
    }
  };
  std::vector<std::thread> ts;
  for (unsigned i = 0; i < 6; ++i) ts.emplace_back(client, 77 + i);
  // Channels through `rsgate connect` for two developers whose grants come and go: each
  // connection is a channel request and a stream whose redemption is decided in the race.
  std::vector<std::pair<std::unique_ptr<child>, std::uint16_t>> connects;
  for (auto dev : {"dev1", "dev2"}) connects.push_back(connect_for(g.f, dev, g.a.sid, "hmc", "ssh"));
  std::atomic<int> channels{0};
  ts.emplace_back([&] {
    while (!stop) {
      for (auto& [c, port] : connects) {
        int fd = connect_local(port);
        if (fd >= 0) {
          ++channels;
          std::this_thread::sleep_for(std::chrono::milliseconds(20));
          ::close(fd);
        }
      }
    }
  });
  std::this_thread::sleep_for(std::chrono::seconds(4));
  for (int i = 0; i < 10 && g.f.api("DELETE", g.base, g.owner()).status != 200; ++i) {
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  stop = true;
  for (auto& t : ts) t.join();
  for (auto& [c, port] : connects) c->signal(SIGTERM);
  INFO(calls.load() << " calls, " << channels.load() << " channel connections");
  CHECK(calls > 50);
  CHECK(channels > 10);
  CHECK(server_errors == 0);
  CHECK_FALSE(g.f.kinds("channel.open", "ok").empty());
  auto s = g.f.api("GET", g.base, "audrey");
  CHECK(s.body["state"].as_string() == "ended");
  wait_line(*g.a.agent, "Session ended");
  auto problems = g.disagreements();
  INFO(problems.size() << " problem(s); first: " << (problems.empty() ? "" : problems[0]));
  CHECK(problems.empty());
  auto v = rsgate_cmd({"journal", "verify", "--data", g.f.dir.string(), "--pubkey", (g.f.dir / "keys/journal-signing.pub").string()});
  CHECK(v.exit_code == 0);
}

TEST_CASE("strict input through the real gateway: misspellings and partial numbers are refused, naming them") {
  attached_gateway g;
  auto typo = g.f.api("POST", g.base + "/grants", "alice",
                      R"({"user":"dave","scope":["hmc"],"access_type":["ssh"],"expires":"1h"})");
  CHECK(typo.status == 400);
  auto msg = std::string(typo.body["error"].as_object()["message"].as_string());
  CHECK_THAT(msg, Catch::Contains("\"scope\"") && Catch::Contains("\"access_type\"") && Catch::Contains("\"expires\""));
  CHECK(g.f.api("GET", g.base, "alice").body["grants"].as_array().empty());
  CHECK(g.f.kinds("session.grant", "ok").empty());
  auto token = "Authorization: Bearer " + g.f.tokens.at("audrey");
  auto stray = g.f.raw("GET", "/api/v1/journal?sesion=" + g.a.sid, {token});
  CHECK(stray.first == 400);
  CHECK(stray.second.find("sesion") != std::string::npos);
  for (auto q : {"limit=1e2", "limit=5x", "limit=2.9"}) {
    INFO(q);
    CHECK(g.f.raw("GET", std::string("/api/v1/journal?") + q, {token}).first == 400);
  }
  CHECK(g.f.raw("GET", "/api/v1/journal?limit=5", {token}).first == 200);
  CHECK(g.f.api("POST", g.base + "/grants", "alice", R"({"user":"dave","expires_in":2.9})").status == 400);
  CHECK(g.f.api("POST", g.base + "/grants", "alice", R"({"user":"dave","scopes":[]})").status == 400);
  auto ok = g.f.api("POST", g.base + "/grants", "alice", R"({"user":"dave","scopes":["hmc"],"access_types":["ssh"],"expires_in":"1h"})");
  REQUIRE(ok.status == 201);
  CHECK(g.f.api("POST", g.base + "/channels", "dave", R"({"scope":"partition:LP01","access_type":"ssh"})").status == 403);
}

TEST_CASE("refusals that used to leave no trace: odd login names, lock-outs, bad tokens, locked attaches, long queries") {
  attached_gateway g;
  // A control character in the name: 401, and journaled with the name escaped.
  auto tab = g.f.raw("POST", "/api/v1/login", {}, R"({"user":"al\tice","password":"nope"})");
  CHECK(tab.first == 401);
  auto logins = g.f.kinds("user.login", "denied");
  REQUIRE(logins.size() == 1);
  CHECK(json::parse(logins[0]).as_object()["actor"].as_string() == "al\\x09ice");
  // Bad bearer tokens are journaled with the token's keyed hash.
  CHECK(g.f.raw("GET", "/api/v1/sessions", {"Authorization: Bearer rsg_not_a_real_token"}).first == 401);
  auto by_token = rsgate_cmd({"journal", "query", "--data", g.f.dir.string(), "--hash-of", "rsg_not_a_real_token", "--format", "json"});
  CHECK(line_count(by_token.out) == 1);
  CHECK(by_token.out.find("unknown_token") != std::string::npos);
  // Lock-outs write user.lockout: a name after 5 failures, an address after 20.
  for (int i = 0; i < 5; ++i) (void)g.f.raw("POST", "/api/v1/login", {}, R"({"user":"nobody","password":"nope"})");
  auto lockouts = g.f.kinds("user.lockout", "denied");
  REQUIRE(lockouts.size() == 1);
  CHECK(json::parse(lockouts[0]).as_object()["detail"].as_object()["locked"].as_string() == "user name");
  for (int i = 0; i < 14; ++i)
    (void)g.f.raw("POST", "/api/v1/login", {}, R"({"user":"nobody)" + std::to_string(i) + R"(","password":"nope"})");
  lockouts = g.f.kinds("user.lockout", "denied");
  REQUIRE(lockouts.size() == 2);  // 1 (al\tice) + 5 + 14 = 20 failures from this address
  CHECK(json::parse(lockouts[1]).as_object()["detail"].as_object()["locked"].as_string() == "address");
  CHECK(g.f.raw("POST", "/api/v1/login", {}, R"({"user":"alice","password":"a long enough password"})").first == 429);
  // A refused attach on the locked session carries the session, so its PMR finds it.
  CHECK(g.f.api("POST", "/api/v1/sessions/attach", "bob", R"({"machine":"9009-42A*7801300","pmr":"TS000000777"})").status == 409);
  auto refused = g.f.kinds("session.attach", "denied");
  REQUIRE(refused.size() == 1);
  CHECK(json::parse(refused[0]).as_object()["session_id"].as_string() == g.a.sid);
  auto pmr = g.f.api("GET", "/api/v1/pmrs/TS000000777/sessions", "audrey");
  REQUIRE(pmr.status == 200);
  REQUIRE(pmr.body["sessions"].as_array().size() == 1);
  CHECK(pmr.body["sessions"].as_array()[0].as_object()["id"].as_string() == g.a.sid);
  // A long query with multi-byte characters: an answer, never a 5xx.
  auto token = "Authorization: Bearer " + g.f.tokens.at("audrey");
  std::string raw_utf8, encoded;
  for (int i = 0; i < 100; ++i) {
    raw_utf8 += "\xc3\xa9";
    encoded += "%C3%A9";
  }
  auto raw = g.f.raw("GET", "/api/v1/journal?session=" + std::string(97, 'x') + "&actor=" + raw_utf8, {token});
  CHECK(raw.first == 400);
  auto enc = g.f.raw("GET", "/api/v1/journal?session=" + std::string(97, 'x') + "&actor=" + encoded, {token});
  CHECK(enc.first == 200);
}

TEST_CASE("the fault firewall: a journal file the readers cannot open answers 500, and the gateway keeps serving") {
  attached_gateway g;
  auto token = "Authorization: Bearer " + g.f.tokens.at("audrey");
  // Readers open journal.db afresh for each query; the writer keeps its open files. Move the
  // database and its WAL aside (the WAL alone would let a reader see the old pages) and put
  // something that is not a database where the readers look.
  auto db = g.f.dir / "journal.db";
  for (auto ext : {"", "-wal", "-shm"}) std::filesystem::rename(db.string() + ext, db.string() + ext + ".aside");
  { std::ofstream(db) << std::string(8192, 'x'); }
  std::atomic<int> answered{0}, five_hundreds{0};
  std::vector<std::thread> ts;
  for (int i = 0; i < 4; ++i)
    ts.emplace_back([&] {
      for (int k = 0; k < 5; ++k) {
        auto r = g.f.raw("GET", "/api/v1/journal", {token});
        ++answered;
        if (r.first == 500) ++five_hundreds;
      }
    });
  for (auto& t : ts) t.join();
  CHECK(answered == 20);
  CHECK(five_hundreds == 20);
  CHECK(g.f.raw("GET", "/healthz", {}).first == 200);
  // Access is still decided and journaled (the writer keeps its own file): a grant works.
  CHECK(g.f.api("POST", g.base + "/grants", "alice", R"({"user":"dave"})").status == 201);
  std::filesystem::remove(db);
  for (auto ext : {"", "-wal", "-shm"}) std::filesystem::rename(db.string() + ext + ".aside", db.string() + ext);
  CHECK(g.f.raw("GET", "/api/v1/journal?kind=session.grant", {token}).first == 200);
  CHECK(g.f.kinds("session.grant", "ok").size() == 1);
  CHECK(g.f.stop() == 0);  // a clean stop, not a crash
  CHECK(g.f.kinds("gateway.stop", "ok").size() == 1);
  auto v = rsgate_cmd({"journal", "verify", "--data", g.f.dir.string(), "--pubkey", (g.f.dir / "keys/journal-signing.pub").string()});
  INFO(v.out << v.err);
  CHECK(v.exit_code == 0);
}

TEST_CASE("no session vanishes: a restart keeps what state.db holds, and closes in the journal what it cannot trust") {
  attached_gateway g;
  REQUIRE(g.f.api("POST", g.base + "/grants", "alice", R"({"user":"dev1","scopes":["hmc"]})").status == 201);
  auto session_ends = [&] {
    std::vector<json::object> out;
    for (auto& l : g.f.kinds("session.end", "ok")) out.push_back(json::parse(l).as_object());
    return out;
  };
  auto state_db = (g.f.dir / "state.db").string();
  // The customer's agent goes (it would try to come back to the old port meanwhile).
  REQUIRE(run({agent_binary(), "stop", "--control", g.a.control}).exit_code == 0);
  CHECK(g.a.agent->wait(std::chrono::seconds(20)) == 0);
  g.a.agent.reset();
  // The agent's STOP ended that session; a second machine's session is the one kept.
  auto a2 = start_and_attach(g.f, g.f.enroll("7801301"), "alice", "TS012345680");
  REQUIRE(g.f.api("POST", "/api/v1/sessions/" + a2.sid + "/grants", "alice", R"({"user":"dev1","scopes":["hmc"]})")
              .status == 201);
  // A refused end is journaled as session.end denied: it ends nothing, here or at a restart.
  REQUIRE(g.f.api("DELETE", "/api/v1/sessions/" + a2.sid, "bob").status == 403);
  REQUIRE(g.f.kinds("session.end", "denied").size() == 1);
  a2.agent->signal(SIGKILL);
  (void)a2.agent->wait(std::chrono::seconds(20));

  // Killed, then a clean stop: each time the next start gives the session back, owner and
  // grants as they were, waiting for its agent; nothing ends it.
  CHECK(g.f.stop(SIGKILL) == -SIGKILL);
  g.f.start();
  CHECK(g.f.stop(SIGTERM) == 0);
  g.f.start();
  CHECK(session_ends().size() == 1);  // only the stopped one's
  auto s = g.f.api("GET", "/api/v1/sessions/" + a2.sid, "alice");
  REQUIRE(s.status == 200);
  CHECK(s.body["state"].as_string() == "active");
  CHECK(s.body["owner"].as_string() == "alice");
  CHECK(json::serialize(s.body["grants"]).find("\"dev1\"") != std::string::npos);

  // A snapshot older than the journal (as if its last state.db write was lost) is not
  // trusted: that session ends at the next start, journaled.
  CHECK(g.f.stop(SIGKILL) == -SIGKILL);
  auto r = run({"sqlite3", state_db, "UPDATE live_sessions SET journal_seq = journal_seq - 1"});
  REQUIRE(r.exit_code == 0);
  g.f.start();
  auto ends = session_ends();
  REQUIRE(ends.size() == 2);
  CHECK(ends[1]["session_id"].as_string() == a2.sid);
  CHECK(ends[1]["detail"].as_object()["reason"].as_string() == "gateway restart");
  CHECK(ends[1]["machine"].as_string() == "9009-42A*7801301");
  CHECK(run({"sqlite3", state_db, "SELECT count(*) FROM live_sessions"}).out == "0\n");
  // And a restart after that finds nothing left open.
  CHECK(g.f.stop(SIGTERM) == 0);
  g.f.start();
  CHECK(session_ends().size() == 2);
}
