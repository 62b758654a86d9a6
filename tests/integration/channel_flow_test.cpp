// The gateway's side of a channel's flow control (docs/protocol.md §8, docs/api.md §5.5),
// through the real `rsgate serve`, end to end: a representative that sends bytes after its own
// `eof` loses its channel, never the customer's tunnel; an agent that breaks the flow-control
// rules (protocol/channel_flow.hpp) is closed with ERROR, journaled. Representatives are
// scripted WebSocket clients (ws_client.py), agents real or scripted (wire_peer).
#include <poll.h>

#include <atomic>
#include <csignal>
#include <thread>

#include "auth/session_key.hpp"
#include "protocol/agent_handshake.hpp"
#include "protocol/messages.hpp"
#include "protocol/profile.hpp"
#include "tests/integration/gateway_fixture.hpp"
#include "tests/integration/scripted_agent.hpp"
#include "tests/support/echo_server.hpp"
#include "tests/support/wire_peer.hpp"
#include "tests/support/loopback.hpp"

using namespace rsgate;
using namespace rsgate::test;
using namespace std::chrono_literals;
using ft = tunnel::frame_type;

namespace {

// A customer target for one connection that reads everything, never writes, and keeps its end
// open after the peer's EOF, so that the channel cannot end by EOF both ways: only a close
// ends it. Counts what it read and whether the EOF came.
class reading_target {
 public:
  reading_target() {
    fd_ = listen_loopback(port_, "reading_target", 4);
    thread_ = std::thread([this] { serve(); });
  }
  ~reading_target() {
    stopping_ = true;
    thread_.join();
    ::close(fd_);
  }
  reading_target(const reading_target&) = delete;
  reading_target& operator=(const reading_target&) = delete;
  [[nodiscard]] std::uint16_t port() const { return port_; }
  [[nodiscard]] std::size_t received() const { return received_; }
  [[nodiscard]] bool eof() const { return eof_; }

 private:
  bool readable(int fd) {
    pollfd p{fd, POLLIN, 0};
    return ::poll(&p, 1, 50) > 0;
  }
  void serve() {
    int c = -1;
    while (!stopping_ && c < 0)
      if (readable(fd_)) c = ::accept4(fd_, nullptr, nullptr, SOCK_CLOEXEC);
    char buf[65536];
    while (!stopping_ && c >= 0 && !eof_) {
      if (!readable(c)) continue;
      auto n = ::read(c, buf, sizeof buf);
      if (n <= 0) eof_ = true;  // EOF, or the connection failed: either way nothing more comes
      if (n > 0) received_ += static_cast<std::size_t>(n);
    }
    while (!stopping_) std::this_thread::sleep_for(50ms);  // the socket stays open meanwhile
    if (c >= 0) ::close(c);
  }
  int fd_ = -1;
  std::uint16_t port_ = 0;
  std::atomic<bool> stopping_{false}, eof_{false};
  std::atomic<std::size_t> received_{0};
  std::thread thread_;
};

// A one-time channel token for `user` (docs/api.md §5.3).
std::string channel_token(gateway_fixture& f, const std::string& user, const std::string& sid,
                          const std::string& scope) {
  auto r = f.api("POST", "/api/v1/sessions/" + sid + "/channels", user,
                 json::serialize(json::object{{"scope", scope}, {"access_type", "other"}}));
  REQUIRE(r.status == 201);
  return std::string(r.body["token"].as_string());
}

std::vector<std::string> ws_command(gateway_fixture& f, const std::string& token, std::vector<std::string> steps) {
  std::vector<std::string> argv = {"/usr/bin/python3", source_path("tests/integration/ws_client.py"), f.https,
                                   (f.dir / "ca.pem").string(), token};
  argv.insert(argv.end(), steps.begin(), steps.end());
  return argv;
}

// A scripted agent of an enrolled machine: authenticated with SCRAM, its key issued, and the
// session attached by alice.
struct attached_agent {
  std::unique_ptr<wire_peer> peer;
  std::string sid;
};

attached_agent attach_scripted_agent(gateway_fixture& f, const std::string& serial) {
  wire_peer::client_options o;
  o.timeout = 10s;
  attached_agent a;
  a.peer = authenticate_agent(wire_peer::connect(f.tunnel, o), f.enroll(serial, false, {"hmc=127.0.0.1:9"})).peer;
  auto key = auth::generate_session_key();
  REQUIRE(a.peer->send(ft::key_offer, tunnel::to_payload(tunnel::key_offer{key, 3600})));
  REQUIRE(a.peer->recv_until(ft::key_ack, 10s));
  auto att = f.api("POST", "/api/v1/sessions/attach", "alice",
                   json::serialize(json::object{{"session_key", key}, {"pmr", "TS000000090"}}));
  REQUIRE(att.status == 201);
  a.sid = std::string(att.body["id"].as_string());
  return a;
}

}  // namespace

TEST_CASE("a representative's bytes after its own eof end its channel, never the customer's tunnel") {
  auto threads = GENERATE(1, 3);
  INFO("gateway threads: " << threads);
  std::signal(SIGPIPE, SIG_IGN);
  gateway_fixture f(threads);
  reading_target target;
  echo_server echo;
  auto profile = f.enroll("7801350", false, {"one=127.0.0.1:" + std::to_string(target.port()),
                                             "echo=127.0.0.1:" + std::to_string(echo.port())});
  auto sess = start_and_attach(f, profile, "alice", "TS000000091");
  // "hello", a clean eof, then bytes the representative promised not to send.
  auto r = run(ws_command(f, channel_token(f, "alice", sess.sid, "one"), {"bin:hello", "text:eof", "bin:more"}), "",
               60s);
  INFO(r.out << r.err);
  CHECK(r.out.find("close 1000 the representative's connection failed") != std::string::npos);
  // The target got what came before the eof and the eof itself, nothing after it.
  REQUIRE(eventually([&] { return target.eof(); }));
  CHECK(target.received() == 5);
  std::vector<std::string> closes;
  REQUIRE(eventually([&] { return !(closes = f.kinds("channel.close", "ok")).empty(); }));
  CHECK(detail(closes[0])["reason"].as_string() == "the representative's connection failed");
  CHECK(detail(closes[0])["bytes_to_agent"].as_int64() == 5);
  // The customer's tunnel was not touched: no protocol error, and the next channel works.
  auto [conn, port] = connect_for(f, "alice", sess.sid, "echo", "other");
  int s = connect_local(port);
  REQUIRE(s >= 0);
  auto data = random_bytes(100'000);
  CHECK(round_trip(s, data) == data);
  ::close(s);
  CHECK(f.kinds("tunnel.close", "error").empty());
  conn->signal(SIGTERM);
  (void)conn->wait(20s);
  REQUIRE(run({agent_binary(), "stop", "--control", sess.control}).exit_code == 0);
  CHECK(sess.agent->wait(20s) == 0);
}

TEST_CASE("an agent that breaks a channel's flow control gets ERROR, and its tunnel is closed and journaled") {
  std::signal(SIGPIPE, SIG_IGN);
  gateway_fixture f;
  struct hostile_case {
    const char* name;
    std::vector<std::pair<ft, std::string>> frames;  // after CHANNEL_OPEN; WINDOW payloads are u32
    const char* code;
  };
  const std::string accept = R"({"window":262144})";
  const std::string sixteen_mib("\x01\x00\x00\x00", 4);
  const std::vector<hostile_case> cases = {
      {"WINDOW beyond 16 MiB of credit", {{ft::channel_accept, accept}, {ft::window, sixteen_mib}}, "window_exceeded"},
      {"DATA after its own EOF", {{ft::channel_accept, accept}, {ft::eof, ""}, {ft::data, "x"}}, "window_exceeded"},
      {"DATA before CHANNEL_ACCEPT", {{ft::data, "x"}}, "unexpected"},
      {"a second CHANNEL_ACCEPT", {{ft::channel_accept, accept}, {ft::channel_accept, accept}}, "unexpected"},
  };
  int serial = 7801360;
  for (auto& hc : cases) {
    INFO(hc.name);
    auto a = attach_scripted_agent(f, std::to_string(serial++));
    child ws(ws_command(f, channel_token(f, "alice", a.sid, "hmc"), {}), f.t / "ws.err");
    auto open = a.peer->recv_until(ft::channel_open, 20s);
    REQUIRE(open);
    for (auto& [type, payload] : hc.frames)
      REQUIRE(a.peer->send(type, std::span(reinterpret_cast<const std::uint8_t*>(payload.data()), payload.size()),
                           open->header.channel));
    auto err = a.peer->recv_until(ft::error, 10s);
    REQUIRE(err);
    std::string why;
    auto em = tunnel::parse_error(err->payload, why);
    REQUIRE(em);
    CHECK(em->code == hc.code);
    CHECK_FALSE(a.peer->recv(10s));
    CHECK(a.peer->closed());
    // The representative's stream ends with the tunnel (1013 when it had not opened yet).
    auto line = ws.wait_for("close ", 20s);
    REQUIRE(line);
    CHECK(line->ends_with(" the tunnel closed"));
  }
  std::vector<std::string> closes;
  REQUIRE(eventually([&] { return (closes = f.kinds("tunnel.close", "error")).size() == cases.size(); }));
  for (std::size_t i = 0; i < cases.size(); ++i) {
    INFO(cases[i].name);
    CHECK(std::string(detail(closes[i])["reason"].as_string()).starts_with(std::string(cases[i].code) + ": "));
  }
}
