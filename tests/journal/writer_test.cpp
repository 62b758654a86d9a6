// The writer: seq order, chain continuity across reopen, group commit under concurrency,
// checkpoints by count, time and shutdown, bounded queue, refusal of invalid entries.
#include "journal/writer.hpp"

#include <catch2/catch.hpp>
#include <fstream>
#include <latch>
#include <set>
#include <thread>

#include "tests/journal/support.hpp"

using namespace rsgate;
using namespace rsgate::journal;
using rsgate::test::journal_fixture;
using rsgate::test::sample_entry;

TEST_CASE("appends get consecutive seqs and a continuous chain, also after reopening") {
  journal_fixture f;
  std::string prev(kGenesisHash);
  {
    auto w = f.open();
    for (int i = 1; i <= 5; ++i) {
      auto r = w->append_sync(sample_entry());
      REQUIRE(r.ok());
      CHECK(r.seq == i);
      CHECK(r.ts == f.clock.now());
    }
  }
  // Closing wrote a checkpoint (seq 6) over the five entries.
  {
    auto w = f.open();
    auto r = w->append_sync(sample_entry("session.end"));
    REQUIRE(r.ok());
    CHECK(r.seq == 7);
  }
  reader rd({f.db});
  auto res = verify(rd.db(0), f.key.pub());
  CHECK(res.ok);
  CHECK(res.entries == 8);
  CHECK(res.checkpoints == 2);
  auto page = rd.query({});
  for (auto& e : page.entries) {
    CHECK(e.prev_hash == prev);
    CHECK(e.gateway == "gw-test");
    prev = e.hash;
  }
}

TEST_CASE("timestamps never go backwards even if the clock does") {
  journal_fixture f;
  auto w = f.open();
  auto a = w->append_sync(sample_entry());
  f.clock.advance(-5'000'000);
  auto b = w->append_sync(sample_entry());
  REQUIRE(a.ok());
  REQUIRE(b.ok());
  CHECK(b.ts >= a.ts);
}

TEST_CASE("group commit: 64 concurrent producers, every append durable, grouped into batches") {
  journal_fixture f;
  auto w = f.open();
  constexpr int kProducers = 64, kEach = 40;
  std::mutex mu;
  std::set<std::int64_t> seqs;
  std::vector<std::thread> pool;
  for (int p = 0; p < kProducers; ++p)
    pool.emplace_back([&, p] {
      for (int i = 0; i < kEach; ++i) {
        auto r = w->append_sync(sample_entry("channel.open", "u" + std::to_string(p)));
        REQUIRE(r.ok());
        std::lock_guard lock(mu);
        seqs.insert(r.seq);
      }
    });
  for (auto& t : pool) t.join();
  REQUIRE(seqs.size() == kProducers * kEach);
  CHECK(*seqs.begin() == 1);
  CHECK(*seqs.rbegin() == kProducers * kEach);
  auto st = w->stats();
  CHECK(st.appended == kProducers * kEach);
  // With 64 producers waiting on fsync, transactions carry many entries each.
  CHECK(st.batches * 4 < st.appended);
  w->close();
  reader rd({f.db});
  CHECK(verify(rd.db(0), f.key.pub()).ok);
}

TEST_CASE("one transaction per entry when group commit is off") {
  journal_fixture f;
  auto o = journal_fixture::quiet();
  o.group_commit = false;
  auto w = f.open(o);
  std::vector<std::future<append_result>> fs;
  for (int i = 0; i < 20; ++i) fs.push_back(w->append(sample_entry()));
  for (auto& x : fs) REQUIRE(x.get().ok());
  CHECK(w->stats().batches == 20);
}

TEST_CASE("checkpoints every N entries, after T seconds, and at close") {
  journal_fixture f;
  auto o = journal_fixture::quiet();
  o.checkpoint_every_entries = 10;
  {
    auto w = f.open(o);
    for (int i = 0; i < 25; ++i) REQUIRE(w->append_sync(sample_entry()).ok());
    CHECK(w->stats().checkpoints == 2);
  }  // close: one more for the 5 unsigned entries
  reader rd({f.db});
  auto res = verify(rd.db(0), f.key.pub());
  CHECK(res.ok);
  CHECK(res.checkpoints == 3);
  CHECK(res.entries == 28);

  filter cp;
  cp.kind = "journal.checkpoint";
  auto page = rd.query(cp);
  REQUIRE(page.entries.size() == 3);
  CHECK(page.entries[0].seq == 11);
  CHECK(page.entries[0].detail.find("\"through_seq\":10") != std::string::npos);
}

TEST_CASE("time-based checkpoint") {
  journal_fixture f;
  auto o = journal_fixture::quiet();
  o.checkpoint_every = 1'000'000;
  auto w = f.open(o);
  REQUIRE(w->append_sync(sample_entry()).ok());
  CHECK(w->stats().checkpoints == 0);
  f.clock.advance(2'000'000);
  REQUIRE(w->append_sync(sample_entry()).ok());
  CHECK(w->stats().checkpoints == 1);
}

TEST_CASE("invalid entries are refused before they reach the queue") {
  journal_fixture f;
  auto w = f.open();
  auto e = sample_entry();
  e.detail = "not json";
  auto r = w->append_sync(e);
  CHECK(r.ec == errc::invalid_entry);
  e = sample_entry();
  e.actor = "evil\x1b[2J";
  CHECK(w->append_sync(e).ec == errc::invalid_entry);
  CHECK(w->stats().last_seq == 0);
}

TEST_CASE("a full queue refuses at once instead of growing") {
  journal_fixture f;
  auto o = journal_fixture::quiet();
  o.max_queue = 2;
  auto w = f.open(o);
  std::latch release(1);
  std::latch entered(1);
  // The first completion blocks the writer thread, so later appends stay queued.
  w->append(sample_entry(), [&](const append_result&) {
    entered.count_down();
    release.wait();
  });
  entered.wait();
  auto a = w->append(sample_entry());
  auto b = w->append(sample_entry());
  auto c = w->append(sample_entry());
  auto rc = c.get();
  CHECK(rc.ec == errc::queue_full);
  release.count_down();
  CHECK(a.get().ok());
  CHECK(b.get().ok());
}

TEST_CASE("appends after close are refused") {
  journal_fixture f;
  auto w = f.open();
  w->close();
  CHECK(w->append_sync(sample_entry()).ec == errc::closed);
  w->close();  // idempotent
}

TEST_CASE("a file that is not a journal is refused") {
  journal_fixture f;
  {
    sqlite::db other(f.db, sqlite::open_mode::create);
    other.exec("PRAGMA application_id = 12345; CREATE TABLE t(x)");
  }
  CHECK_THROWS_AS(f.open(), not_a_journal);
  std::filesystem::remove(f.db);
  std::ofstream(f.db) << "plain text, not SQLite\n";
  CHECK_THROWS_AS(f.open(), not_a_journal);
}

TEST_CASE("two writers on one file (gateway and an admin command) keep one chain") {
  journal_fixture f;
  auto a = f.open();
  auto b = f.open();
  std::int64_t expected = 1;
  for (int i = 0; i < 10; ++i) {
    auto& w = i % 3 ? a : b;
    auto r = w->append_sync(sample_entry());
    REQUIRE(r.ok());
    CHECK(r.seq == expected++);
  }
  a->close();
  b->close();
  reader rd({f.db});
  auto res = verify(rd.db(0), f.key.pub());
  INFO(res.problem);
  CHECK(res.ok);
}

TEST_CASE("the gateway name: a malformed one is never signed with") {
  journal_fixture f;
  for (std::string bad : {std::string(), std::string(65, 'g'), std::string("gw\x1b[2J"), std::string("g w")}) {
    auto o = journal_fixture::quiet();
    o.gateway = bad;
    INFO(bad);
    CHECK_THROWS_WITH(f.open(o), Catch::Contains("invalid gateway name"));
  }
  f.open()->close();
  // journal_meta is not protected by the chain: an edited name is refused on the next open,
  // whatever name the writer itself would sign with, and shown escaped.
  {
    sqlite::db d(f.db, sqlite::open_mode::read_write);
    d.exec("UPDATE journal_meta SET value = 'gw' || char(27) || '[31m' WHERE key = 'gateway'");
  }
  CHECK_THROWS_AS(f.open(), bad_gateway_name);
  CHECK_THROWS_WITH(f.open(), Catch::Contains("gw\\x1b[31m"));
  {
    sqlite::db d(f.db, sqlite::open_mode::read_write);
    d.exec("UPDATE journal_meta SET value = '' WHERE key = 'gateway'");
  }
  CHECK_THROWS_AS(f.open(), bad_gateway_name);
  {
    sqlite::db d(f.db, sqlite::open_mode::read_write);
    d.exec("UPDATE journal_meta SET value = 'gw-test' WHERE key = 'gateway'");
  }
  CHECK_NOTHROW(f.open());
}

TEST_CASE("a journal from before migration 0002 keeps verifying, then gains subjects") {
  journal_fixture f;
  {
    auto w = f.open();
    for (int i = 0; i < 3; ++i) REQUIRE(w->append_sync(sample_entry()).ok());
  }
  // Turn it into a version-1 file: what every journal written before subjects looked like.
  {
    sqlite::db d(f.db, sqlite::open_mode::read_write);
    d.exec("DROP INDEX journal_by_pmr_access; DROP INDEX journal_by_subject; ALTER TABLE journal DROP COLUMN subject; "
           "PRAGMA user_version = 1");
  }
  {
    reader r({f.db}, true);
    REQUIRE_FALSE(has_column(r.db(0), "journal", "subject"));
    auto v = verify(r.db(0), f.key.pub());
    INFO(v.problem);
    CHECK(v.ok);
    CHECK(v.entries == 4);
    filter q;
    q.subject = "bob";
    CHECK(r.query(q).entries.empty());  // no column, no match, no error
    CHECK(r.query({}).entries.size() == 4);
  }
  {
    auto w = f.open();  // migrates: the column comes back, old rows read ''
    auto e = sample_entry("admin.user", "cli:root");
    e.subject = "bob";
    REQUIRE(w->append_sync(e).ok());
  }
  reader r({f.db});
  CHECK(r.db(0).scalar_int("PRAGMA user_version") == 3);  // and the index of migration 0003
  auto v = verify(r.db(0), f.key.pub());
  INFO(v.problem);
  CHECK(v.ok);
  CHECK(v.entries == 6);
  filter q;
  q.subject = "bob";
  auto p = r.query(q);
  REQUIRE(p.entries.size() == 1);
  CHECK(p.entries[0].seq == 5);
  CHECK(r.count(q) == 1);
}
