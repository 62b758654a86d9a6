// Crash safety: a child appends under load and reports every seq it was told is durable; it is
// killed with SIGKILL at a random moment, five times over the same journal. Afterwards the
// journal verifies (chain and signatures) and every reported seq is present.
#include <random>
#include <set>

#include "tests/integration/common.hpp"

using namespace rsgate;
using namespace rsgate::test;

TEST_CASE("SIGKILL at a random moment loses nothing that was reported durable") {
  temp_dir t;
  auto dir = t / "data";
  init_data_dir(dir);
  auto db = dir / "journal.db";
  std::mt19937 rng(std::random_device{}());
  std::uniform_int_distribution<int> delay_ms(150, 900);
  std::set<std::int64_t> reported;
  for (int round = 0; round < 5; ++round) {
    child c({helper_binary("journal_crash_child"), db.string(),
             (dir / "keys/journal-signing.key").string(), "8"},
            t / "child.err");
    auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(delay_ms(rng));
    std::size_t before = reported.size();
    while (std::chrono::steady_clock::now() < deadline) {
      auto line = c.read_line(std::chrono::milliseconds(50));
      if (line && !line->empty()) reported.insert(std::stoll(*line));
    }
    c.signal(SIGKILL);
    auto code = c.wait(std::chrono::seconds(10));
    REQUIRE(code.has_value());
    CHECK(*code == -SIGKILL);
    // Lines already in the pipe were reported durable too.
    while (auto line = c.read_line(std::chrono::milliseconds(100)))
      if (!line->empty()) reported.insert(std::stoll(*line));
    INFO("round " << round);
    CHECK(reported.size() > before);  // the child did work this round
  }
  auto r = rsgate_cmd({"journal", "verify", "--db", db.string(), "--pubkey",
                       (dir / "keys/journal-signing.pub").string()});
  INFO(r.out << r.err);
  REQUIRE(r.exit_code == 0);
  journal::reader rd({db});
  std::set<std::int64_t> present;
  journal::filter f;
  f.limit = journal::kMaxQueryLimit;
  for (;;) {
    auto p = rd.query(f);
    for (auto& e : p.entries) present.insert(e.seq);
    if (!p.next) break;
    f.after = p.next;
  }
  std::size_t missing = 0;
  for (auto s : reported) missing += present.count(s) ? 0 : 1;
  CHECK(missing == 0);
  CHECK(reported.size() > 100);
}
