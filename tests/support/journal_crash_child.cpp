// Test helper for the crash-safety and power-loss tests: appends to a journal from several
// threads as fast as it can and prints each seq on stdout the moment the writer reports it
// durable. The parent kills it with SIGKILL at a random moment and then checks that every
// printed seq survived (tests/integration/crash_test.cpp, durability_test.cpp).
//
// Usage: journal_crash_child DB SIGNING_KEY_FILE THREADS [--sabotage-synchronous=OFF|NORMAL]
// The sabotage flag exists only to prove that the power-loss test can fail: once the writer
// has opened the journal and checked that it is WAL with synchronous=FULL, the writer's own
// connection is switched to the given level behind its back (the handle is caught by an SQLite
// auto-extension, which runs for every connection the process opens). Nothing else can do
// this: rsgate itself refuses to write a journal that is not synchronous=FULL.
#include <sqlite3.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "journal/journal.hpp"

namespace {

std::atomic<sqlite3*> g_last_opened{nullptr};

int remember_connection(sqlite3* db, const char**, const sqlite3_api_routines*) {
  g_last_opened = db;
  return SQLITE_OK;
}

// Runs on the main thread while the writer thread is idle (nothing appended yet; the first
// append hands over through the writer's mutex, which orders this change before its use).
void sabotage_synchronous(std::string_view level) {
  sqlite3* db = g_last_opened.load();
  std::string sql = "PRAGMA synchronous = " + std::string(level);
  if (!db || sqlite3_exec(db, sql.c_str(), nullptr, nullptr, nullptr) != SQLITE_OK) {
    std::fprintf(stderr, "cannot sabotage the writer's connection\n");
    std::_Exit(1);
  }
  sqlite3_stmt* s = nullptr;
  sqlite3_prepare_v2(db, "PRAGMA synchronous", -1, &s, nullptr);
  int now = s && sqlite3_step(s) == SQLITE_ROW ? sqlite3_column_int(s, 0) : -1;
  sqlite3_finalize(s);
  std::fprintf(stderr, "sabotage: the writer's connection now runs with synchronous=%d\n", now);
}

}  // namespace

int main(int argc, char** argv) {
  constexpr std::string_view kSabotage = "--sabotage-synchronous=";
  std::string_view sabotage;
  if (argc == 5 && std::string_view(argv[4]).starts_with(kSabotage))
    sabotage = std::string_view(argv[4]).substr(kSabotage.size());
  if ((argc != 4 && argc != 5) || (argc == 5 && sabotage != "OFF" && sabotage != "NORMAL")) {
    std::fprintf(stderr, "usage: journal_crash_child DB KEY THREADS [--sabotage-synchronous=OFF|NORMAL]\n");
    return 2;
  }
  // The callback's real type is SQLite's documented extension entry point.
  if (!sabotage.empty()) sqlite3_auto_extension(reinterpret_cast<void (*)()>(remember_connection));
  using namespace rsgate::journal;
  writer_options o;
  o.gateway = "crash-test";
  o.probe_every = 0;
  o.checkpoint_every_entries = 100;
  writer w(argv[1], signing_key::load(argv[2]), o);
  if (!sabotage.empty()) sabotage_synchronous(sabotage);
  int threads = std::atoi(argv[3]);
  std::vector<std::thread> pool;
  for (int t = 0; t < threads; ++t) {
    pool.emplace_back([&w, t] {
      for (long i = 0;; ++i) {
        entry e;
        e.kind = "channel.open";
        e.actor = "producer-" + std::to_string(t);
        e.pmr = "12345,677,000";
        e.detail = "{\"i\":" + std::to_string(i) + "}";
        auto r = w.append_sync(std::move(e));
        if (!r.ok()) {
          std::fprintf(stderr, "append failed: %s\n", r.message.c_str());
          std::_Exit(1);
        }
        // One write(2) per line: lines from different threads never interleave.
        std::string line = std::to_string(r.seq) + "\n";
        if (::write(STDOUT_FILENO, line.data(), line.size()) < 0) std::_Exit(1);
      }
    });
  }
  for (auto& t : pool) t.join();
}
