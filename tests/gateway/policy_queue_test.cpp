// The per-session serializer and the refusal throttle, without I/O: steps of one key run one
// at a time and in order, each until its ticket is gone; keys are independent; the queue is
// bounded; a throwing step does not stall its key; continuations go to the executor. The
// throttle admits a bounded number of individual entries per source and window. What waits for
// a step to settle runs after the after-step hook.
#include "gateway/policy_queue.hpp"

#include <catch2/catch.hpp>
#include <optional>
#include <stdexcept>
#include <vector>

#include "gateway/refusal_throttle.hpp"

using namespace rsgate::gateway;

TEST_CASE("policy_queue: one step per key at a time, in order, until its ticket is released") {
  policy_queue q(8);
  std::vector<std::string> log;
  std::optional<policy_queue::ticket> held;
  REQUIRE(q.submit("S-1", [&](policy_queue::ticket t) {
    log.push_back("a");
    held = std::move(t);  // waits for "the journal"
  }));
  REQUIRE(q.submit("S-1", [&](policy_queue::ticket) { log.push_back("b"); }));
  REQUIRE(q.submit("S-2", [&](policy_queue::ticket) { log.push_back("other"); }));
  REQUIRE(q.submit("S-1", [&](policy_queue::ticket) { log.push_back("c"); }));
  CHECK(log == std::vector<std::string>{"a", "other"});  // b and c wait for a; S-2 does not
  CHECK(q.busy_keys() == 1);
  held.reset();  // a's entry is durable: b and c run, in order
  CHECK(log == std::vector<std::string>{"a", "other", "b", "c"});
  CHECK(q.busy_keys() == 0);
}

TEST_CASE("policy_queue: bounded per key, forced records still queue, a throw does not stall it") {
  policy_queue q(2);
  std::optional<policy_queue::ticket> held;
  int ran = 0;
  REQUIRE(q.submit("S", [&](policy_queue::ticket t) { held = std::move(t); }));
  CHECK(q.submit("S", [&](policy_queue::ticket) { throw std::runtime_error("boom"); }));
  CHECK(q.submit("S", [&](policy_queue::ticket) { ++ran; }));
  CHECK_FALSE(q.submit("S", [&](policy_queue::ticket) { ++ran; }));      // two wait already
  CHECK(q.submit("S", [&](policy_queue::ticket) { ++ran; }, true));      // a record: never lost
  held.reset();
  CHECK(ran == 2);
  CHECK(q.busy_keys() == 0);
}

TEST_CASE("policy_queue: a step that finished elsewhere continues its key on the executor") {
  policy_queue q;
  std::vector<std::function<void()>> posted;
  q.set_executor([&](std::function<void()> f) { posted.push_back(std::move(f)); });
  std::optional<policy_queue::ticket> held;
  bool second = false;
  REQUIRE(q.submit("S", [&](policy_queue::ticket t) { held = std::move(t); }));
  REQUIRE(q.submit("S", [&](policy_queue::ticket) { second = true; }));
  held.reset();
  CHECK_FALSE(second);  // not on the releasing thread (the journal writer's)
  REQUIRE(posted.size() == 1);
  posted[0]();
  CHECK(second);
}

TEST_CASE("refusal_throttle: individual entries per source and window, the rest summarized") {
  refusal_throttle t({3, 1000, 2});
  int admitted = 0;
  for (int i = 0; i < 10; ++i) admitted += t.admit("203.0.113.1", 0) ? 1 : 0;
  CHECK(admitted == 3);
  CHECK(t.admit("203.0.113.2", 10));  // another address has its own budget
  CHECK(t.take_summaries(500).empty());  // the window is not over
  auto s = t.take_summaries(1000);
  REQUIRE(s.size() == 1);
  CHECK(s[0].source == "203.0.113.1");
  CHECK(s[0].suppressed == 7);
  CHECK(t.admit("203.0.113.1", 1001));  // a new window
  // Beyond max_sources, new addresses share one bucket.
  refusal_throttle u({1, 1000, 1});
  CHECK(u.admit("a", 0));
  CHECK(u.admit("b", 0));   // the shared "*" bucket's one
  CHECK_FALSE(u.admit("c", 0));
  auto us = u.take_summaries(1000);
  REQUIRE(us.size() == 1);
  CHECK(us[0].source == "*");
  // And all sources together get at most global_individual entries of their own per window.
  refusal_throttle g({10, 1000, 100000, 25});
  int total = 0;
  for (int i = 0; i < 100; ++i) total += g.admit("10.0.0." + std::to_string(i), 0) ? 1 : 0;
  CHECK(total == 25);
  CHECK(g.take_summaries(1000).size() == 75);
}

TEST_CASE("source_group: IPv6 by /64, IPv4 and mapped IPv4 as they are") {
  CHECK(source_group("203.0.113.7") == "203.0.113.7");
  CHECK(source_group("2001:db8:1:2:aaaa:bbbb:cccc:dddd") == "2001:db8:1:2::/64");
  CHECK(source_group("2001:db8:1:2::1") == source_group("2001:db8:1:2:ffff::9"));
  CHECK(source_group("::ffff:198.51.100.4") == "198.51.100.4");
  CHECK(source_group("not an address") == "not an address");
}

// What a step answers waits for the after-step hook (the session's state written to
// state.db): a client must never see a change confirmed that a crash could still lose.
TEST_CASE("policy_queue: what waits for a step to settle runs after the after-step hook, before the next step") {
  policy_queue q;
  std::vector<std::function<void()>> posted;
  std::vector<std::string> log;
  q.set_executor([&](std::function<void()> f) { posted.push_back(std::move(f)); });
  q.set_after_step([&](const std::string& key) { log.push_back("kept " + key); });
  std::optional<policy_queue::ticket> held;
  REQUIRE(q.submit("S", [&](policy_queue::ticket t) {
    t.when_settled([&] { log.push_back("answered"); });
    held = std::move(t);  // the journal's completion holds it
  }));
  REQUIRE(q.submit("S", [&](policy_queue::ticket) { log.push_back("next step"); }));
  CHECK(log.empty());
  held.reset();  // the entry is durable; the hook and the answer go to the executor
  CHECK(log.empty());
  REQUIRE(posted.size() == 1);
  posted[0]();
  CHECK(log == std::vector<std::string>{"kept S", "answered", "next step"});
  // Without an executor (unit tests), on the releasing thread, in the same order.
  policy_queue inline_q;
  std::vector<std::string> order;
  inline_q.set_after_step([&](const std::string&) { order.push_back("kept"); });
  REQUIRE(inline_q.submit("S", [&](policy_queue::ticket t) { t.when_settled([&] { order.push_back("answered"); }); }));
  CHECK(order == std::vector<std::string>{"kept", "answered"});
  // A default ticket belongs to no step: at once.
  bool now = false;
  policy_queue::ticket{}.when_settled([&] { now = true; });
  CHECK(now);
}
