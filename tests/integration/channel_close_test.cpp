// Issue 7, defect 25: every way an end of a channel goes away closes the channel end to end
// within a bound. Real processes on loopback: `rsgate serve`, `rsgate-agent start`, `rsgate
// connect`, a customer target that serves one connection at a time (serial_target), and
// representative clients that reset, close with unread data, are SIGKILLed, half-close, or
// push into a stalled target. After each, within 5 s: the target saw its connection end,
// `channel.close` is journaled with a reason, no socket of the path is left in CLOSE-WAIT or
// ESTABLISHED, and the target (free again) accepts the next channel.
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>

#include <boost/json/parse.hpp>
#include <chrono>
#include <fstream>
#include <sstream>
#include <thread>

#include "tests/integration/gateway_fixture.hpp"
#include "tests/support/echo_server.hpp"
#include "tests/support/serial_target.hpp"

using namespace rsgate;
using namespace rsgate::test;
namespace json = boost::json;
using namespace std::chrono_literals;

namespace {

constexpr auto kBound = 5s;  // how long any end may take to learn that the channel is gone

// One row of /proc/net/tcp (IPv4; everything here is on 127.0.0.1).
struct tcp_row {
  unsigned local_port = 0, remote_port = 0, state = 0;
  std::size_t rx_queue = 0;
};
constexpr unsigned kEstablished = 0x01, kCloseWait = 0x08;

std::vector<tcp_row> tcp_table() {
  std::ifstream in("/proc/net/tcp");
  std::string line;
  std::getline(in, line);  // header
  std::vector<tcp_row> rows;
  while (std::getline(in, line)) {
    std::istringstream ls(line);
    std::string sl, local, remote, st, queues;
    ls >> sl >> local >> remote >> st >> queues;
    tcp_row r;
    r.local_port = static_cast<unsigned>(std::stoul(local.substr(local.find(':') + 1), nullptr, 16));
    r.remote_port = static_cast<unsigned>(std::stoul(remote.substr(remote.find(':') + 1), nullptr, 16));
    r.state = static_cast<unsigned>(std::stoul(st, nullptr, 16));
    r.rx_queue = std::stoul(queues.substr(queues.find(':') + 1), nullptr, 16);
    rows.push_back(r);
  }
  return rows;
}

template <typename F>
bool within(std::chrono::milliseconds limit, F done, std::chrono::milliseconds step = 20ms) {
  auto deadline = std::chrono::steady_clock::now() + limit;
  for (;;) {
    if (done()) return true;
    if (std::chrono::steady_clock::now() >= deadline) return false;
    std::this_thread::sleep_for(step);
  }
}

std::uint16_t local_port_of(int s) {
  sockaddr_in a{};
  socklen_t len = sizeof a;
  ::getsockname(s, reinterpret_cast<sockaddr*>(&a), &len);
  return ntohs(a.sin_port);
}

// Bytes that arrived at the socket bound to local port `p` and were not read.
std::size_t unread_at(unsigned p) {
  for (auto& r : tcp_table())
    if (r.local_port == p && r.state == kEstablished) return r.rx_queue;
  return 0;
}

void reset_close(int s) {
  linger l{1, 0};
  ::setsockopt(s, SOL_SOCKET, SO_LINGER, &l, sizeof l);
  ::close(s);
}

// The world of one test: a gateway, an agent offering scope `one` (the serial target), and
// `rsgate connect` for alice listening on `port`.
struct world {
  gateway_fixture f;
  serial_target target;
  attached sess;
  std::unique_ptr<child> conn;
  std::uint16_t port = 0;
  int closes = 0;  // channels that must have closed so far

  explicit world(int threads) : f(threads) {
    auto profile = f.enroll("7801250", false, {"one=127.0.0.1:" + std::to_string(target.port())});
    sess = start_and_attach(f, profile, "alice", "TS000000250");
    auto c = connect_for(f, "alice", sess.sid, "one", "other");
    conn = std::move(c.first);
    port = c.second;
  }
  ~world() {
    if (conn) {
      conn->signal(SIGTERM);
      (void)conn->wait(20s);
    }
    (void)run({agent_binary(), "stop", "--control", sess.control});
    (void)sess.agent->wait(20s);
  }

  // A new client connection through `rsgate connect`; the target accepted it.
  int open_channel() {
    int s = connect_local(port);
    REQUIRE(s >= 0);
    int want = target.accepted() + 1;
    INFO("the target (serving one connection at a time) accepts the channel");
    REQUIRE(within(kBound * 2, [&] { return target.accepted() == want; }));
    return s;
  }

  // The channel just abandoned is gone everywhere within kBound; returns its close reason.
  std::string expect_closed() {
    ++closes;
    INFO("channel " << closes);
    {
      INFO("the target sees its connection end");
      CHECK(within(kBound, [&] { return target.ended() == closes; }));
    }
    std::vector<std::string> closed;
    {
      INFO("channel.close is journaled");
      CHECK(within(kBound, [&] { return (closed = f.kinds("channel.close", "ok")).size() == static_cast<std::size_t>(closes); },
                   100ms));
    }
    {
      INFO("no socket of rsgate connect is left in CLOSE-WAIT, none of the agent's to the target open");
      CHECK(within(kBound, [&] {
        for (auto& r : tcp_table()) {
          if (r.local_port == port && r.state == kCloseWait) return false;
          if (r.remote_port == target.port() && (r.state == kEstablished || r.state == kCloseWait)) return false;
        }
        return true;
      }));
    }
    if (closed.size() != static_cast<std::size_t>(closes)) return "";
    auto e = json::parse(closed.back()).as_object();
    auto& d = e["detail"].as_object();
    CHECK(d.contains("bytes_to_agent"));
    CHECK(d.contains("bytes_from_agent"));
    std::string reason(d["reason"].as_string());
    CHECK_FALSE(reason.empty());
    return reason;
  }

  // A last, clean channel: bytes arrive intact both ways.
  void expect_working() {
    target.set_behaviour(serial_target::behaviour::echo);
    int s = open_channel();
    timeval tv{10, 0};
    ::setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    auto data = random_bytes(256 * 1024);
    CHECK(round_trip(s, data) == data);
    ::close(s);
    expect_closed();
  }
};

}  // namespace

TEST_CASE("a channel closes end to end however the representative's client goes away") {
  auto threads = GENERATE(1, 3);
  INFO("gateway threads: " << threads);
  world w(threads);
  constexpr std::size_t kBytes = 64 * 1024;
  auto data = random_bytes(kBytes);

  SECTION("reset (SO_LINGER 0) with the echo unread, then a plain close with the echo unread") {
    int s = w.open_channel();
    REQUIRE(write_all(s, data));
    REQUIRE(within(kBound, [&] { return w.target.sent() == kBytes; }));
    reset_close(s);
    CHECK(w.expect_closed() == "the representative's connection failed");

    // close() with unread bytes: the kernel answers with a reset, not a FIN.
    s = w.open_channel();
    auto local = local_port_of(s);
    REQUIRE(write_all(s, data));
    REQUIRE(within(kBound, [&] { return unread_at(local) == kBytes; }));
    ::close(s);
    CHECK(w.expect_closed() == "the representative's connection failed");
    w.expect_working();
  }

  SECTION("the client process is killed (SIGKILL) with the echo unread") {
    child client({"bash", "-c",
                  "exec 3<>/dev/tcp/127.0.0.1/" + std::to_string(w.port) +
                      " && head -c " + std::to_string(kBytes) + " /dev/zero >&3 && echo sent && exec sleep 60"},
                 w.f.t / "client.err");
    REQUIRE(client.wait_for("sent", kWait));
    REQUIRE(within(kBound * 2, [&] {
      for (auto& r : tcp_table())
        if (r.remote_port == w.port && r.state == kEstablished && r.rx_queue == kBytes) return true;
      return false;
    }));
    client.signal(SIGKILL);
    (void)client.wait(10s);
    CHECK(w.expect_closed() == "the representative's connection failed");
    w.expect_working();
  }

  SECTION("a half-close keeps the other direction open: the reply after EOF arrives whole") {
    w.target.set_behaviour(serial_target::behaviour::reply_after_eof);
    int s = w.open_channel();
    timeval tv{10, 0};
    ::setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    auto big = random_bytes(1024 * 1024);
    CHECK(round_trip(s, big) == big);
    ::close(s);
    auto reason = w.expect_closed();
    CHECK((reason == "closed by the representative" || reason == "closed by the customer's side"));
    CHECK(w.target.last_ending() == serial_target::ending::eof);
    w.expect_working();
  }
}

TEST_CASE("a channel closes end to end when the target resets, or when the client resets into a stalled target") {
  world w(1);

  SECTION("the target resets while the client waits: the client sees the end without closing first") {
    w.target.set_behaviour(serial_target::behaviour::reset_on_data);
    int s = w.open_channel();
    REQUIRE(::write(s, "hello", 5) == 5);
    timeval tv{10, 0};
    ::setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    auto t0 = std::chrono::steady_clock::now();
    char buf[16];
    CHECK(::read(s, buf, sizeof buf) <= 0);
    CHECK(std::chrono::steady_clock::now() - t0 < kBound);
    // Still holding the socket: the channel must be closed and journaled already.
    CHECK(w.expect_closed() == "closed by the customer's side");
    CHECK(w.target.last_ending() == serial_target::ending::by_target);
    ::close(s);
    w.expect_working();
  }

  SECTION("the target half-closes, then resets while the client holds the connection idle") {
    w.target.set_behaviour(serial_target::behaviour::eof_then_reset);
    int s = w.open_channel();
    REQUIRE(::write(s, "hello", 5) == 5);
    timeval tv{10, 0};
    ::setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    char buf[16];
    CHECK(::read(s, buf, sizeof buf) == 0);  // the target's half-close arrives as EOF
    // Nothing is read from the target or written to it any more; its reset must still end
    // the channel while the client keeps its connection.
    CHECK(w.expect_closed() == "closed by the customer's side");
    CHECK(w.target.last_ending() == serial_target::ending::by_target);
    ::close(s);
    w.expect_working();
  }

  SECTION("the client stops reading, the target fills every window and resets") {
    w.target.set_behaviour(serial_target::behaviour::flood_then_reset);
    int s = w.open_channel();
    REQUIRE(::write(s, "go", 2) == 2);
    REQUIRE(within(20s, [&] { return w.target.ended() == 1; }));
    INFO("the target sent " << w.target.sent() << " bytes before it reset");
    // The agent stopped reading the target (the gateway's window is full), yet forgets the
    // channel at once.
    CHECK(within(kBound, [&] {
      auto st = run({agent_binary(), "status", "--json", "--control", w.sess.control});
      return st.exit_code == 0 && json::parse(st.out).as_object()["channels"].as_array().empty();
    }, 100ms));
    // The client then takes what was relayed before the reset, and the end.
    timeval tv{10, 0};
    ::setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    std::vector<char> buf(1 << 20);
    std::size_t got = 0;
    ssize_t n = 0;
    while ((n = ::read(s, buf.data(), buf.size())) > 0) got += static_cast<std::size_t>(n);
    CHECK(n == 0);
    CHECK(got > 0);
    CHECK(got <= w.target.sent());
    CHECK(w.expect_closed() == "closed by the customer's side");
    ::close(s);
    w.expect_working();
  }

  SECTION("the target stops reading, the client fills every window and resets") {
    w.target.set_behaviour(serial_target::behaviour::stall);
    int s = w.open_channel();
    ::fcntl(s, F_SETFL, ::fcntl(s, F_GETFL) | O_NONBLOCK);
    auto chunk = random_bytes(64 * 1024);
    std::size_t pushed = 0;
    auto deadline = std::chrono::steady_clock::now() + 20s;
    for (;;) {  // until nothing moves for half a second: every buffer on the way is full
      auto n = ::write(s, chunk.data(), chunk.size());
      if (n > 0) {
        pushed += static_cast<std::size_t>(n);
        continue;
      }
      REQUIRE(errno == EAGAIN);
      pollfd p{s, POLLOUT, 0};
      if (::poll(&p, 1, 500) == 0) break;
      REQUIRE(std::chrono::steady_clock::now() < deadline);
      REQUIRE(pushed < 512u * 1024 * 1024);
    }
    INFO("pushed " << pushed << " bytes before the path stalled");
    reset_close(s);
    CHECK(w.expect_closed() == "the representative's connection failed");
    CHECK(w.target.last_ending() == serial_target::ending::reset);
    w.expect_working();
  }
}

// Issue 8: the shutdown drains by notification, not by polling or by running out its grace
// period. With a channel open (its WebSocket an HTTPS connection, its tunnel live), SIGTERM
// ends the tunnel, the channel and the stream; each end wakes the drain, so the gateway exits
// well before the 3 s grace period, which a lost wake-up would run out.
TEST_CASE("SIGTERM with a channel open: the gateway drains it and exits well within its grace period") {
  auto threads = GENERATE(1, 3);
  INFO("gateway threads: " << threads);
  world w(threads);
  w.target.set_behaviour(serial_target::behaviour::echo);
  int s = w.open_channel();
  timeval tv{10, 0};
  ::setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  auto data = random_bytes(64 * 1024);
  REQUIRE(round_trip(s, data) == data);  // the channel is live end to end
  const auto t0 = std::chrono::steady_clock::now();
  CHECK(w.f.stop(SIGTERM) == 0);
  const auto took = std::chrono::steady_clock::now() - t0;
  INFO("the gateway took " << std::chrono::duration_cast<std::chrono::milliseconds>(took).count() << " ms to stop");
  CHECK(took < 2s);
  auto closed = w.f.kinds("channel.close", "ok");
  REQUIRE(closed.size() == 1);
  auto e = json::parse(closed.back()).as_object();
  CHECK_FALSE(e["detail"].as_object()["reason"].as_string().empty());
  ::close(s);
}
