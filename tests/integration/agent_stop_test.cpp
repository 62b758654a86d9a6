// How the agent stops (issue 8, structured concurrency): a stop, from the control socket or
// SIGTERM, cancels the tunnel's pending read and the channels' pumps; STOP reaches the
// gateway before the close, and the agent exits at once, even with a channel whose target
// has stopped reading and so holds the agent's writer in a write that cannot finish.
#include <poll.h>

#include <thread>

#include "tests/integration/scripted_gateway.hpp"
#include "tests/support/loopback.hpp"

using namespace rsgate;
using namespace rsgate::test;
using namespace std::chrono_literals;
using ft = rsgate::tunnel::frame_type;

namespace {

// Opens channel 1 to the silent target (a listener that never accepts, so never reads) and
// sends DATA within the agent's window until the agent stops returning WINDOW: its writer is
// then blocked on the target's full buffers. Bounded: at most 64 MiB.
void stall_a_channel(scripted_gateway& g) {
  REQUIRE(g.peer->send(ft::channel_open,
                       as_bytes(R"({"scope":"hmc","access_type":"ssh","actor":"alice","window":262144})"), 1));
  REQUIRE(g.peer->recv_until(ft::channel_accept, 10s));
  const std::string chunk(tunnel::kMaxDataPayload, 'x');
  std::int64_t credit = tunnel::kInitialWindow, sent = 0;
  bool stalled = false;
  while (!stalled && sent < (64 << 20)) {
    while (credit >= static_cast<std::int64_t>(chunk.size())) {
      REQUIRE(g.peer->send(ft::data, as_bytes(chunk), 1));
      credit -= static_cast<std::int64_t>(chunk.size());
      sent += static_cast<std::int64_t>(chunk.size());
    }
    stalled = true;  // unless a WINDOW comes within half a second
    while (auto f = g.peer->recv(500ms)) {
      if (f->header.type != ft::window) continue;
      credit += tunnel::window_increment(*f);
      stalled = false;
      break;
    }
  }
  REQUIRE(stalled);
}

// Accepts one TCP connection and holds it open without reading or writing.
class unanswering_listener {
 public:
  unanswering_listener() {
    fd_ = listen_loopback(port_, "unanswering_listener", 4);
  }
  ~unanswering_listener() {
    if (conn_ >= 0) ::close(conn_);
    ::close(fd_);
  }
  unanswering_listener(const unanswering_listener&) = delete;
  unanswering_listener& operator=(const unanswering_listener&) = delete;
  [[nodiscard]] std::uint16_t port() const { return port_; }
  bool wait_for_connection(std::chrono::milliseconds timeout) {
    pollfd p{fd_, POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(timeout.count())) != 1) return false;
    conn_ = ::accept4(fd_, nullptr, nullptr, SOCK_CLOEXEC);
    return conn_ >= 0;
  }

 private:
  int fd_ = -1, conn_ = -1;
  std::uint16_t port_ = 0;
};

}  // namespace

TEST_CASE("a stop ends the agent at once, STOP first, with a channel stalled on its target", "[integration]") {
  for (bool by_signal : {false, true}) {
    INFO((by_signal ? "SIGTERM" : "rsgate-agent stop"));
    silent_target target;
    scripted_gateway g(target.port());
    g.start_agent();
    g.authenticate_and_ack_key();
    stall_a_channel(g);
    const auto asked = std::chrono::steady_clock::now();
    if (by_signal) {
      g.agent->signal(SIGTERM);
    } else {
      auto r = run({agent_binary(), "stop", "--control", g.control.string()});
      CHECK(r.exit_code == 0);
      CHECK(r.out == "stopping\n");
    }
    // STOP arrives at once; a gateway then sends the receipt and closes (docs/protocol.md
    // §4.12): this one closes without a receipt, after which the agent has nothing to wait for.
    auto stop = g.peer->recv_until(ft::stop, 5s);
    REQUIRE(stop);
    g.peer->drop();
    auto rc = g.wait_exit(10s);
    REQUIRE(rc);
    CHECK(*rc == 0);
    // Cancellation, not a wait: far below the 2 s drain bound, even on a loaded machine.
    CHECK(std::chrono::steady_clock::now() - asked < 1500ms);
    CHECK(g.rest_of_stdout().find("No receipt came from the gateway for session") != std::string::npos);
    CHECK(g.stderr_text().empty());
  }
}

// The customer may stop before any gateway answered: that is their choice, not a failure.
// The gateway here accepts the TCP connection (in the backlog) but never answers the TLS
// ClientHello, so the agent is inside its handshake when the stop comes; without
// cancellation it would wait for the 20 s handshake bound and then report a failure.
TEST_CASE("a stop while the agent is still connecting exits 0 at once, with nothing reported", "[integration]") {
  silent_target target;
  scripted_gateway g(target.port());
  // Point the profile at a listener that never answers; the scripted gateway stays unused.
  unanswering_listener mute;
  auto p = agent::load_profile(g.profile);
  p.primary = "127.0.0.1:" + std::to_string(mute.port());
  write_file_atomic(g.profile, agent::to_toml(p), 0600);
  g.agent = std::make_unique<child>(std::vector<std::string>{agent_binary(), "start", "--profile", g.profile.string(),
                                                             "--control", g.control.string()},
                                    g.err_file);
  REQUIRE(mute.wait_for_connection(10s));
  std::this_thread::sleep_for(100ms);  // its ClientHello is sent; the agent awaits the answer
  const auto asked = std::chrono::steady_clock::now();
  g.agent->signal(SIGTERM);
  auto rc = g.wait_exit(10s);
  REQUIRE(rc);
  CHECK(*rc == 0);
  CHECK(std::chrono::steady_clock::now() - asked < 1500ms);
  CHECK(g.stderr_text().empty());
}
