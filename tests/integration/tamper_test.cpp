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

// Both verifiers, with or without the key, exit `code` (2: the file cannot be read).
void expect_exit(tamper_fixture& f, int code, bool with_key) {
  auto r = f.verify(with_key);
  INFO(r.out << r.err);
  CHECK(r.exit_code == code);
  auto p = f.independent(with_key);
  INFO("independent verifier: " << p.out << p.err);
  CHECK(p.exit_code == code);
}

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
                " machine, access_type, scope, outcome, secret_hmac, detail, prev_hash, hash, subject FROM b;"
                "INSERT INTO journal SELECT 5, ts, gateway, kind, actor, source, session_id, pmr,"
                " machine, access_type, scope, outcome, secret_hmac, detail, prev_hash, hash, subject FROM a;")
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

TEST_CASE("a changed, removed or added subject") {
  tamper_fixture f;
  // seq 15: an admin.user entry whose subject is bob (16: its closing checkpoint).
  REQUIRE(rsgate_cmd({"user", "add", "bob", "--role", "developer", "--password-stdin", "--data", f.dir.string()},
                     "a long enough password\n").exit_code == 0);
  std::filesystem::remove(f.db);
  std::filesystem::copy_file(f.dir / "journal.db", f.db);
  REQUIRE(f.sql("SELECT subject FROM journal WHERE seq = 15;").out == "bob\n");
  expect_exit(f, 0, true);
  auto original = f.db.string() + ".orig";
  std::filesystem::copy_file(f.db, original);
  for (auto [sql, seq] : {std::pair{"UPDATE journal SET subject = 'mallory' WHERE seq = 15;", 15},
                          std::pair{"UPDATE journal SET subject = '' WHERE seq = 15;", 15},
                          std::pair{"UPDATE journal SET subject = 'bob' WHERE seq = 4;", 4}}) {
    std::filesystem::copy_file(original, f.db, std::filesystem::copy_options::overwrite_existing);
    REQUIRE(f.sql(std::string("DROP TRIGGER journal_no_update; ") + sql).exit_code == 0);
    INFO(sql);
    expect_bad(f, seq);
    expect_bad(f, seq, false);
  }
}

TEST_CASE("a dropped journal_head is a failed check, not an I/O error") {
  tamper_fixture f;
  // The append-only triggers guard rows of `journal`; nothing stops a DROP TABLE.
  REQUIRE(f.sql("DROP TABLE journal_head;").exit_code == 0);
  expect_bad(f, 1);
  auto r = f.verify();
  CHECK(r.out.find("the signed head is missing") != std::string::npos);
  expect_exit(f, 0, false);  // without the key the head is not consulted
}

TEST_CASE("a dropped journal table or column is a failed check at seq 1") {
  for (std::string sql : {"DROP TABLE journal;", "ALTER TABLE journal DROP COLUMN scope;",
                          "DROP INDEX journal_by_pmr; DROP INDEX journal_by_pmr_access; ALTER TABLE journal DROP COLUMN pmr;"}) {
    tamper_fixture f;
    REQUIRE(f.sql(sql).exit_code == 0);
    INFO(sql);
    expect_bad(f, 1);
    expect_bad(f, 1, false);
  }
}

TEST_CASE("a file SQLite cannot read is an I/O error (exit 2)") {
  tamper_fixture f;
  auto size = std::filesystem::file_size(f.db);
  std::filesystem::resize_file(f.db, size / 2);  // pages of the table cut off
  expect_exit(f, 2, true);
  std::ofstream(f.db, std::ios::trunc) << "not a database\n";
  expect_exit(f, 2, true);
}

TEST_CASE("an edited gateway name in journal_meta stops serve, init and the admin commands") {
  temp_dir t;
  auto dir = t / "data";
  init_data_dir(dir, "gw-test", true);
  auto before = rsgate_cmd({"journal", "query", "--data", dir.string(), "--format", "json"}).out;
  for (std::string value : {"'gw' || char(27) || '[2J'", "''", "printf('%.300c', 'g')", "'gw 1'"}) {
    REQUIRE(run({"sqlite3", (dir / "journal.db").string(),
                 "UPDATE journal_meta SET value = " + value + " WHERE key = 'gateway';"}).exit_code == 0);
    INFO(value);
    const std::vector<std::vector<std::string>> commands = {
        {"serve", "--dev", "--data", dir.string(), "--http-listen", "127.0.0.1:0", "--tunnel-listen", "127.0.0.1:0"},
        {"serve", "--data", dir.string(), "--http-listen", "127.0.0.1:0", "--tunnel-listen", "127.0.0.1:0"},
        {"serve", "--data", dir.string(), "--name", "gw-test", "--http-listen", "127.0.0.1:0", "--tunnel-listen",
         "127.0.0.1:0"},  // a configured name does not make the edited one acceptable
        {"init", "--data", (dir).string()},
        {"user", "add", "zed", "--role", "developer", "--data", dir.string()},
    };
    for (auto args : commands) {
      args.insert(args.begin(), rsgate_binary());
      auto r = run(args, "", std::chrono::seconds(30));
      INFO(args[1] << ": " << r.err);
      CHECK(r.exit_code == 1);
      CHECK(r.err.find("invalid gateway name") != std::string::npos);
      CHECK(r.err.find('\x1b') == std::string::npos);  // shown escaped
      CHECK(line_count(r.err) == 1);
    }
    // Nothing was written under that name.
    CHECK(rsgate_cmd({"journal", "query", "--data", dir.string(), "--format", "json"}).out == before);
  }
  // Reading and verifying do not depend on journal_meta.
  auto v = rsgate_cmd({"journal", "verify", "--data", dir.string(), "--pubkey", (dir / "keys/journal-signing.pub").string()});
  CHECK(v.exit_code == 0);
}
