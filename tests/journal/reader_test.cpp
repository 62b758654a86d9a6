// Queries: every filter, time ranges, keyset pagination (pages concatenate to the full list,
// in both directions), counting, and merging two gateways' journals by time.
#include "journal/reader.hpp"

#include <catch2/catch.hpp>
#include <fstream>

#include "tests/journal/support.hpp"

using namespace rsgate;
using namespace rsgate::journal;
using rsgate::test::journal_fixture;
using rsgate::test::sample_entry;

namespace {
// 30 entries, one per minute: alternating PMRs, actors, kinds and outcomes. Closing the
// writer adds a checkpoint (seq 31) a minute after the last.
void fill(journal_fixture& f, journal::writer& w, int n = 30) {
  for (int i = 0; i < n; ++i) {
    auto e = sample_entry(i % 3 == 0 ? "channel.open" : "session.attach",
                          i % 2 ? "alice" : "bob");
    e.pmr = i % 2 ? "12345,677,000" : "TS012345678";
    e.session_id = "S" + std::to_string(i % 5);
    e.machine = i < 10 ? "9009-42A*7801234" : "8286-41A*0000001";
    e.result = i % 7 == 0 ? outcome::denied : outcome::ok;
    e.secret_hmac = i == 4 ? "aa" : "";
    REQUIRE(w.append_sync(e).ok());
    f.clock.advance(60'000'000);
  }
}

std::vector<std::int64_t> seqs(const std::vector<entry>& es) {
  std::vector<std::int64_t> out;
  for (auto& e : es) out.push_back(e.seq);
  return out;
}
}  // namespace

TEST_CASE("filters select exactly the matching entries") {
  journal_fixture f;
  auto w = f.open();
  const micros t0 = f.clock.now();
  fill(f, *w);
  w->close();
  reader r({f.db});
  filter all;
  CHECK(r.count(all) == 31);
  filter q;
  q.pmr = "12345,677,000";
  CHECK(r.count(q) == 15);
  q = {};
  q.actor = "alice";
  q.kind = "channel.open";
  auto p = r.query(q);
  for (auto& e : p.entries) {
    CHECK(e.actor == "alice");
    CHECK(e.kind == "channel.open");
  }
  CHECK(p.entries.size() == 5);  // odd i divisible by 3: 3,9,15,21,27
  q = {};
  q.result = outcome::denied;
  CHECK(r.count(q) == 5);  // 0,7,14,21,28
  q = {};
  q.session_id = "S0";
  CHECK(r.count(q) == 6);
  q = {};
  q.machine = "9009-42A*7801234";
  CHECK(r.count(q) == 10);
  q = {};
  q.secret_hmac = "aa";
  CHECK(seqs(r.query(q).entries) == std::vector<std::int64_t>{5});
  q = {};
  q.since = t0 + 10 * 60'000'000;  // inclusive
  q.until = t0 + 20 * 60'000'000;  // exclusive
  auto range = r.query(q).entries;
  REQUIRE(range.size() == 10);
  CHECK(range.front().seq == 11);
  CHECK(range.back().seq == 20);
  q = {};
  q.pmr = "99999,999,999";
  CHECK(r.query(q).entries.empty());
}

TEST_CASE("keyset pagination covers everything exactly once, both directions") {
  journal_fixture f;
  auto w = f.open();
  fill(f, *w);
  w->close();
  reader r({f.db});
  for (bool desc : {false, true}) {
    filter q;
    q.limit = 7;
    q.descending = desc;
    std::vector<std::int64_t> got;
    for (int pages = 0; pages < 10; ++pages) {
      auto p = r.query(q);
      for (auto& e : p.entries) got.push_back(e.seq);
      if (!p.next) break;
      q.after = p.next;
      auto again = cursor::decode(p.next->encode());
      REQUIRE(again);
      CHECK(*again == *p.next);
    }
    std::vector<std::int64_t> want;
    for (int i = 1; i <= 31; ++i) want.push_back(i);
    if (desc) std::reverse(want.begin(), want.end());
    CHECK(got == want);
  }
}

TEST_CASE("two gateways' journals merge by time") {
  journal_fixture a, b;
  b.clock.set(a.clock.now() + 30'000'000);  // b's entries fall between a's
  auto oa = journal_fixture::quiet();
  oa.gateway = "gw-a";
  auto ob = journal_fixture::quiet();
  ob.gateway = "gw-b";
  {
    auto wa = a.open(oa);
    auto wb = b.open(ob);
    fill(a, *wa, 5);
    fill(b, *wb, 5);
  }
  reader r({a.db, b.db});
  filter q;
  q.limit = 3;
  std::vector<std::string> order;
  for (;;) {
    auto p = r.query(q);
    for (auto& e : p.entries) order.push_back(e.gateway);
    if (!p.next) break;
    q.after = p.next;
  }
  // Five entries and a closing checkpoint each, interleaved by time.
  CHECK(order == std::vector<std::string>{"gw-a", "gw-b", "gw-a", "gw-b", "gw-a", "gw-b", "gw-a",
                                          "gw-b", "gw-a", "gw-b", "gw-a", "gw-b"});
  CHECK(r.count({}) == 12);
}

TEST_CASE("cursor text form refuses garbage") {
  CHECK_FALSE(cursor::decode("").has_value());
  CHECK_FALSE(cursor::decode("1.2").has_value());
  CHECK_FALSE(cursor::decode("a.2.00").has_value());
  CHECK_FALSE(cursor::decode("1.2.zz").has_value());
  CHECK_FALSE(cursor::decode("-1.2.00").has_value());
  CHECK(cursor::decode("1.2.6777").value() == cursor{1, 2, "gw"});
}

TEST_CASE("opening a missing file or a non-journal fails clearly") {
  rsgate::test::temp_dir t;
  CHECK_THROWS_WITH(reader({t / "nope.db"}), Catch::Contains("no such journal file"));
  {
    std::ofstream(t / "text.db") << "hello, not a database\n";
  }
  CHECK_THROWS_AS(reader({t / "text.db"}), not_a_journal);
}

TEST_CASE("exclude_audit leaves out the lookups of a PMR, through the index that skips them") {
  journal_fixture f;
  auto w = f.open();
  fill(f, *w);
  for (int i = 0; i < 40; ++i) {  // forty lookups of one PMR, journaled with it
    auto e = sample_entry("audit.query", "carol");
    e.pmr = "TS012345678";
    REQUIRE(w->append_sync(e).ok());
  }
  w->close();
  reader r({f.db});
  filter q;
  q.pmr = "TS012345678";
  CHECK(r.count(q) == 55);
  q.exclude_audit = true;
  auto p = r.query(q);
  CHECK(p.entries.size() == 15);
  for (auto& e : p.entries) CHECK(e.kind != "audit.query");
  // The planner reads journal_by_pmr_access, so the lookups are never stepped over.
  auto plan = r.db(0).prepare(
      "EXPLAIN QUERY PLAN SELECT seq FROM journal WHERE pmr = ?1 AND pmr <> '' AND kind <> 'audit.query' ORDER BY ts");
  plan.bind(1, std::string("TS012345678"));
  std::string text;
  while (plan.step()) {
    text += plan.col_text(3);
    text += '\n';
  }
  CHECK(text.find("journal_by_pmr_access") != std::string::npos);
}
