// Tamper evidence through the library: each kind of tampering is caught and the first bad
// seq is the one a person would point at. (tests/integration/tamper_test.cpp repeats the
// important cases with the real sqlite3 program and `rsgate journal verify`.)
#include <catch2/catch.hpp>

#include "tests/journal/support.hpp"
#include "tests/support/journal_raw.hpp"

using namespace rsgate;
using namespace rsgate::journal;
using rsgate::test::journal_fixture;
using rsgate::test::sample_entry;

namespace {
// 12 entries; a checkpoint after every 5 (seq 6 and 12 are checkpoints), closed cleanly.
void make(journal_fixture& f, int n = 10) {
  auto o = journal_fixture::quiet();
  o.checkpoint_every_entries = 5;
  auto w = f.open(o);
  for (int i = 0; i < n; ++i) {
    auto e = sample_entry();
    e.actor = "user" + std::to_string(i);
    REQUIRE(w->append_sync(e).ok());
    f.clock.advance(1000);
  }
}

verify_result check(journal_fixture& f, bool with_key = true) {
  sqlite::db d(f.db, sqlite::open_mode::read_only);
  return verify(d, with_key ? std::optional<public_key>(f.key.pub()) : std::nullopt);
}

void tamper(journal_fixture& f, const std::string& sql) {
  sqlite::db d(f.db, sqlite::open_mode::read_write);
  d.exec("DROP TRIGGER IF EXISTS journal_no_update; DROP TRIGGER IF EXISTS journal_no_delete;");
  d.exec(sql);
}
}  // namespace

TEST_CASE("an untouched journal verifies, with and without the key") {
  journal_fixture f;
  make(f);
  auto r = check(f);
  CHECK(r.ok);
  CHECK(r.entries == 12);
  CHECK(r.checkpoints == 2);
  CHECK(r.signed_through == 12);
  CHECK(check(f, false).ok);
}

TEST_CASE("an empty journal verifies") {
  journal_fixture f;
  f.open()->close();
  auto r = check(f);
  CHECK(r.ok);
  CHECK(r.entries == 0);
}

TEST_CASE("the triggers refuse UPDATE and DELETE") {
  journal_fixture f;
  make(f);
  sqlite::db d(f.db, sqlite::open_mode::read_write);
  CHECK_THROWS_WITH(d.exec("UPDATE journal SET actor = 'x' WHERE seq = 3"), Catch::Contains("append-only"));
  CHECK_THROWS_WITH(d.exec("DELETE FROM journal WHERE seq = 3"), Catch::Contains("append-only"));
}

TEST_CASE("a modified field is named by seq") {
  journal_fixture f;
  make(f);
  tamper(f, "UPDATE journal SET pmr = 'TS999999999' WHERE seq = 4");
  auto r = check(f, false);
  CHECK_FALSE(r.ok);
  CHECK(r.first_bad_seq == 4);
  CHECK_THAT(r.problem, Catch::Contains("hash does not match"));
}

TEST_CASE("a deleted entry is named by its missing seq") {
  journal_fixture f;
  make(f);
  tamper(f, "DELETE FROM journal WHERE seq = 3");
  auto r = check(f, false);
  CHECK_FALSE(r.ok);
  CHECK(r.first_bad_seq == 3);
  CHECK_THAT(r.problem, Catch::Contains("missing"));
}

TEST_CASE("two swapped entries are caught at the first") {
  journal_fixture f;
  make(f);
  tamper(f,
         "CREATE TEMP TABLE a AS SELECT * FROM journal WHERE seq = 3;"
         "CREATE TEMP TABLE b AS SELECT * FROM journal WHERE seq = 4;"
         "DELETE FROM journal WHERE seq IN (3, 4);"
         "INSERT INTO journal SELECT 3, ts, gateway, kind, actor, source, session_id, pmr, machine,"
         " access_type, scope, outcome, secret_hmac, detail, prev_hash, hash, subject FROM b;"
         "INSERT INTO journal SELECT 4, ts, gateway, kind, actor, source, session_id, pmr, machine,"
         " access_type, scope, outcome, secret_hmac, detail, prev_hash, hash, subject FROM a;");
  auto r = check(f, false);
  CHECK_FALSE(r.ok);
  CHECK(r.first_bad_seq == 3);
}

TEST_CASE("a forged entry appended with a correct chain hash fails only the signature check") {
  journal_fixture f;
  make(f);
  {
    sqlite::db d(f.db, sqlite::open_mode::read_write);
    auto s = d.prepare(std::string("SELECT ") + std::string(kEntryColumns) +
                       " FROM journal ORDER BY seq DESC LIMIT 1");
    REQUIRE(s.step());
    auto last = entry_from_row(s);
    entry e = last;
    e.seq = last.seq + 1;
    e.kind = "session.attach";
    e.actor = "forger";
    e.prev_hash = last.hash;
    e.hash = compute_hash(e);
    test::insert_raw(d, e);
  }
  CHECK(check(f, false).ok);  // the chain alone cannot tell
  auto r = check(f);
  CHECK_FALSE(r.ok);
  CHECK(r.first_bad_seq == 13);
  CHECK_THAT(r.problem, Catch::Contains("after the last signed head"));
}

TEST_CASE("a rewritten chain is caught by the checkpoint signatures") {
  journal_fixture f;
  make(f);
  // Rewrite entry 2 and recompute every hash after it (what an attacker without the key can do).
  {
    sqlite::db d(f.db, sqlite::open_mode::read_write);
    d.exec("DROP TRIGGER journal_no_update; DROP TRIGGER journal_no_delete;");
    auto s = d.prepare(std::string("SELECT ") + std::string(kEntryColumns) + " FROM journal ORDER BY seq");
    std::vector<entry> es;
    while (s.step()) es.push_back(entry_from_row(s));
    std::string prev(kGenesisHash);
    auto upd = d.prepare("UPDATE journal SET actor = ?1, detail = ?2, prev_hash = ?3, hash = ?4 WHERE seq = ?5");
    for (auto& e : es) {
      if (e.seq == 2) e.actor = "mallory";
      if (e.kind == "journal.checkpoint") {
        auto pos = e.detail.find(e.prev_hash);
        REQUIRE(pos != std::string::npos);
        e.detail.replace(pos, 64, prev);
      }
      e.prev_hash = prev;
      e.hash = compute_hash(e);
      prev = e.hash;
      upd.reset();
      upd.bind(1, e.actor).bind(2, e.detail).bind(3, e.prev_hash).bind(4, e.hash).bind(5, e.seq);
      upd.step();
    }
  }
  CHECK(check(f, false).ok);  // a consistent chain...
  auto r = check(f);          // ...that the gateway never signed
  CHECK_FALSE(r.ok);
  CHECK(r.first_bad_seq == 6);
  CHECK_THAT(r.problem, Catch::Contains("signature does not verify"));
}

TEST_CASE("the wrong public key fails verification") {
  journal_fixture f;
  make(f);
  sqlite::db d(f.db, sqlite::open_mode::read_only);
  auto r = verify(d, signing_key::generate().pub());
  CHECK_FALSE(r.ok);
  CHECK(r.first_bad_seq == 6);
}

TEST_CASE("a truncated tail is caught by the signed head") {
  journal_fixture f;
  make(f);
  tamper(f, "DELETE FROM journal WHERE seq >= 11");
  auto r = check(f);
  CHECK_FALSE(r.ok);
  CHECK(r.first_bad_seq == 11);
}

TEST_CASE("an emptied journal is caught by the signed head") {
  journal_fixture f;
  make(f);
  tamper(f, "DELETE FROM journal");
  auto r = check(f);
  CHECK_FALSE(r.ok);
  CHECK(r.first_bad_seq == 1);
  CHECK(check(f, false).ok);  // the chain alone cannot tell
}

TEST_CASE("an outcome outside ok/denied/error is refused, not read as error") {
  journal_fixture f;
  make(f);
  tamper(f, "PRAGMA ignore_check_constraints = ON; UPDATE journal SET outcome = 'bogus' WHERE seq = 3");
  auto r = check(f, false);
  CHECK_FALSE(r.ok);
  CHECK(r.first_bad_seq == 3);
  CHECK_THAT(r.problem, Catch::Contains("outcome"));
}

TEST_CASE("a changed, added or removed subject is caught at its entry") {
  journal_fixture f;
  {
    auto w = f.open();
    for (int i = 0; i < 4; ++i) {
      auto e = sample_entry("admin.user", "cli:root");
      e.subject = i == 1 ? "bob" : "";
      REQUIRE(w->append_sync(e).ok());
    }
  }
  CHECK(check(f).ok);
  for (std::string sql : {"UPDATE journal SET subject = 'eve' WHERE seq = 2",
                          "UPDATE journal SET subject = '' WHERE seq = 2",
                          "UPDATE journal SET subject = 'eve' WHERE seq = 3"}) {
    journal_fixture g;
    std::filesystem::copy_file(f.db, g.db);
    g.key = f.key;
    tamper(g, sql);
    auto r = check(g, false);
    INFO(sql);
    CHECK_FALSE(r.ok);
    CHECK(r.first_bad_seq == (sql.ends_with("3") ? 3 : 2));
    CHECK_THAT(r.problem, Catch::Contains("hash does not match"));
  }
}

TEST_CASE("damaged structure is a failed check at seq 1, not an unreadable file") {
  SECTION("journal_head dropped: fails with the key, holds without it") {
    journal_fixture f;
    make(f);
    tamper(f, "DROP TABLE journal_head");
    auto r = check(f);
    CHECK_FALSE(r.ok);
    CHECK(r.first_bad_seq == 1);
    CHECK_THAT(r.problem, Catch::Contains("signed head is missing"));
    CHECK(check(f, false).ok);
  }
  SECTION("journal_head without its signature column counts as missing") {
    journal_fixture f;
    make(f);
    tamper(f, "ALTER TABLE journal_head DROP COLUMN signature");
    auto r = check(f);
    CHECK_FALSE(r.ok);
    CHECK(r.first_bad_seq == 1);
  }
  SECTION("an emptied journal without journal_head: nothing left to tell (docs §11)") {
    journal_fixture f;
    make(f);
    tamper(f, "DELETE FROM journal; DROP TABLE journal_head; DROP TABLE journal_meta");
    CHECK(check(f).ok);
  }
  SECTION("the journal table dropped") {
    journal_fixture f;
    make(f);
    tamper(f, "DROP TABLE journal");
    sqlite::db d(f.db, sqlite::open_mode::read_only);
    auto r = verify(d, std::nullopt);
    CHECK_FALSE(r.ok);
    CHECK(r.first_bad_seq == 1);
    CHECK_THAT(r.problem, Catch::Contains("table journal is missing"));
    // Verification opens it (it is still ours); queries do not.
    CHECK_NOTHROW(reader({f.db}, true));
    CHECK_THROWS_AS(reader({f.db}), not_a_journal);
  }
  SECTION("a column dropped from journal") {
    journal_fixture f;
    make(f);
    tamper(f, "ALTER TABLE journal DROP COLUMN scope");
    auto r = check(f, false);
    CHECK_FALSE(r.ok);
    CHECK(r.first_bad_seq == 1);
    CHECK_THAT(r.problem, Catch::Contains("no column scope"));
  }
}
