// The core flow with real processes on loopback: `rsgate serve`, `rsgate-agent start` with a
// profile from `rsgate machine enroll`, representatives attaching with curl over HTTPS, the
// agent printing what happens, the customer stopping, and every step in the journal, which
// verifies. Also CHAP refusals: a wrong secret, MD5 when not enabled, and the lock-out.
#include <atomic>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <fstream>
#include <map>
#include <thread>

#include "core/files.hpp"
#include "tests/support/echo_server.hpp"
#include "tests/integration/gateway_fixture.hpp"

using namespace rsgate;
using namespace rsgate::test;
namespace json = boost::json;


TEST_CASE("the story: agent, key, attach and lock, grant, notices, customer stop, journal") {
  gateway_fixture f;
  auto profile = f.enroll("7801234");
  auto control = (f.t / "agent.sock").string();
  child agent({agent_binary(), "start", "--profile", profile.string(), "--control", control}, f.t / "agent.err");
  auto connected = wait_line(agent, "Connected to ");
  CHECK(connected.find("9009-42A*7801234") != std::string::npos);
  auto key_line = wait_line(agent, "Session key: ");
  auto key = key_line.substr(key_line.find(": ") + 2);
  CHECK(key.size() == 16);

  auto body = [](const std::string& k, const std::string& pmr) {
    return json::serialize(json::object{{"session_key", k}, {"pmr", pmr}});
  };
  CHECK(f.api("POST", "/api/v1/sessions/attach", "alice", body("0000-0000-0000-0", "TS012345678")).status == 403);
  CHECK(f.api("POST", "/api/v1/sessions/attach", "dave", body(key, "TS012345678")).status == 403);
  CHECK(f.api("POST", "/api/v1/sessions/attach", "alice", body(key, "12345")).status == 400);
  auto att = f.api("POST", "/api/v1/sessions/attach", "alice", body(key, "12345,677,000"));
  REQUIRE(att.status == 201);
  auto sid = std::string(att.body["id"].as_string());
  wait_line(agent, "alice attached for PMR 12345,677,000");

  auto locked = f.api("POST", "/api/v1/sessions/attach", "bob", R"({"machine":"9009-42A*7801234","pmr":"TS012345678"})");
  CHECK(locked.status == 409);
  wait_line(agent, "bob tried to attach");
  CHECK(f.api("POST", "/api/v1/sessions/attach", "bob", body(key, "TS012345678")).status == 409);  // the key is used

  CHECK(f.api("POST", "/api/v1/sessions/" + sid + "/grants", "bob", R"({"user":"dave"})").status == 403);
  REQUIRE(f.api("POST", "/api/v1/sessions/" + sid + "/grants", "alice",
                R"({"user":"dave","scopes":["hmc"],"access_types":["ssh"]})").status == 201);
  wait_line(agent, "alice granted dave access to hmc");
  CHECK(f.api("POST", "/api/v1/sessions/" + sid + "/channels", "dave", R"({"scope":"hmc","access_type":"ssh"})").status == 201);
  CHECK(f.api("POST", "/api/v1/sessions/" + sid + "/channels", "dave",
              R"({"scope":"partition:LP01","access_type":"ssh"})").status == 403);

  auto st = run({agent_binary(), "status", "--json", "--control", control});
  REQUIRE(st.exit_code == 0);
  auto so = json::parse(st.out).as_object();
  CHECK(so["owner"].as_string() == "alice");
  CHECK(so["pmr"].as_string() == "12345,677,000");
  CHECK(so["state"].as_string() == "active");
  auto human = run({agent_binary(), "status", "--control", control});
  REQUIRE(human.exit_code == 0);
  CHECK(human.out.find("owner:    alice for PMR 12345,677,000") != std::string::npos);
  CHECK(human.out.find("grants:   dave") != std::string::npos);

  REQUIRE(f.api("DELETE", "/api/v1/sessions/" + sid + "/grants/G1", "alice").status == 200);
  wait_line(agent, "alice revoked the access of dave");
  CHECK(f.api("POST", "/api/v1/sessions/" + sid + "/channels", "dave", R"({"scope":"hmc","access_type":"ssh"})").status == 403);

  REQUIRE(run({agent_binary(), "stop", "--control", control}).exit_code == 0);
  auto code = agent.wait(std::chrono::seconds(20));
  REQUIRE(code.has_value());
  CHECK(*code == 0);
  auto after = f.api("GET", "/api/v1/sessions/" + sid, "alice");
  REQUIRE(after.status == 200);
  CHECK(after.body["state"].as_string() == "ended");
  CHECK(after.body["end_reason"].as_string() == "customer");

  // The journal holds every step with the right actor, PMR and outcome, and verifies.
  CHECK(f.kinds("tunnel.connect", "ok").size() == 1);
  CHECK(f.kinds("tunnel.auth", "ok").size() == 1);
  CHECK(f.kinds("session.key_issued", "ok").size() == 1);
  auto attached = f.kinds("session.attach", "ok");
  REQUIRE(attached.size() == 1);
  auto a = json::parse(attached[0]).as_object();
  CHECK(a["actor"].as_string() == "alice");
  CHECK(a["pmr"].as_string() == "12345,677,000");
  CHECK(a["session_id"].as_string() == sid);
  CHECK(f.kinds("session.attach", "denied").size() == 4);  // wrong key, developer, locked twice
  CHECK(f.kinds("session.grant", "ok").size() == 1);
  CHECK(f.kinds("session.grant", "denied").size() == 1);
  CHECK(f.kinds("session.revoke", "ok").size() == 1);
  CHECK(f.kinds("channel.open", "denied").size() == 2);
  auto ended = f.kinds("session.end", "ok");
  REQUIRE(ended.size() == 1);
  CHECK(json::parse(ended[0]).as_object()["actor"].as_string() == "customer");
  CHECK(f.kinds("tunnel.close", "ok").size() == 1);
  // The session key is in no file; its keyed hash finds its issue and its use.
  CHECK(read_file(f.dir / "journal.db").find(key) == std::string::npos);
  auto by_key = rsgate_cmd({"journal", "query", "--data", f.dir.string(), "--hash-of", key, "--format", "json"});
  CHECK(line_count(by_key.out) == 4);  // issued, refused to dave, used by alice, refused to bob
  auto v = rsgate_cmd({"journal", "verify", "--data", f.dir.string(), "--pubkey",
                       (f.dir / "keys/journal-signing.pub").string()});
  INFO(v.out << v.err);
  CHECK(v.exit_code == 0);
}

TEST_CASE("CHAP refusals: wrong secret, MD5 not enabled, lock-out after five failures") {
  gateway_fixture f;
  auto profile = f.enroll("7801235");
  auto good = read_file(profile);
  auto write_variant = [&](const std::string& name, const std::string& from, const std::string& to) {
    auto s = good;
    auto p = s.find(from);
    REQUIRE(p != std::string::npos);
    s.replace(p, from.size(), to);
    auto path = f.t / name;
    write_file_exclusive(path, s, 0600);
    return path.string();
  };
  auto secret_at = good.find("secret = '") + 10;
  auto secret = good.substr(secret_at, good.find('\'', secret_at) - secret_at);
  auto wrong = write_variant("wrong.toml", secret, std::string(secret.size(), 'Z'));
  auto md5 = write_variant("md5.toml", "mechanisms = ['scram-sha-256']", "mechanisms = ['md5']");

  auto r = run({agent_binary(), "start", "--profile", md5, "--control", (f.t / "a1.sock").string()}, "", kWait);
  CHECK(r.exit_code == 1);
  CHECK(r.err.find("refused") != std::string::npos);
  for (int i = 0; i < 4; ++i) {
    r = run({agent_binary(), "start", "--profile", wrong, "--control", (f.t / "a2.sock").string()}, "", kWait);
    INFO(r.err);
    CHECK(r.exit_code == 1);
    CHECK(r.err.find("refused this machine") != std::string::npos);
  }
  // Five failures in all (the MD5 attempt counts): the machine is locked, even with its secret.
  r = run({agent_binary(), "start", "--profile", profile.string(), "--control", (f.t / "a3.sock").string()}, "", kWait);
  CHECK(r.exit_code == 1);
  CHECK(r.err.find("locked out") != std::string::npos);
  CHECK(f.kinds("tunnel.auth", "denied").size() >= 6);  // 5 failures + the lock-out (+ the locked attempt)
  CHECK(f.kinds("tunnel.auth", "ok").empty());
  auto profile_bad_mode = f.t / "open.toml";
  write_file_exclusive(profile_bad_mode, good, 0644);
  auto m = run({agent_binary(), "start", "--profile", profile_bad_mode.string()});
  CHECK(m.exit_code == 2);
  CHECK(m.err.find("chmod 600") != std::string::npos);
}

TEST_CASE("a grant lapses at its time, revoking the machine ends its live tunnel at once") {
  gateway_fixture f;
  auto profile = f.enroll("7801236");
  auto sess = start_and_attach(f, profile, "alice", "TS000000042");
  auto& agent = *sess.agent;
  auto sid = sess.sid;
  REQUIRE(f.api("POST", "/api/v1/sessions/" + sid + "/grants", "alice", R"({"user":"dave","expires_in":2})").status == 201);
  CHECK(f.api("POST", "/api/v1/sessions/" + sid + "/channels", "dave", R"({"scope":"hmc","access_type":"ssh"})").status == 201);
  wait_line(agent, "gateway revoked the access of dave");  // the grant lapsed
  CHECK(f.api("POST", "/api/v1/sessions/" + sid + "/channels", "dave", R"({"scope":"hmc","access_type":"ssh"})").status == 403);

  REQUIRE(rsgate_cmd({"machine", "revoke", "9009-42A*7801236", "--data", f.dir.string()}).exit_code == 0);
  wait_line(agent, "Session ended: this machine's enrollment was revoked");
  auto code = agent.wait(std::chrono::seconds(20));
  REQUIRE(code.has_value());
  CHECK(*code == 0);
  CHECK(f.api("GET", "/api/v1/sessions/" + sid, "alice").body["end_reason"].as_string() == "machine revoked");
  auto revoked = f.kinds("session.revoke", "ok");
  REQUIRE(revoked.size() == 1);
  CHECK(revoked[0].find("expired") != std::string::npos);
  // The revoked machine cannot come back.
  auto again = run({agent_binary(), "start", "--profile", profile.string(), "--control", (f.t / "b.sock").string()}, "", kWait);
  CHECK(again.exit_code == 1);
  CHECK(again.err.find("refused") != std::string::npos);
}


TEST_CASE("channels: bytes arrive intact both ways, revocation closes the grantee's channel at once") {
  auto threads = GENERATE(1, 3);
  INFO("gateway threads: " << threads);
  gateway_fixture f(threads);
  echo_server echo;
  auto profile = f.enroll("7801237", false, {"echo=127.0.0.1:" + std::to_string(echo.port()), "hmc=127.0.0.1:9"});
  auto sess = start_and_attach(f, profile, "alice", "TS000000043");
  auto& agent = *sess.agent;
  auto sid = sess.sid;
  REQUIRE(f.api("POST", "/api/v1/sessions/" + sid + "/grants", "alice",
                R"({"user":"dave","scopes":["echo"],"access_types":["other"]})").status == 201);

  auto [conn, port] = connect_for(f, "dave", sid, "echo", "other");
  {
    auto data = random_bytes(8 * 1024 * 1024);
    int s = connect_local(port);
    REQUIRE(s >= 0);
    auto got = round_trip(s, data);
    ::close(s);
    CHECK(got.size() == data.size());
    CHECK(got == data);
  }
  wait_line(agent, "dave opened other to echo");
  wait_line(agent, "dave closed other to echo (8388608 bytes in, 8388608 out)");

  // A connection the grantee keeps open is cut when the owner revokes the grant.
  int s = connect_local(port);
  REQUIRE(s >= 0);
  REQUIRE(::write(s, "ping", 4) == 4);
  char buf[16];
  REQUIRE(::read(s, buf, 4) == 4);
  REQUIRE(f.api("DELETE", "/api/v1/sessions/" + sid + "/grants/G1", "alice").status == 200);
  timeval tv{20, 0};
  ::setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  CHECK(::read(s, buf, sizeof buf) <= 0);  // closed, not timed out after 20 s
  ::close(s);
  // Without a grant the next connection is refused by the gateway.
  int s2 = connect_local(port);
  REQUIRE(s2 >= 0);
  ::setsockopt(s2, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  CHECK(::read(s2, buf, sizeof buf) <= 0);
  ::close(s2);

  auto opened = f.kinds("channel.open", "ok");
  REQUIRE(opened.size() == 2);
  auto o = json::parse(opened[0]).as_object();
  CHECK(o["actor"].as_string() == "dave");
  CHECK(o["scope"].as_string() == "echo");
  CHECK(o["access_type"].as_string() == "other");
  CHECK(o["pmr"].as_string() == "TS000000043");
  auto closed = f.kinds("channel.close", "ok");
  REQUIRE(closed.size() == 2);
  auto d0 = json::parse(closed[0]).as_object()["detail"].as_object();
  CHECK(d0["bytes_to_agent"].as_int64() == 8 * 1024 * 1024);
  CHECK(d0["bytes_from_agent"].as_int64() == 8 * 1024 * 1024);
  CHECK(json::parse(closed[1]).as_object()["detail"].as_object()["reason"].as_string() == "access revoked");
  CHECK(f.kinds("channel.open", "denied").size() == 1);  // the attempt after revocation
  conn->signal(SIGTERM);
  CHECK(conn->wait(std::chrono::seconds(20)).has_value());
  REQUIRE(run({agent_binary(), "stop", "--control", sess.control}).exit_code == 0);
  CHECK(agent.wait(std::chrono::seconds(20)) == 0);
  auto v = rsgate_cmd({"journal", "verify", "--data", f.dir.string(), "--pubkey",
                       (f.dir / "keys/journal-signing.pub").string()});
  CHECK(v.exit_code == 0);
}

TEST_CASE("a channel asked for while the customer's tunnel is down is refused and journaled") {
  gateway_fixture f;
  echo_server echo;
  auto profile = f.enroll("7801240", false, {"echo=127.0.0.1:" + std::to_string(echo.port())});
  auto sess = start_and_attach(f, profile, "alice", "TS000000047");
  auto [conn, port] = connect_for(f, "alice", sess.sid, "echo", "other");
  // The agent dies without STOP: the session waits for it (the reconnect grace), its tunnel is down.
  sess.agent->signal(SIGKILL);
  (void)sess.agent->wait(std::chrono::seconds(20));
  bool refused = false;
  for (int i = 0; i < 100 && !refused; ++i) {  // until the gateway has noticed the lost tunnel
    int s = connect_local(port);
    REQUIRE(s >= 0);
    timeval tv{20, 0};
    ::setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    char buf[16];
    CHECK(::read(s, buf, sizeof buf) <= 0);  // nothing is relayed either way
    ::close(s);
    refused = !f.kinds("channel.open", "denied").empty();
    if (!refused) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  REQUIRE(refused);
  auto d = json::parse(f.kinds("channel.open", "denied").front()).as_object();
  CHECK(d["actor"].as_string() == "alice");
  CHECK(d["scope"].as_string() == "echo");
  CHECK(d["pmr"].as_string() == "TS000000047");
  CHECK(d["detail"].as_object()["code"].as_string() == "tunnel_down");
  CHECK(f.kinds("channel.open", "ok").empty());
  auto st = f.api("GET", "/api/v1/sessions/" + sess.sid, "alice");
  CHECK(st.status == 200);  // the session itself lives on, waiting for the agent
  conn->signal(SIGTERM);
  CHECK(conn->wait(std::chrono::seconds(20)).has_value());
}

TEST_CASE("rsgate connect refuses a gateway whose certificate is not from the CA it was given") {
  gateway_fixture f;
  echo_server echo;
  auto profile = f.enroll("7801241", false, {"echo=127.0.0.1:" + std::to_string(echo.port())});
  auto sess = start_and_attach(f, profile, "alice", "TS000000048");
  auto other_ca = f.t / "other-ca.pem";
  REQUIRE(run({"openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "2",
               "-subj", "/CN=someone else", "-keyout", (f.t / "other-ca.key").string(), "-out", other_ca.string()})
              .exit_code == 0);
  auto [conn, port] = connect_for(f, "alice", sess.sid, "echo", "other", other_ca.string());
  int s = connect_local(port);
  REQUIRE(s >= 0);
  timeval tv{20, 0};
  ::setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  char buf[16];
  CHECK(::read(s, buf, sizeof buf) <= 0);  // closed: nothing was relayed
  ::close(s);
  conn->signal(SIGTERM);
  CHECK(conn->wait(std::chrono::seconds(20)).has_value());
  auto err = read_file(f.t / "connect-alice.err");
  INFO(err);
  CHECK(err.find("TLS with the gateway failed") != std::string::npos);
  CHECK(f.kinds("channel.open", "ok").empty());
  CHECK(f.kinds("channel.open", "denied").empty());  // it never reached the API
  REQUIRE(run({agent_binary(), "stop", "--control", sess.control}).exit_code == 0);
  CHECK(sess.agent->wait(std::chrono::seconds(20)) == 0);
}

TEST_CASE("a representative who stops reading stalls only his own channel") {
  auto threads = GENERATE(1, 3);
  INFO("gateway threads: " << threads);
  gateway_fixture f(threads);
  echo_server echo;
  auto profile = f.enroll("7801238", false, {"echo=127.0.0.1:" + std::to_string(echo.port())});
  auto sess = start_and_attach(f, profile, "alice", "TS000000045");
  auto& agent = *sess.agent;
  auto control = sess.control;
  auto [conn, port] = connect_for(f, "alice", sess.sid, "echo", "other");

  // Channel A: 160 MiB pushed in, nothing read back. The echo fills every window on the way
  // back, the agent stops reading the target, the windows toward it fill, and the writer
  // blocks — after the kernel's socket buffers along the path (tens of MiB on loopback).
  int a = connect_local(port);
  REQUIRE(a >= 0);
  constexpr std::size_t kStuck = 160u * 1024 * 1024;
  std::atomic<std::size_t> pushed{0};
  std::thread stuck([&] {
    auto data = random_bytes(kStuck);
    for (std::size_t off = 0; off < data.size();) {
      auto w = ::write(a, data.data() + off, std::min<std::size_t>(65536, data.size() - off));
      if (w <= 0) break;
      off += static_cast<std::size_t>(w);
      pushed = off;
    }
  });
  std::this_thread::sleep_for(std::chrono::seconds(2));
  CHECK(pushed.load() < kStuck);  // blocked: nothing buffers without bound

  // Channel B still works.
  int b = connect_local(port);
  REQUIRE(b >= 0);
  timeval tv{30, 0};
  ::setsockopt(b, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  auto data = random_bytes(2 * 1024 * 1024);
  auto got = round_trip(b, data);
  ::close(b);
  CHECK(got == data);
  auto st = run({agent_binary(), "status", "--json", "--control", control});
  REQUIRE(st.exit_code == 0);
  CHECK(json::parse(st.out).as_object()["channels"].as_array().size() >= 1);  // A is still open

  ::shutdown(a, SHUT_RDWR);  // ends the writer's blocked write; close only once it is gone
  stuck.join();
  ::close(a);
  conn->signal(SIGTERM);
  (void)conn->wait(std::chrono::seconds(20));
  REQUIRE(run({agent_binary(), "stop", "--control", control}).exit_code == 0);
  CHECK(agent.wait(std::chrono::seconds(20)) == 0);
}

TEST_CASE("a malformed or oversized frame closes the tunnel with a journaled protocol error") {
  gateway_fixture f;
  // Raw TLS with the right ALPN, then bytes that are not rsgate/1: an unknown frame type,
  // and a HELLO header that announces 16 MiB.
  for (const char* bytes : {"\\377\\000\\000\\000\\000\\000\\000\\000\\000\\000\\000\\002xx",
                            "\\001\\000\\000\\000\\000\\000\\000\\000\\001\\000\\000\\000"}) {
    auto r = run({"sh", "-c",
                  std::string("(printf '") + bytes + "'; sleep 1) | openssl s_client -quiet -alpn rsgate/1 -connect " +
                      f.tunnel + " 2>/dev/null"},
                 "", std::chrono::seconds(30));
    (void)r;
  }
  std::vector<std::string> closes;
  for (int i = 0; i < 100 && closes.size() < 2; ++i) {
    closes = f.kinds("tunnel.close", "error");
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  REQUIRE(closes.size() == 2);
  CHECK(closes[0].find("unknown frame type") != std::string::npos);
  CHECK(closes[1].find("frame larger than allowed") != std::string::npos);
  CHECK(f.kinds("tunnel.auth", "ok").empty());
}

TEST_CASE("rsgate-agent key voids the current key and issues a new one") {
  gateway_fixture f;
  auto profile = f.enroll("7801239");
  auto control = (f.t / "a.sock").string();
  child agent({agent_binary(), "start", "--profile", profile.string(), "--control", control}, f.t / "agent.err");
  auto first = wait_line(agent, "Session key: ");
  auto old_key = first.substr(first.find(": ") + 2);
  auto r = run({agent_binary(), "key", "--control", control});
  REQUIRE(r.exit_code == 0);
  REQUIRE(r.out.starts_with("Session key: "));
  auto new_key = r.out.substr(13, 16);
  CHECK(new_key != old_key);
  auto body = [](const std::string& k) { return json::serialize(json::object{{"session_key", k}, {"pmr", "TS000000046"}}); };
  CHECK(f.api("POST", "/api/v1/sessions/attach", "alice", body(old_key)).status == 403);
  CHECK(f.api("POST", "/api/v1/sessions/attach", "alice", body(new_key)).status == 201);
  CHECK(f.kinds("session.key_issued", "ok").size() == 2);
  REQUIRE(run({agent_binary(), "stop", "--control", control}).exit_code == 0);
  CHECK(agent.wait(std::chrono::seconds(20)) == 0);
}
