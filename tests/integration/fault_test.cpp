// The fault firewall through the real gateway: `rsgate serve` runs with a SQLite VFS shim
// (tests/support/faulty_vfs.cpp, LD_PRELOAD) that makes state.db or journal.db fail on demand —
// an I/O error, a read-only file, a lock held elsewhere — while representatives' requests
// run. Every request gets an answer (500 for a state it cannot read, 503 when the journal
// cannot record, never a hang), the gateway never dies, nothing is journaled that did not
// happen, and everything works again once the fault is gone; the journal verifies at the end.
// A gateway that dies while a change waits for the journal does not bring the session back at
// its restart (its kept state is marked untrusted): the session ends there, fail closed.
#include <atomic>
#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "tests/integration/gateway_fixture.hpp"
#include "tests/support/tcp_relay.hpp"

using namespace rsgate;
using namespace rsgate::test;

namespace {

// A gateway whose SQLite files fail while a file named <db>.<fault> exists in `faults`.
struct faulty_gateway {
  temp_dir faults_dir;
  std::filesystem::path faults = faults_dir.path();
  std::unique_ptr<gateway_fixture> f;
  std::unique_ptr<tcp_relay> net;  // the agent's way to the tunnel port, which a restart changes
  attached a;
  std::string base;

  faulty_gateway() {
    ::setenv("RSGATE_FAULT_DIR", faults.c_str(), 1);
    ::setenv("LD_PRELOAD", helper_binary("faulty_vfs.so").c_str(), 1);
    // Under AddressSanitizer the shim comes before the sanitizer's runtime: allow that.
    std::string asan = std::getenv("ASAN_OPTIONS") ? std::getenv("ASAN_OPTIONS") : "";
    ::setenv("ASAN_OPTIONS", (asan + (asan.empty() ? "" : ":") + "verify_asan_link_order=0").c_str(), 1);
    f = std::make_unique<gateway_fixture>();  // only `rsgate serve` is started with the shim
    ::unsetenv("LD_PRELOAD");
    ::unsetenv("RSGATE_FAULT_DIR");
    f->add_user("audrey", "auditor");
    net = std::make_unique<tcp_relay>(port_of(f->tunnel));
    a = start_and_attach(*f, f->enroll("7801400", false, {"hmc=127.0.0.1:9", "partition:LP01=127.0.0.1:9"},
                                           "127.0.0.1:" + std::to_string(net->port())),
                         "alice", "TS012345678");
    base = "/api/v1/sessions/" + a.sid;
  }
  ~faulty_gateway() {
    for (auto& e : std::filesystem::directory_iterator(faults)) std::filesystem::remove(e.path());
    if (a.agent) {
      (void)run({agent_binary(), "stop", "--control", a.control});
      (void)a.agent->wait(std::chrono::seconds(20));
    }
  }
  void set(const std::string& file) { std::ofstream(faults / file) << "on\n"; }
  void clear(const std::string& file) { std::filesystem::remove(faults / file); }
  int status(const std::string& method, const std::string& path, const std::string& user, const std::string& body = "") {
    return f->api(method, path, user, body).status;
  }
  bool alive() { return f->raw("GET", "/healthz", {}).first == 200; }
};

}  // namespace

TEST_CASE("state.db with I/O errors, read-only or locked: requests answer 500, the gateway lives on") {
  faulty_gateway g;
  REQUIRE(g.status("GET", "/api/v1/sessions", "alice") == 200);

  g.set("state.db.ioerr");  // every transaction on state.db fails
  std::atomic<int> five_hundreds{0};
  std::vector<std::thread> ts;
  for (int i = 0; i < 4; ++i)
    ts.emplace_back([&] {
      for (int k = 0; k < 3; ++k)
        if (g.status("GET", "/api/v1/sessions", "alice") == 500) ++five_hundreds;
    });
  for (auto& t : ts) t.join();
  CHECK(five_hundreds == 12);
  CHECK(g.status("POST", g.base + "/grants", "alice", R"({"user":"dave"})") == 500);
  CHECK(g.alive());
  g.clear("state.db.ioerr");
  CHECK(g.status("POST", g.base + "/grants", "alice", R"({"user":"dave"})") == 201);

  // Read-only: a password change at login cannot be stored. The login is refused (no
  // cookie) and the journal says the change failed right after the login's own entry.
  auto added = rsgate_cmd({"user", "add", "erin", "--role", "developer", "--data", g.f->dir.string()});  // no TOTP: the password step is what fails
  REQUIRE(added.exit_code == 0);
  auto otp = added.out.substr(added.out.find(": ") + 2, added.out.find('\n') - added.out.find(": ") - 2);
  g.set("state.db.readonly");
  auto login = g.f->raw("POST", "/api/v1/login", {},
                        R"({"user":"erin","password":")" + otp + R"(","new_password":"a brand new password"})");
  CHECK(login.first == 500);
  CHECK(g.status("GET", "/api/v1/sessions", "alice") == 200);  // reading still works
  g.clear("state.db.readonly");
  auto errors = g.f->kinds("user.login", "error");
  REQUIRE(errors.size() == 1);
  CHECK(errors[0].find("could not be stored") != std::string::npos);
  auto again = g.f->raw("POST", "/api/v1/login", {},
                        R"({"user":"erin","password":")" + otp + R"(","new_password":"a brand new password"})");
  CHECK(again.first == 200);  // the one-time password is still the one that counts
  // A TOTP code whose use state.db cannot record is not accepted (it could be used again):
  // 503, and the same code works once state.db can write.
  const auto code = oath_code(g.f->totp_uris.at("alice"));
  const auto alice = R"({"user":"alice","password":"a long enough password","totp":")" + code + R"("})";
  g.set("state.db.readonly");
  auto unrecorded = g.f->raw("POST", "/api/v1/login", {}, alice);
  CHECK(unrecorded.first == 503);
  CHECK(unrecorded.second.find("state_unavailable") != std::string::npos);
  g.clear("state.db.readonly");
  CHECK(g.f->raw("POST", "/api/v1/login", {}, alice).first == 200);

  // Locked by another process: the request waits for the lock (5 s), then answers 500.
  g.set("state.db.busy");
  auto t0 = std::chrono::steady_clock::now();
  CHECK(g.status("GET", "/api/v1/sessions", "bob") == 500);
  CHECK(std::chrono::steady_clock::now() - t0 < std::chrono::seconds(15));
  g.clear("state.db.busy");
  CHECK(g.status("GET", "/api/v1/sessions", "bob") == 200);
  CHECK(g.alive());
  CHECK(g.f->stop() == 0);
  auto v = rsgate_cmd({"journal", "verify", "--data", g.f->dir.string(), "--pubkey", (g.f->dir / "keys/journal-signing.pub").string()});
  INFO(v.out << v.err);
  CHECK(v.exit_code == 0);
}

TEST_CASE("journal.db with I/O errors: grants refused, revocations kept and written later, nothing false") {
  faulty_gateway g;
  REQUIRE(g.status("POST", g.base + "/grants", "alice", R"({"user":"dave"})") == 201);
  g.set("journal.db.ioerr");
  CHECK(g.status("POST", g.base + "/grants", "alice", R"({"user":"bob"})") == 503);
  CHECK(g.f->raw("GET", "/readyz", {}).first == 503);
  // Removing access does not wait: the grant is gone at once.
  CHECK(g.status("DELETE", g.base + "/grants/G1", "alice") == 200);
  CHECK(g.status("POST", g.base + "/channels", "dave", R"({"scope":"hmc","access_type":"ssh"})") == 403);
  auto token = "Authorization: Bearer " + g.f->tokens.at("audrey");
  auto q = g.f->raw("GET", "/api/v1/journal", {token});
  CHECK((q.first == 500 || q.first == 503));  // cannot read it, or cannot record the query
  CHECK(g.alive());
  g.clear("journal.db.ioerr");
  // Within a few seconds the gateway is ready again and the kept revocation is written.
  std::vector<std::string> revokes;
  for (int i = 0; i < 100 && revokes.empty(); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    revokes = g.f->kinds("session.revoke", "ok");
  }
  REQUIRE(revokes.size() == 1);
  CHECK(revokes[0].find("effective_at") != std::string::npos);
  CHECK(g.f->raw("GET", "/readyz", {}).first == 200);
  CHECK(g.f->kinds("session.grant", "ok").size() == 1);  // bob's grant never happened
  CHECK(g.status("POST", g.base + "/grants", "alice", R"({"user":"bob"})") == 201);
  CHECK(g.f->stop() == 0);
  auto v = rsgate_cmd({"journal", "verify", "--data", g.f->dir.string(), "--pubkey", (g.f->dir / "keys/journal-signing.pub").string()});
  INFO(v.out << v.err);
  CHECK(v.exit_code == 0);
}

TEST_CASE("a change the journal has not recorded when the gateway dies: the session is not trusted at the restart") {
  faulty_gateway g;
  REQUIRE(g.status("POST", g.base + "/grants", "alice", R"({"user":"dave"})") == 201);
  const auto kept = [&] {
    return run({"sqlite3", (g.f->dir / "state.db").string(), "SELECT journal_seq FROM live_sessions"}).out;
  };
  REQUIRE(eventually([&] { auto k = kept(); return !k.empty() && k != "-1\n"; }));
  // The revocation takes effect at once, but the journal cannot record it yet: the session's
  // kept state says so (journal_seq -1), so it must never be restored as it was.
  g.set("journal.db.ioerr");
  REQUIRE(g.status("DELETE", g.base + "/grants/G1", "alice") == 200);
  REQUIRE(eventually([&] { return kept() == "-1\n"; }));
  // The gateway dies before the journal works again: the kept revocation is lost with it.
  CHECK(g.f->stop(SIGKILL) == -SIGKILL);
  g.clear("journal.db.ioerr");
  g.f->start();
  g.net->set_upstream(port_of(g.f->tunnel));
  // Fail closed: the journal still shows dave's grant live, state.db is marked untrusted, so
  // the session ends at the start instead of coming back with a grant nobody revoked in the
  // journal. Its agent comes back to a new session.
  std::vector<std::string> ends;
  REQUIRE(eventually([&] { return !(ends = g.f->kinds("session.end", "ok")).empty(); }));
  CHECK(json::parse(ends[0]).as_object()["session_id"].as_string() == g.a.sid);
  CHECK(detail(ends[0])["reason"].as_string() == "gateway restart");
  auto back = g.a.agent->wait_for("no longer holds session " + g.a.sid, kWait);
  INFO(read_file(g.f->t / "agent.err"));
  REQUIRE(back);
  CHECK_THAT(*back, Catch::Contains("it has ended"));
  // The new run never held it: not found, and so no channel into it for dave.
  CHECK(g.status("GET", g.base, "alice") == 404);
  CHECK(g.status("POST", g.base + "/channels", "dave", R"({"scope":"hmc","access_type":"ssh"})") == 404);
  CHECK(g.f->stop() == 0);
  auto v = rsgate_cmd({"journal", "verify", "--data", g.f->dir.string(), "--pubkey", (g.f->dir / "keys/journal-signing.pub").string()});
  INFO(v.out << v.err);
  CHECK(v.exit_code == 0);
}
