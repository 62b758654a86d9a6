// The fault firewall through the real gateway: `rsgate serve` runs with a SQLite VFS shim
// (tests/support/faulty_vfs.cpp, LD_PRELOAD) that makes state.db or journal.db fail on demand —
// an I/O error, a read-only file, a lock held elsewhere — while representatives' requests
// run. Every request gets an answer (500 for a state it cannot read, 503 when the journal
// cannot record, never a hang), the gateway never dies, nothing is journaled that did not
// happen, and everything works again once the fault is gone; the journal verifies at the end.
#include <atomic>
#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "tests/integration/gateway_fixture.hpp"

using namespace rsgate;
using namespace rsgate::test;

namespace {

// A gateway whose SQLite files fail while a file named <db>.<fault> exists in `faults`.
struct faulty_gateway {
  temp_dir faults_dir;
  std::filesystem::path faults = faults_dir.path();
  std::unique_ptr<gateway_fixture> f;
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
    a = start_and_attach(*f, f->enroll("7801400"), "alice", "TS012345678");
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
  auto added = rsgate_cmd({"user", "add", "erin", "--role", "representative", "--data", g.f->dir.string()});
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
