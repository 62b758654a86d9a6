// "The journal cannot write" as a designed mode: with a file-size limit (RLIMIT_FSIZE, the
// same mechanism as a full disk for SQLite: short writes and EFBIG), appends fail cleanly,
// readiness drops, nothing written before is damaged, and appends resume when space returns.
#include <catch2/catch.hpp>
#include <thread>

#include "tests/journal/support.hpp"
#include "tests/support/fsize_limit.hpp"

using namespace rsgate;
using namespace rsgate::journal;
using rsgate::test::journal_fixture;
using rsgate::test::sample_entry;

using rsgate::test::fsize_limit;

TEST_CASE("appends fail cleanly while the journal cannot write, and resume after") {
  journal_fixture f;
  auto o = journal_fixture::quiet();
  o.probe_every = 20'000;  // 20 ms of the manual clock: advanced by hand below
  auto w = f.open(o);
  for (int i = 0; i < 20; ++i) REQUIRE(w->append_sync(sample_entry()).ok());
  REQUIRE(w->ready());
  {
    fsize_limit limit(1);
    for (int i = 0; i < 3; ++i) {
      auto r = w->append_sync(sample_entry());
      CHECK_FALSE(r.ok());
      CHECK(r.ec == errc::write_failed);
    }
    CHECK_FALSE(w->ready());
    auto st = w->stats();
    CHECK(st.last_seq == 20);
    CHECK(st.failed == 3);
    limit.lift();
    // Readiness comes back through the idle write probe, without any append.
    f.clock.advance(100'000);
    for (int i = 0; i < 200 && !w->ready(); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(10));
    CHECK(w->ready());
  }
  auto r = w->append_sync(sample_entry());
  REQUIRE(r.ok());
  CHECK(r.seq == 21);  // no gap where the failed appends were
  w->close();
  sqlite::db d(f.db, sqlite::open_mode::read_only);
  auto v = verify(d, f.key.pub());
  CHECK(v.ok);
  CHECK(v.entries == 22);  // 21 + the closing checkpoint
}
