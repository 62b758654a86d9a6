// Crash safety: a child appends under load and reports every seq it was told is durable; it is
// killed with SIGKILL at a random moment, five times over the same journal. Afterwards the
// journal verifies (chain and signatures) and every reported seq is present. SIGKILL keeps the
// page cache, so this shows atomicity, not durability: durability_test.cpp cuts the power.
#include "tests/integration/crash_child.hpp"

using namespace rsgate;
using namespace rsgate::test;

TEST_CASE("SIGKILL at a random moment loses nothing that was reported durable") {
  temp_dir t;
  auto dir = t / "data";
  init_data_dir(dir);
  auto db = dir / "journal.db";
  auto reported = append_and_kill({helper_binary("journal_crash_child"), db.string(),
                                   (dir / "keys/journal-signing.key").string(), "8"},
                                  t / "child.err", 5);
  auto r = rsgate_cmd({"journal", "verify", "--db", db.string(), "--pubkey",
                       (dir / "keys/journal-signing.pub").string()});
  INFO(r.out << r.err);
  REQUIRE(r.exit_code == 0);
  CHECK(missing_from(reported, seqs_in(db)) == 0);
  CHECK(reported.size() > 100);
}
