// The limits before authentication, table by table with a hand-driven clock: pre-auth slots
// per source and in all, apart from authenticated tunnels; HELLOs per source and window; the
// journal budget and its summaries; bounded memory when sources are many.
#include "gateway/tunnel/admission.hpp"

#include <catch2/catch.hpp>

using namespace rsgate;
using namespace rsgate::tunnel;

namespace {
constexpr micros kSec = 1'000'000;
admission_limits small() {
  admission_limits l;
  l.max_authenticated = 3;
  l.max_preauth = 4;
  l.max_preauth_per_source = 2;
  l.max_hellos = 3;
  l.journal_burst = 2;
  l.window = 60 * kSec;
  l.max_sources = 4;
  return l;
}
}  // namespace

TEST_CASE("admission: pre-auth slots per source and in all, apart from authenticated tunnels") {
  admission a(small());
  micros t = 1000 * kSec;
  CHECK(a.on_accept("10.0.0.1", t).v == admission::verdict::admit);
  CHECK(a.on_accept("10.0.0.1", t).v == admission::verdict::admit);
  CHECK(a.on_accept("10.0.0.1", t).v == admission::verdict::source_full);
  CHECK(a.on_accept("10.0.0.2", t).v == admission::verdict::admit);
  CHECK(a.on_accept("10.0.0.3", t).v == admission::verdict::admit);
  CHECK(a.on_accept("10.0.0.4", t).v == admission::verdict::gateway_full);
  CHECK(a.preauth() == 4);
  // Authenticated tunnels leave the pre-auth slots: slow handshakes cannot hold real agents out.
  CHECK(a.on_authenticated("10.0.0.1"));
  CHECK(a.on_authenticated("10.0.0.2"));
  CHECK(a.preauth() == 2);
  CHECK(a.authenticated() == 2);
  CHECK(a.on_accept("10.0.0.4", t).v == admission::verdict::admit);
  CHECK(a.on_accept("10.0.0.1", t).v == admission::verdict::admit);
  CHECK(a.on_authenticated("10.0.0.3"));
  CHECK_FALSE(a.on_authenticated("10.0.0.4"));  // three authenticated at most: it stays pre-auth
  CHECK(a.preauth() == 3);                        // two from 10.0.0.1, one from 10.0.0.4
  a.on_close("10.0.0.1", true);
  a.on_close("10.0.0.4", false);
  a.on_close("10.0.0.1", false);
  a.on_close("10.0.0.1", false);
  CHECK(a.preauth() == 0);
  CHECK(a.authenticated() == 2);
}

TEST_CASE("admission: HELLOs per source and window") {
  admission a(small());
  micros t = 1000 * kSec;
  for (int i = 0; i < 3; ++i) CHECK(a.on_hello("10.0.0.1", t + i * kSec));
  CHECK_FALSE(a.on_hello("10.0.0.1", t + 5 * kSec));
  CHECK(a.on_hello("10.0.0.2", t + 5 * kSec));  // another source is not affected
  CHECK(a.on_hello("10.0.0.1", t + 60 * kSec));  // the next window
}

TEST_CASE("admission: the journal budget, then one summary per source and window") {
  admission a(small());
  micros t = 1000 * kSec;
  CHECK(a.journal_individually("10.0.0.1", t));
  CHECK(a.journal_individually("10.0.0.1", t));
  for (int i = 0; i < 10; ++i) {
    CHECK_FALSE(a.journal_individually("10.0.0.1", t + kSec));
    a.suppressed("10.0.0.1", i % 2 ? "authentication failed" : "abandoned challenge", "9009-42A*780000" + std::to_string(i),
                 t + kSec);
  }
  CHECK(a.take_due(t + 30 * kSec).empty());  // the window has not ended
  auto due = a.take_due(t + 60 * kSec);
  REQUIRE(due.size() == 1);
  CHECK(due[0].source == "10.0.0.1");
  CHECK(due[0].since == t);
  CHECK(due[0].connections == 10);
  CHECK(due[0].reasons.at("authentication failed") == 5);
  CHECK(due[0].reasons.at("abandoned challenge") == 5);
  CHECK(due[0].machines.size() == kMaxSummaryMachines);
  CHECK(a.take_due(t + 200 * kSec).empty());  // taken once
  CHECK(a.journal_individually("10.0.0.1", t + 200 * kSec));  // a new window, a new budget

  // Many distinct reasons stay within the cap; `all` takes windows that have not ended.
  for (int i = 0; i < 20; ++i) a.suppressed("10.0.0.2", "reason " + std::to_string(i), "", t + 300 * kSec);
  auto all = a.take_due(t + 301 * kSec, true);
  REQUIRE(all.size() == 1);
  CHECK(all[0].connections == 20);
  CHECK(all[0].reasons.size() == kMaxSummaryReasons);
  CHECK(all[0].reasons.at("other") == 20 - (kMaxSummaryReasons - 1));
}

TEST_CASE("admission: memory stays bounded, sources beyond the limit share one entry") {
  auto l = small();
  l.max_preauth = 100;
  admission a(l);
  micros t = 1000 * kSec;
  // Four sources hold a slot each: the next ones share "*", and its per-source limit.
  for (int i = 1; i <= 4; ++i) {
    auto tk = a.on_accept("10.0.1." + std::to_string(i), t);
    CHECK(tk.v == admission::verdict::admit);
    CHECK(tk.source == "10.0.1." + std::to_string(i));
  }
  auto t5 = a.on_accept("10.0.2.5", t);
  auto t6 = a.on_accept("10.0.2.6", t);
  CHECK(t5.source == "*");
  CHECK(t6.source == "*");
  CHECK(t5.v == admission::verdict::admit);
  CHECK(a.on_accept("10.0.2.7", t).v == admission::verdict::source_full);
  CHECK(a.tracked_sources() == 5);
  // A source that holds nothing and counted nothing is forgotten: room for a new one.
  a.on_close("10.0.1.4", false);
  a.on_close("10.0.1.3", false);
  CHECK(a.on_accept("10.0.3.8", t).source == "10.0.3.8");
  for (auto s : {"*", "*", "10.0.1.1", "10.0.1.2", "10.0.3.8"}) a.on_close(s, false);
  CHECK(a.preauth() == 0);
  CHECK(a.take_due(t + 61 * kSec).empty());
  CHECK(a.tracked_sources() == 0);
}
