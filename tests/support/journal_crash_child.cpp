// Test helper for the crash-safety test: appends to a journal from several threads as fast as
// it can and prints each seq on stdout the moment the writer reports it durable. The parent
// kills it with SIGKILL at a random moment and then checks that every printed seq survived.
// Usage: journal_crash_child DB SIGNING_KEY_FILE THREADS
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <thread>
#include <vector>

#include "journal/journal.hpp"

int main(int argc, char** argv) {
  if (argc != 4) {
    std::fprintf(stderr, "usage: journal_crash_child DB KEY THREADS\n");
    return 2;
  }
  using namespace rsgate::journal;
  writer_options o;
  o.gateway = "crash-test";
  o.probe_every = 0;
  o.checkpoint_every_entries = 100;
  writer w(argv[1], signing_key::load(argv[2]), o);
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
