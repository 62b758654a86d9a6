// Shared steps of the crash-safety and power-loss tests: run the journal crash child
// (tests/support/journal_crash_child.cpp) over one journal, kill it with SIGKILL at random
// moments, collect every seq it reported durable; then read back which seqs the journal holds.
#pragma once
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "tests/integration/common.hpp"

namespace rsgate::test {

// Runs `argv` `rounds` times, each for a random 150 to 900 ms, then SIGKILL; returns every seq
// the child printed (lines still in the pipe after the kill were reported durable too).
// Requires each round to report something new: a child that did no work proves nothing.
inline std::set<std::int64_t> append_and_kill(const std::vector<std::string>& argv,
                                              const std::filesystem::path& stderr_file, int rounds) {
  std::mt19937 rng(std::random_device{}());
  std::uniform_int_distribution<int> delay_ms(150, 900);
  std::set<std::int64_t> reported;
  for (int round = 0; round < rounds; ++round) {
    child c(argv, stderr_file);
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
    while (auto line = c.read_line(std::chrono::milliseconds(100)))
      if (!line->empty()) reported.insert(std::stoll(*line));
    INFO("round " << round);
    CHECK(reported.size() > before);
  }
  return reported;
}

// Every seq the journal at `db` holds, read with the library's reader.
inline std::set<std::int64_t> seqs_in(const std::filesystem::path& db) {
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
  return present;
}

// How many of `reported` are not in `present`.
inline std::size_t missing_from(const std::set<std::int64_t>& reported,
                                const std::set<std::int64_t>& present) {
  std::size_t missing = 0;
  for (auto s : reported) missing += present.count(s) ? 0 : 1;
  return missing;
}

}  // namespace rsgate::test
