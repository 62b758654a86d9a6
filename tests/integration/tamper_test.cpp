// Tamper evidence with the tools an attacker and an auditor would really use: the sqlite3
// program edits the file, `rsgate journal verify` must name the first bad seq and exit 1.
#include <fstream>

#include "tests/integration/common.hpp"

using namespace rsgate;
using namespace rsgate::test;

namespace {
struct tamper_fixture {
  temp_dir t;
  std::filesystem::path dir = t / "data";
  std::filesystem::path db = t / "copy.db";
  std::string pub;
  tamper_fixture() {
    init_data_dir(dir);
    fill_journal(dir, 10);  // seq 1-2 from init; 3-13: entries with checkpoints at 8 and 14
    std::filesystem::copy_file(dir / "journal.db", db);
    pub = (dir / "keys/journal-signing.pub").string();
  }
  run_result sql(const std::string& statements) { return run({"sqlite3", db.string(), statements}); }
  // The independent verifier written from docs/journal.md alone (Python, shares no code).
  run_result independent(bool with_key = true) {
    std::vector<std::string> a = {"/usr/bin/python3", source_path("tests/integration/verify_journal.py"),
                                  "--db", db.string()};
    if (with_key) {
      a.push_back("--pubkey");
      a.push_back(pub);
    }
    return run(a);
  }
  run_result verify(bool with_key = true) {
    std::vector<std::string> a = {"journal", "verify", "--db", db.string()};
    if (with_key) {
      a.push_back("--pubkey");
      a.push_back(pub);
    }
    return rsgate_cmd(a);
  }
};

// Both `rsgate journal verify` and the independent verifier name `seq` and exit 1.
void expect_bad(tamper_fixture& f, std::int64_t seq, bool with_key = true) {
  auto r = f.verify(with_key);
  INFO(r.out << r.err);
  CHECK(r.exit_code == 1);
  CHECK(r.out.find("FAILED at seq " + std::to_string(seq) + ":") != std::string::npos);
  auto p = f.independent(with_key);
  INFO("independent verifier: " << p.out << p.err);
  CHECK(p.exit_code == 1);
  CHECK(p.out.starts_with("bad " + std::to_string(seq) + " "));
}
}  // namespace

TEST_CASE("an untouched journal verifies with exit 0") {
  tamper_fixture f;
  auto r = f.verify();
  INFO(r.err);
  CHECK(r.exit_code == 0);
  CHECK(r.out.find("ok: 14 entries, 3 checkpoints") != std::string::npos);
  auto p = f.independent();
  INFO(p.err);
  CHECK(p.exit_code == 0);
  CHECK(p.out.starts_with("ok 14 "));
  // Both name the same head hash.
  CHECK(r.out.find(p.out.substr(6, 64)) != std::string::npos);
}

TEST_CASE("sqlite3 UPDATE and DELETE are refused by the triggers") {
  tamper_fixture f;
  auto r = f.sql("UPDATE journal SET actor = 'mallory' WHERE seq = 4;");
  CHECK(r.exit_code != 0);
  CHECK(r.err.find("append-only") != std::string::npos);
  r = f.sql("DELETE FROM journal WHERE seq = 4;");
  CHECK(r.exit_code != 0);
  CHECK(r.err.find("append-only") != std::string::npos);
  CHECK(f.verify().exit_code == 0);
}

TEST_CASE("a modified field (triggers dropped, row edited with sqlite3)") {
  tamper_fixture f;
  REQUIRE(f.sql("DROP TRIGGER journal_no_update; UPDATE journal SET actor = 'mallory' WHERE seq = 5;")
              .exit_code == 0);
  expect_bad(f, 5);
  expect_bad(f, 5, false);
}

TEST_CASE("a deleted entry") {
  tamper_fixture f;
  REQUIRE(f.sql("DROP TRIGGER journal_no_delete; DELETE FROM journal WHERE seq = 6;").exit_code == 0);
  expect_bad(f, 6);
}

TEST_CASE("two swapped entries") {
  tamper_fixture f;
  REQUIRE(f.sql("DROP TRIGGER journal_no_delete;"
                "CREATE TEMP TABLE a AS SELECT * FROM journal WHERE seq = 4;"
                "CREATE TEMP TABLE b AS SELECT * FROM journal WHERE seq = 5;"
                "DELETE FROM journal WHERE seq IN (4, 5);"
                "INSERT INTO journal SELECT 4, ts, gateway, kind, actor, source, session_id, pmr,"
                " machine, access_type, scope, outcome, secret_hmac, detail, prev_hash, hash FROM b;"
                "INSERT INTO journal SELECT 5, ts, gateway, kind, actor, source, session_id, pmr,"
                " machine, access_type, scope, outcome, secret_hmac, detail, prev_hash, hash FROM a;")
              .exit_code == 0);
  expect_bad(f, 4);
}

TEST_CASE("a forged entry appended with a recomputed chain but no valid signature") {
  tamper_fixture f;
  REQUIRE(run({helper_binary("journal_forge"), "append", f.db.string()}).exit_code == 0);
  CHECK(f.verify(false).exit_code == 0);  // the chain alone holds...
  CHECK(f.independent(false).exit_code == 0);
  expect_bad(f, 15);                      // ...the gateway never signed it
}

TEST_CASE("a rewritten chain (entry changed, every later hash recomputed)") {
  tamper_fixture f;
  REQUIRE(run({helper_binary("journal_forge"), "rewrite", f.db.string(), "4"}).exit_code == 0);
  CHECK(f.verify(false).exit_code == 0);
  expect_bad(f, 8);  // the first checkpoint after the change no longer verifies
}

TEST_CASE("an emptied journal fails against the signed head") {
  tamper_fixture f;
  REQUIRE(f.sql("DROP TRIGGER journal_no_delete; DELETE FROM journal;").exit_code == 0);
  expect_bad(f, 1);
}

TEST_CASE("a journal verified against another gateway's key fails") {
  tamper_fixture f;
  temp_dir other;
  init_data_dir(other / "d", "other");
  auto r = rsgate_cmd({"journal", "verify", "--db", f.db.string(), "--pubkey",
                       (other / "d/keys/journal-signing.pub").string()});
  CHECK(r.exit_code == 1);
}
