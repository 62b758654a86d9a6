// Durability, not only crash atomicity. SIGKILL keeps the page cache, so crash_test.cpp would
// pass with synchronous=OFF. Here the crash child runs under the SQLite VFS shim in power-cut
// mode (tests/support/faulty_vfs.cpp, RSGATE_POWER_CUT): the journal's database and WAL keep
// every write in the child's memory until SQLite syncs that file, so the SIGKILL loses exactly
// what a power cut would. Every seq the child was told is durable must be there afterwards,
// and the journal must verify. The same run with the writer's connection switched to
// synchronous=OFF must lose acknowledged entries, or the test proves nothing. Last, rsgate
// refuses to write a journal or state database that cannot be in WAL mode (exit 1).
#include <cstdlib>
#include <fstream>
#include <sstream>

#include "tests/integration/crash_child.hpp"

using namespace rsgate;
using namespace rsgate::test;

namespace {

// `argv` started through env(1), which execs it in place (same PID, so SIGKILL reaches it),
// with the VFS shim preloaded and `vars` set. Under AddressSanitizer the shim comes before
// the sanitizer's runtime: allow that.
std::vector<std::string> with_shim(const std::vector<std::string>& vars,
                                   const std::vector<std::string>& argv) {
  std::string asan = std::getenv("ASAN_OPTIONS") ? std::getenv("ASAN_OPTIONS") : "";
  std::vector<std::string> v = {"/usr/bin/env", "LD_PRELOAD=" + helper_binary("faulty_vfs.so"),
                                "ASAN_OPTIONS=" + asan + (asan.empty() ? "" : ":") +
                                    "verify_asan_link_order=0"};
  v.insert(v.end(), vars.begin(), vars.end());
  v.insert(v.end(), argv.begin(), argv.end());
  return v;
}

std::string slurp(const std::filesystem::path& p) {
  std::ifstream in(p);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

std::size_t occurrences(const std::string& text, const std::string& needle) {
  std::size_t n = 0;
  for (auto at = text.find(needle); at != std::string::npos; at = text.find(needle, at + 1)) ++n;
  return n;
}

struct journal_dir {
  temp_dir t;
  std::filesystem::path dir = t / "data";
  std::filesystem::path db = dir / "journal.db";
  journal_dir() { init_data_dir(dir); }
  std::vector<std::string> child(const std::string& extra = "") const {
    std::vector<std::string> v = {helper_binary("journal_crash_child"), db.string(),
                                  (dir / "keys/journal-signing.key").string(), "8"};
    if (!extra.empty()) v.push_back(extra);
    return v;
  }
  int verify() const {
    auto r = rsgate_cmd({"journal", "verify", "--db", db.string(), "--pubkey",
                         (dir / "keys/journal-signing.pub").string()});
    INFO(r.out << r.err);
    return r.exit_code;
  }
};

const std::string kPowerCut = "RSGATE_POWER_CUT=journal.db";
const std::string kShimLoaded = "faulty_vfs: power-cut mode";

}  // namespace

TEST_CASE("a power cut at a random moment loses nothing that was reported durable") {
  journal_dir j;
  auto err = j.t / "child.err";
  auto reported = append_and_kill(with_shim({kPowerCut}, j.child()), err, 6);
  CHECK(occurrences(slurp(err), kShimLoaded) == 6);  // every round ran with the power cut
  // Reopened without the shim: only what SQLite synced is on disk.
  CHECK(j.verify() == 0);
  CHECK(missing_from(reported, seqs_in(j.db)) == 0);
  CHECK(reported.size() > 100);
}

TEST_CASE("the power-cut test has teeth: with synchronous=OFF acknowledged entries are lost") {
  SECTION("a SIGKILL alone keeps them: the page cache survives the process") {
    journal_dir j;
    auto err = j.t / "child.err";
    auto reported = append_and_kill(j.child("--sabotage-synchronous=OFF"), err, 1);
    REQUIRE(slurp(err).find("synchronous=0") != std::string::npos);
    CHECK(j.verify() == 0);
    CHECK(missing_from(reported, seqs_in(j.db)) == 0);
  }
  SECTION("a power cut loses every one: nothing was synced after the writer's check") {
    journal_dir j;
    auto err = j.t / "child.err";
    auto reported = append_and_kill(with_shim({kPowerCut}, j.child("--sabotage-synchronous=OFF")), err, 1);
    auto text = slurp(err);
    REQUIRE(text.find(kShimLoaded) != std::string::npos);
    REQUIRE(text.find("synchronous=0") != std::string::npos);
    REQUIRE(!reported.empty());
    // The loss is silent: the journal still verifies, it just ends earlier than promised.
    CHECK(j.verify() == 0);
    CHECK(missing_from(reported, seqs_in(j.db)) == reported.size());
  }
}

TEST_CASE("a journal or state database that cannot use WAL is refused before anything is written") {
  temp_dir faults;
  auto shim = [&](std::vector<std::string> argv) {
    argv.insert(argv.begin(), rsgate_binary());
    return run(with_shim({"RSGATE_FAULT_DIR=" + faults.path().string()}, argv), "",
               std::chrono::seconds(60));
  };
  std::ofstream(faults / "journal.db.nowal") << "on\n";

  // A new data directory on a file system without shared memory: the journal stays empty.
  temp_dir t;
  auto fresh = t / "fresh";
  auto r = shim({"init", "--data", fresh.string(), "--no-certs"});
  INFO(r.err);
  CHECK(r.exit_code == 1);
  CHECK(r.err.find("journal.db: refusing to write: journal_mode is 'delete', not 'wal'") !=
        std::string::npos);
  auto tables = run({"sqlite3", (fresh / "journal.db").string(), "SELECT count(*) FROM sqlite_schema"});
  CHECK(tables.out == "0\n");

  // A prepared directory whose journal an operator switched to rollback mode with sqlite3:
  // where WAL cannot work, `serve` refuses to start.
  auto dir = t / "data";
  init_data_dir(dir);
  auto to_delete_mode = [](const std::filesystem::path& db) {
    auto c = run({"sqlite3", db.string(), "PRAGMA journal_mode=DELETE"});
    REQUIRE(c.out == "delete\n");
  };
  to_delete_mode(dir / "journal.db");
  r = shim({"serve", "--data", dir.string(), "--http-listen", "127.0.0.1:0", "--tunnel-listen",
            "127.0.0.1:0"});
  INFO(r.err);
  CHECK(r.exit_code == 1);
  CHECK(r.err.find("rsgate serve: " + (dir / "journal.db").string() + ": refusing to write") !=
        std::string::npos);

  // The same for state.db, through an administration command.
  std::filesystem::remove(faults / "journal.db.nowal");
  std::ofstream(faults / "state.db.nowal") << "on\n";
  to_delete_mode(dir / "state.db");
  r = shim({"user", "list", "--data", dir.string()});
  INFO(r.err);
  CHECK(r.exit_code == 1);
  CHECK(r.err.find((dir / "state.db").string() + ": refusing to write: journal_mode is 'delete'") !=
        std::string::npos);

  // Where WAL works, the next open puts both files back in WAL mode and the command runs.
  std::filesystem::remove(faults / "state.db.nowal");
  r = shim({"user", "list", "--data", dir.string()});
  CHECK(r.exit_code == 0);
  for (auto name : {"journal.db", "state.db"})
    CHECK(run({"sqlite3", (dir / name).string(), "PRAGMA journal_mode"}).out == "wal\n");
}
