// The channel flow-control state machine without sockets (docs/protocol.md §8): every
// channel frame in every state, windows and credit, growth from the tunnel's and the gateway's
// budgets, half-close in both orders, a stalled reader, close and abrupt close. Two ends are
// run back to back over an in-order queue of frames, as the gateway and the agent run them.
#include "protocol/channel_flow.hpp"

#include <catch2/catch.hpp>
#include <deque>
#include <vector>

using namespace rsgate::tunnel;
using ft = frame_type;
using verdict = channel_verdict;
using role = channel_flow::role;

namespace {

channel_flow gateway_end() { return channel_flow(role::opener); }
channel_flow agent_end() { return channel_flow(role::acceptor, kInitialWindow); }
channel_flow open_gateway_end() {
  auto f = gateway_end();
  REQUIRE(f.on_frame(ft::channel_accept, kInitialWindow) == verdict::credit);
  return f;
}
channel_flow open_agent_end() {
  auto f = agent_end();
  f.accepted_locally();
  return f;
}

// A gateway end and an agent end joined by an in-order wire each way. Each end carries out
// the verdicts as its runtime does: DATA delivered is counted as held, WINDOW and CLOSE are
// answered; a protocol error is recorded.
struct channel_pair {
  struct frame_in_flight {
    ft type;
    std::uint32_t value;
  };
  struct end {
    explicit end(channel_flow f) : flow(f) {}
    channel_flow flow;
    std::deque<frame_in_flight> inbound;  // frames on the wire toward this end
    std::uint64_t received = 0, handed = 0, sent = 0;
    std::vector<verdict> errors;
    window_budget* budget = nullptr;
  };
  end gw{gateway_end()}, ag{agent_end()};

  static void push(end& to, ft t, std::uint32_t v = 0) { to.inbound.push_back({t, v}); }
  end& peer_of(end& e) { return &e == &gw ? ag : gw; }

  void accept() {
    ag.flow.accepted_locally();
    push(gw, ft::channel_accept, kInitialWindow);
    deliver(gw);
  }
  // Sends up to `want` bytes from `e` in DATA frames of at most 32 KiB; returns how many.
  std::uint64_t send(end& e, std::uint64_t want) {
    std::uint64_t total = 0;
    while (total < want) {
      auto n = e.flow.sendable(std::min<std::uint64_t>(want - total, kMaxDataPayload));
      if (n == 0) break;
      e.flow.sent(n);
      push(peer_of(e), ft::data, n);
      e.sent += n;
      total += n;
    }
    return total;
  }
  // `e` hands `n` held bytes on and returns WINDOW to its peer as the flow says.
  void hand_on(end& e, std::uint32_t n) {
    REQUIRE(n <= e.received - e.handed);
    e.handed += n;
    if (auto inc = e.flow.handed_on(n, e.budget)) push(peer_of(e), ft::window, inc);
  }
  // Every frame on the wire toward `e`, judged and carried out.
  void deliver(end& e) {
    while (!e.inbound.empty()) {
      auto f = e.inbound.front();
      e.inbound.pop_front();
      switch (auto v = e.flow.on_frame(f.type, f.value)) {
        case verdict::deliver: e.received += f.value; break;
        case verdict::answer_close: push(peer_of(e), ft::close); break;
        case verdict::window_exceeded:
        case verdict::unexpected: e.errors.push_back(v); break;
        default: break;
      }
    }
  }
  void deliver_all() {
    deliver(gw);
    deliver(ag);
    deliver(gw);
  }
  [[nodiscard]] static std::uint64_t in_flight(const end& to) {
    std::uint64_t n = 0;
    for (auto& f : to.inbound)
      if (f.type == ft::data) n += f.value;
    return n;
  }
};

}  // namespace

TEST_CASE("every channel frame in every state gets its documented verdict") {
  struct state_row {
    const char* name;
    channel_flow flow;
  };
  auto eof_in = open_gateway_end();
  REQUIRE(eof_in.on_frame(ft::eof) == verdict::eof);
  auto eof_out = open_gateway_end();
  REQUIRE(eof_out.send_eof());
  auto close_out = open_gateway_end();
  REQUIRE(close_out.close());
  auto close_in = open_gateway_end();
  REQUIRE(close_in.on_frame(ft::close) == verdict::answer_close);
  auto rejected = gateway_end();
  REQUIRE(rejected.on_frame(ft::channel_reject) == verdict::closed);
  auto gone = open_agent_end();
  gone.abandon();
  std::vector<state_row> states = {
      {"gateway, waiting for CHANNEL_ACCEPT", gateway_end()},
      {"agent, connecting to its target", agent_end()},
      {"gateway, open", open_gateway_end()},
      {"agent, open", open_agent_end()},
      {"the peer's EOF received", eof_in},
      {"our EOF sent", eof_out},
      {"our CLOSE sent", close_out},
      {"the peer's CLOSE answered", close_in},
      {"refused by CHANNEL_REJECT", rejected},
      {"the tunnel ended", gone},
  };
  struct frame_col {
    ft type;
    std::uint32_t value;
  };
  const std::vector<frame_col> frames = {
      {ft::channel_accept, kInitialWindow}, {ft::channel_reject, 0}, {ft::data, 1}, {ft::data, 0},
      {ft::window, 1}, {ft::eof, 0}, {ft::close, 0}, {ft::channel_open, 0}};
  using V = verdict;
  constexpr auto I = V::ignore, D = V::deliver, C = V::credit, E = V::eof, X = V::closed, A = V::answer_close,
                 W = V::window_exceeded, U = V::unexpected;
  // One row per state, one column per frame above.
  const std::vector<std::vector<verdict>> expected = {
      //  ACCEPT REJECT DATA1 DATA0 WINDOW EOF CLOSE OPEN
      {C, X, U, U, U, U, A, U},  // gateway, waiting for CHANNEL_ACCEPT
      {U, U, U, U, U, U, A, U},  // agent, connecting
      {U, U, D, I, C, E, A, U},  // gateway, open
      {U, U, D, I, C, E, A, U},  // agent, open
      {U, U, W, W, C, U, A, U},  // the peer's EOF received: DATA after it is an error
      {U, U, D, I, C, E, A, U},  // our EOF sent: the other direction goes on
      {I, I, I, I, I, I, X, I},  // our CLOSE sent: frames in flight, then the answer
      {I, I, I, I, I, I, I, I},  // the peer's CLOSE answered: gone
      {I, I, I, I, I, I, I, I},  // refused: no CLOSE follows
      {I, I, I, I, I, I, I, I},  // the tunnel ended
  };
  REQUIRE(expected.size() == states.size());
  for (std::size_t s = 0; s < states.size(); ++s) {
    for (std::size_t c = 0; c < frames.size(); ++c) {
      auto flow = states[s].flow;  // each cell on a fresh copy of the state
      INFO("state: " << states[s].name << ", frame: " << name_of(frames[c].type) << " " << frames[c].value);
      CHECK(flow.on_frame(frames[c].type, frames[c].value) == expected[s][c]);
    }
  }
}

TEST_CASE("protocol-error verdicts name their ERROR code") {
  CHECK(error_code(verdict::window_exceeded) == "window_exceeded");
  CHECK(error_code(verdict::unexpected) == "unexpected");
  for (auto v : {verdict::ignore, verdict::deliver, verdict::credit, verdict::eof, verdict::closed,
                 verdict::answer_close})
    CHECK(error_code(v).empty());
}

TEST_CASE("DATA up to the window is delivered, one byte beyond it is window_exceeded") {
  auto f = open_agent_end();
  for (int i = 0; i < 8; ++i) CHECK(f.on_frame(ft::data, 32 * 1024) == verdict::deliver);
  CHECK(f.buffered() == kInitialWindow);
  CHECK(f.on_frame(ft::data, 1) == verdict::window_exceeded);
  // The limit is what is held and not yet handed on (docs/protocol.md §8): handing bytes on
  // makes room at once, whether or not their WINDOW has gone out yet.
  CHECK(f.handed_on(1000, nullptr) == 0);  // under a quarter window: no WINDOW yet
  CHECK(f.on_frame(ft::data, 1000) == verdict::deliver);
  CHECK(f.on_frame(ft::data, 1) == verdict::window_exceeded);
  auto big = open_agent_end();
  CHECK(big.on_frame(ft::data, kInitialWindow + 1) == verdict::window_exceeded);
  CHECK(big.buffered() == 0);
}

TEST_CASE("WINDOW is returned in quarter-window batches, after the bytes were handed on") {
  auto f = open_gateway_end();
  for (int i = 0; i < 8; ++i) REQUIRE(f.on_frame(ft::data, 32 * 1024) == verdict::deliver);
  CHECK(f.handed_on(kInitialWindow / 4 - 1, nullptr) == 0);
  CHECK(f.handed_on(1, nullptr) == kInitialWindow / 4);
  CHECK(f.handed_on(kInitialWindow / 2, nullptr) == kInitialWindow / 2);
  CHECK(f.buffered() == kInitialWindow / 4);
  CHECK(f.window() == kInitialWindow);  // no budget: no growth
}

TEST_CASE("the send credit: the peer's window, spent by DATA, raised by WINDOW up to 16 MiB") {
  SECTION("the gateway may send nothing before CHANNEL_ACCEPT, then the agent's window") {
    auto f = gateway_end();
    CHECK(f.sendable(100) == 0);
    CHECK_FALSE(f.send_eof());
    REQUIRE(f.on_frame(ft::channel_accept, 4096) == verdict::credit);
    CHECK(f.accepted());
    CHECK(f.sendable(100'000) == 4096);
    f.sent(4000);
    CHECK(f.sendable(100'000) == 96);
    CHECK(f.sendable(10) == 10);
    f.sent(96);
    CHECK(f.sendable(1) == 0);  // stalled: wait for WINDOW without reading the source
    CHECK_FALSE(f.sending_ended());
    CHECK(f.on_frame(ft::window, 5000) == verdict::credit);
    CHECK(f.sendable(100'000) == 5000);
  }
  SECTION("the agent knows the gateway's window from CHANNEL_OPEN and sends once it accepted") {
    channel_flow f(role::acceptor, 8192);
    CHECK(f.sendable(100'000) == 0);
    f.accepted_locally();
    CHECK(f.sendable(100'000) == 8192);
  }
  SECTION("increments add up to 16 MiB; beyond is window_exceeded, without wrapping") {
    auto f = open_gateway_end();
    CHECK(f.on_frame(ft::window, kMaxWindow - kInitialWindow) == verdict::credit);
    CHECK(f.credit() == kMaxWindow);
    CHECK(f.on_frame(ft::window, 0) == verdict::credit);
    CHECK(f.on_frame(ft::window, 1) == verdict::window_exceeded);
    auto g = open_gateway_end();
    CHECK(g.on_frame(ft::window, 0xffffffffu) == verdict::window_exceeded);
    CHECK(g.credit() == kInitialWindow);
    auto h = gateway_end();
    CHECK(h.on_frame(ft::channel_accept, kMaxWindow + 1) == verdict::window_exceeded);
  }
}

TEST_CASE("two ends exchange 64 MiB each way within their windows, whatever the reader's pace") {
  channel_pair p;
  window_budget gateway_total(kGatewayWindowBudget);
  window_budget gateway_tunnel(kTunnelWindowBudget, &gateway_total);
  window_budget agent_tunnel(kTunnelWindowBudget);
  p.gw.budget = &gateway_tunnel;
  p.ag.budget = &agent_tunnel;
  p.accept();
  constexpr std::uint64_t kTotal = 64u << 20;
  std::uint32_t seed = 12345;
  auto next = [&seed](std::uint32_t bound) {
    seed = seed * 1103515245u + 12345u;
    return (seed >> 8) % bound;
  };
  std::uint64_t max_held_ag = 0, max_held_gw = 0;
  for (int round = 0; round < 200'000 && (p.ag.handed < kTotal || p.gw.handed < kTotal); ++round) {
    (void)p.send(p.gw, std::min<std::uint64_t>(next(200'000), kTotal - p.gw.sent));
    (void)p.send(p.ag, std::min<std::uint64_t>(next(200'000), kTotal - p.ag.sent));
    p.deliver_all();
    // Every byte sent and not yet returned by WINDOW is within the receiver's window.
    CHECK(p.gw.flow.credit() + channel_pair::in_flight(p.ag) + p.ag.flow.buffered() <= p.ag.flow.window());
    CHECK(p.ag.flow.credit() + channel_pair::in_flight(p.gw) + p.gw.flow.buffered() <= p.gw.flow.window());
    max_held_ag = std::max(max_held_ag, p.ag.received - p.ag.handed);
    max_held_gw = std::max(max_held_gw, p.gw.received - p.gw.handed);
    // Readers of varying pace, sometimes none at all for a while.
    p.hand_on(p.ag, static_cast<std::uint32_t>(std::min<std::uint64_t>(next(300'000), p.ag.received - p.ag.handed)));
    p.hand_on(p.gw, static_cast<std::uint32_t>(std::min<std::uint64_t>(next(100'000), p.gw.received - p.gw.handed)));
    p.deliver_all();
  }
  CHECK(p.ag.handed == kTotal);
  CHECK(p.gw.handed == kTotal);
  CHECK(p.ag.errors.empty());
  CHECK(p.gw.errors.empty());
  CHECK(max_held_ag <= kGrownWindowMax);
  CHECK(max_held_gw <= kGrownWindowMax);
  // Busy both ways: both windows grew, to the cap, from their own tunnel's budget.
  CHECK(p.ag.flow.window() == kGrownWindowMax);
  CHECK(p.gw.flow.window() == kGrownWindowMax);
  CHECK(agent_tunnel.left() == kTunnelWindowBudget - (kGrownWindowMax - kInitialWindow));
  CHECK(gateway_tunnel.left() == kTunnelWindowBudget - (kGrownWindowMax - kInitialWindow));
  CHECK(gateway_total.left() == kGatewayWindowBudget - (kGrownWindowMax - kInitialWindow));
  p.gw.flow.release(&gateway_tunnel);
  p.gw.flow.release(&gateway_tunnel);  // once only
  p.ag.flow.release(&agent_tunnel);
  CHECK(gateway_tunnel.left() == kTunnelWindowBudget);
  CHECK(gateway_total.left() == kGatewayWindowBudget);
  CHECK(agent_tunnel.left() == kTunnelWindowBudget);
}

TEST_CASE("a stalled reader: the sender stops at the window and holds nothing more, a WINDOW resumes it") {
  channel_pair p;
  p.accept();
  // The agent's target takes nothing: the gateway sends until its credit is gone.
  CHECK(p.send(p.gw, 10u << 20) == kInitialWindow);
  CHECK(p.gw.flow.sendable(1) == 0);
  CHECK_FALSE(p.gw.flow.sending_ended());  // waiting, not ended
  p.deliver_all();
  CHECK(p.ag.received == kInitialWindow);
  CHECK(p.ag.flow.buffered() == kInitialWindow);  // memory: exactly the window, no more
  for (int i = 0; i < 100; ++i) {                  // nothing moves while nobody reads
    CHECK(p.send(p.gw, 1 << 20) == 0);
    p.deliver_all();
  }
  CHECK(p.ag.flow.buffered() == kInitialWindow);
  // The other direction is not held up by the stalled one.
  CHECK(p.send(p.ag, 100'000) == 100'000);
  p.deliver_all();
  CHECK(p.gw.received == 100'000);
  // The reader moves: a quarter window is handed on, returned, and can be sent again.
  p.hand_on(p.ag, kInitialWindow / 4);
  p.deliver_all();
  CHECK(p.gw.flow.credit() == kInitialWindow / 4);
  CHECK(p.send(p.gw, 10u << 20) == kInitialWindow / 4);
  p.deliver_all();
  CHECK(p.ag.flow.buffered() == kInitialWindow);
  CHECK(p.ag.errors.empty());
  CHECK(p.gw.errors.empty());
}

TEST_CASE("window growth: doubling to 4 MiB within the tunnel's budget and the gateway's") {
  // Receives `n` bytes on `f` as a peer within its credit would, and hands them on at once.
  auto pump = [](channel_flow& f, std::uint64_t n, window_budget* b) {
    std::uint32_t credit = f.window();  // a fresh peer's credit: the whole window
    for (std::uint64_t done = 0; done < n;) {
      auto k = static_cast<std::uint32_t>(std::min<std::uint64_t>({n - done, credit, kMaxDataPayload}));
      REQUIRE(k > 0);
      REQUIRE(f.on_frame(ft::data, k) == verdict::deliver);
      credit -= k;
      credit += f.handed_on(k, b);
      done += k;
    }
  };
  SECTION("the tunnel's 16 MiB: four channels reach 4 MiB, the fifth gets what is left") {
    window_budget gateway(kGatewayWindowBudget);
    window_budget tunnel(kTunnelWindowBudget, &gateway);
    std::vector<channel_flow> ch(6, open_gateway_end());
    std::uint64_t grown = 0;
    for (auto& f : ch) {
      pump(f, 64u << 20, &tunnel);
      grown += f.window() - kInitialWindow;
    }
    for (int i = 0; i < 4; ++i) CHECK(ch[i].window() == kGrownWindowMax);
    CHECK(ch[4].window() == kInitialWindow + (kTunnelWindowBudget - 4 * (kGrownWindowMax - kInitialWindow)));
    CHECK(ch[5].window() == kInitialWindow);  // the budget is spent: no growth
    CHECK(grown == kTunnelWindowBudget);
    CHECK(tunnel.left() == 0);
    CHECK(gateway.left() == kGatewayWindowBudget - kTunnelWindowBudget);
    // A channel that ends gives its growth back; the next busy one grows again.
    ch[0].release(&tunnel);
    CHECK(tunnel.left() == kGrownWindowMax - kInitialWindow);
    pump(ch[5], 64u << 20, &tunnel);
    CHECK(ch[5].window() == kGrownWindowMax);
    // And the grown window is the DATA limit: exactly that much may be held, no more.
    auto& f = ch[5];
    for (std::uint32_t held = 0; held < f.window(); held += kMaxDataPayload)
      REQUIRE(f.on_frame(ft::data, kMaxDataPayload) == verdict::deliver);
    CHECK(f.on_frame(ft::data, 1) == verdict::window_exceeded);
  }
  SECTION("the gateway's budget bounds every tunnel's together") {
    window_budget gateway(3 * kInitialWindow);
    window_budget t1(kTunnelWindowBudget, &gateway), t2(kTunnelWindowBudget, &gateway);
    auto a = open_gateway_end(), b = open_gateway_end();
    pump(a, 64u << 20, &t1);
    pump(b, 64u << 20, &t2);
    CHECK(a.window() + b.window() == 2 * kInitialWindow + 3 * kInitialWindow);
    CHECK(gateway.left() == 0);
    CHECK(t1.left() + t2.left() == 2 * kTunnelWindowBudget - 3 * kInitialWindow);
    a.release(&t1);
    b.release(&t2);
    CHECK(gateway.left() == 3 * kInitialWindow);
  }
  SECTION("no growth, and no WINDOW, once the channel is closed") {
    window_budget tunnel(kTunnelWindowBudget);
    auto f = open_gateway_end();
    for (int i = 0; i < 8; ++i) REQUIRE(f.on_frame(ft::data, 32 * 1024) == verdict::deliver);
    REQUIRE(f.close());
    CHECK(f.handed_on(kInitialWindow, &tunnel) == 0);
    CHECK(f.buffered() == 0);
    CHECK(tunnel.left() == kTunnelWindowBudget);
  }
}

TEST_CASE("half-close in both orders: each direction ends on its own, then the channel closes") {
  auto order = GENERATE(0, 1);
  channel_pair p;
  p.accept();
  auto& first = order == 0 ? p.gw : p.ag;  // the end whose source ends first
  auto& second = order == 0 ? p.ag : p.gw;
  INFO((order == 0 ? "the representative's eof first" : "the target's FIN first"));
  REQUIRE(p.send(first, 100'000) == 100'000);
  REQUIRE(first.flow.send_eof());
  channel_pair::push(second, ft::eof);
  CHECK_FALSE(first.flow.send_eof());  // once
  CHECK(first.flow.sending_ended());
  CHECK(first.flow.sendable(1) == 0);
  p.deliver_all();
  // The EOF is handed on only after every byte before it.
  CHECK(second.flow.eof_received());
  CHECK_FALSE(second.flow.take_eof());
  p.hand_on(second, 60'000);
  CHECK_FALSE(second.flow.take_eof());
  p.hand_on(second, 40'000);
  CHECK(second.flow.received_all());
  CHECK(second.flow.take_eof());
  CHECK_FALSE(second.flow.take_eof());  // once
  CHECK(second.flow.eof_handed_on());
  // The other direction goes on for as long as it wants, WINDOW included.
  CHECK(p.send(second, 200'000) == 200'000);
  p.deliver_all();
  p.hand_on(first, 200'000);
  p.deliver_all();
  CHECK(first.received == 200'000);
  CHECK(second.flow.credit() == kInitialWindow);  // all of it returned: over a quarter window
  CHECK_FALSE(first.flow.both_ended());
  CHECK_FALSE(second.flow.both_ended());
  REQUIRE(second.flow.send_eof());
  channel_pair::push(first, ft::eof);
  p.deliver_all();
  CHECK(second.flow.both_ended());
  CHECK_FALSE(first.flow.both_ended());  // until it hands the EOF on
  CHECK(first.flow.take_eof());
  CHECK(first.flow.both_ended());
  CHECK(second.flow.both_ended());
  // The agent closes the channel when both directions ended; the gateway answers once.
  REQUIRE(p.ag.flow.close());
  channel_pair::push(p.gw, ft::close);
  p.deliver_all();
  CHECK(p.gw.flow.closed());
  CHECK(p.ag.flow.closed());
  CHECK_FALSE(p.gw.flow.close());  // answered already: no second CLOSE
  CHECK(p.gw.inbound.empty());
  CHECK(p.ag.inbound.empty());
  CHECK(p.ag.flow.received_all());  // the agent closes its target normally (a FIN)
  CHECK(p.ag.errors.empty());
  CHECK(p.gw.errors.empty());
}

TEST_CASE("DATA after the peer's EOF, or a second EOF, is a protocol error") {
  channel_pair p;
  p.accept();
  REQUIRE(p.gw.flow.send_eof());
  channel_pair::push(p.ag, ft::eof);
  channel_pair::push(p.ag, ft::data, 10);  // a broken gateway
  p.deliver(p.ag);
  REQUIRE(p.ag.errors == std::vector<verdict>{verdict::window_exceeded});
  auto f = open_agent_end();
  REQUIRE(f.on_frame(ft::eof) == verdict::eof);
  CHECK(f.on_frame(ft::eof) == verdict::unexpected);
}

TEST_CASE("close: answered once, frames in flight ignored, an abrupt end is not a clean one") {
  SECTION("this end closes; what was in flight is ignored; the peer's CLOSE is the answer") {
    channel_pair p;
    p.accept();
    REQUIRE(p.send(p.ag, kInitialWindow) == kInitialWindow);  // in flight toward the gateway
    REQUIRE(p.gw.flow.close());
    CHECK_FALSE(p.gw.flow.close());  // once
    CHECK(p.gw.flow.sending_ended());
    CHECK_FALSE(p.gw.flow.send_eof());
    channel_pair::push(p.ag, ft::close);
    p.deliver(p.gw);  // the DATA in flight: ignored, not held
    CHECK(p.gw.received == 0);
    p.deliver(p.ag);  // the agent answers
    CHECK(p.ag.flow.closed());
    CHECK_FALSE(p.ag.flow.received_all());  // no EOF came: the agent resets its target
    REQUIRE(p.gw.inbound.size() == 1);
    CHECK(p.gw.flow.on_frame(ft::close) == verdict::closed);  // the answer: nothing to send
    p.gw.inbound.clear();
    CHECK(p.gw.flow.on_frame(ft::close) == verdict::ignore);
    CHECK(p.gw.errors.empty());
  }
  SECTION("both ends close at once: each CLOSE answers the other, none is sent twice") {
    channel_pair p;
    p.accept();
    REQUIRE(p.gw.flow.close());
    REQUIRE(p.ag.flow.close());
    channel_pair::push(p.ag, ft::close);
    channel_pair::push(p.gw, ft::close);
    p.deliver_all();
    CHECK(p.gw.inbound.empty());
    CHECK(p.ag.inbound.empty());
    CHECK(p.gw.flow.closed());
    CHECK(p.ag.flow.closed());
  }
  SECTION("the gateway's CLOSE while the agent holds unwritten bytes: cut, not a clean end") {
    auto f = open_agent_end();
    REQUIRE(f.on_frame(ft::data, 5000) == verdict::deliver);
    REQUIRE(f.on_frame(ft::eof) == verdict::eof);
    CHECK_FALSE(f.received_all());  // EOF came, but 5000 bytes are not written yet
    CHECK(f.on_frame(ft::close) == verdict::answer_close);
    CHECK_FALSE(f.close());
    CHECK_FALSE(f.received_all());
    CHECK(f.handed_on(5000, nullptr) == 0);  // no WINDOW after CLOSE
  }
  SECTION("the agent refuses: no CLOSE follows CHANNEL_REJECT") {
    auto f = gateway_end();
    REQUIRE(f.on_frame(ft::channel_reject) == verdict::closed);
    CHECK(f.closed());
    CHECK_FALSE(f.close());
  }
  SECTION("the tunnel ends: the channel is gone without a frame") {
    auto f = open_agent_end();
    f.abandon();
    CHECK(f.closed());
    CHECK_FALSE(f.close());
    CHECK(f.sendable(1) == 0);
    CHECK(f.on_frame(ft::close) == verdict::ignore);
  }
}
