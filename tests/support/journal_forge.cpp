// Test helper playing an attacker who can write the journal database and knows the format
// (docs/journal.md) but does not hold the gateway's signing key.
//   journal_forge append DB          append an entry with a correct chain hash
//   journal_forge rewrite DB SEQ     change entry SEQ's actor and recompute the whole chain
//                                    after it, checkpoints' through_hash and the head's hash
// The tamper tests check that `rsgate journal verify --pubkey` catches both.
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "core/sqlite.hpp"
#include "journal/journal.hpp"
#include "tests/support/journal_raw.hpp"

using namespace rsgate;
using namespace rsgate::journal;

namespace {


std::vector<entry> all(sqlite::db& d) {
  auto s = d.prepare(std::string("SELECT ") + std::string(kEntryColumns) + " FROM journal ORDER BY seq");
  std::vector<entry> out;
  while (s.step()) out.push_back(entry_from_row(s));
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 3) {
    std::fprintf(stderr, "usage: journal_forge append|rewrite DB [SEQ]\n");
    return 2;
  }
  std::string mode = argv[1];
  sqlite::db d(argv[2], sqlite::open_mode::read_write);
  auto es = all(d);
  if (es.empty()) return 2;
  if (mode == "append") {
    entry e = es.back();
    e.seq += 1;
    e.ts += 1000;
    e.kind = "session.attach";
    e.actor = "forger";
    e.pmr = "TS000000001";
    e.detail = "{}";
    e.prev_hash = es.back().hash;
    e.hash = compute_hash(e);
    test::insert_raw(d, e);
    return 0;
  }
  if (mode == "rewrite" && argc == 4) {
    std::int64_t target = std::atoll(argv[3]);
    d.exec("DROP TRIGGER journal_no_update; DROP TRIGGER journal_no_delete; DELETE FROM journal");
    std::string prev(kGenesisHash);
    for (auto& e : es) {
      if (e.seq == target) e.actor = "someone-else";
      if (e.kind == "journal.checkpoint") {
        // Keep the checkpoint pointing at the rewritten chain; the signature cannot follow.
        auto pos = e.detail.find(e.prev_hash);
        if (pos != std::string::npos) e.detail.replace(pos, prev.size(), prev);
      }
      e.prev_hash = prev;
      e.hash = compute_hash(e);
      prev = e.hash;
      test::insert_raw(d, e);
    }
    auto s = d.prepare("UPDATE journal_head SET hash = ?1");
    s.bind(1, prev);
    s.step();
    return 0;
  }
  std::fprintf(stderr, "journal_forge: bad arguments\n");
  return 2;
}
