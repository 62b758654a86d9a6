// Fills a gateway's journal for the HTTP benchmark (tests/bench/http_bench.py): N entries in
// sessions of ten (tunnel, key, attach with a PMR, grant, channels, end), each session with its
// own PMR TS + 9 digits, written through the real writer (group commits, hash chain, signed
// checkpoints) with the data directory's own key, so the gateway serves and verifies them as
// its own. Usage: journal_fill DATA_DIR N GATEWAY_NAME
#include <fmt/format.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <future>
#include <string>

#include "journal/journal.hpp"

using namespace rsgate;

int main(int argc, char** argv) {
  if (argc != 4) {
    std::fprintf(stderr, "usage: journal_fill DATA_DIR N GATEWAY_NAME\n");
    return 2;
  }
  const std::string dir = argv[1];
  const long n = std::atol(argv[2]);
  journal::writer_options o;
  o.gateway = argv[3];
  journal::writer w(dir + "/journal.db", journal::signing_key::load(dir + "/keys/journal-signing.key"), o);
  static const char* kinds[] = {"tunnel.auth",  "session.key_issued", "session.attach", "session.grant", "channel.open",
                                "channel.close", "channel.open",      "channel.close",  "session.revoke", "session.end"};
  std::atomic<long> failed{0};
  std::promise<void> last;
  const auto t0 = std::chrono::steady_clock::now();
  for (long i = 0; i < n; ++i) {
    const long s = i / 10;
    journal::entry e;
    e.kind = kinds[i % 10];
    e.actor = i % 10 < 2 ? "9009-42A*" + fmt::format("{:07}", s % 10'000'000) : "rep" + std::to_string(s % 50);
    e.source = "127.0.0.1:" + std::to_string(40000 + i % 20000);
    e.session_id = fmt::format("S-2026-12-06-{:08}", s);
    e.machine = "9009-42A*" + fmt::format("{:07}", s % 10'000'000);
    if (i % 10 >= 2) e.pmr = fmt::format("TS{:09}", s);
    if (i % 10 >= 4 && i % 10 <= 7) {
      e.scope = "hmc";
      e.access_type = "ssh";
    }
    // Bounded in flight: every 4096th waits for its own completion.
    if (i % 4096 == 4095 || i == n - 1) {
      auto r = w.append_sync(std::move(e));
      if (!r.ok()) ++failed;
    } else {
      w.append(std::move(e), [&failed](const journal::append_result& r) {
        if (!r.ok()) ++failed;
      });
    }
  }
  w.close();
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::printf("journal_fill: %ld entries in %.1f s (%.0f/s), %ld failed\n", n, s, n / s, failed.load());
  return failed ? 1 : 0;
}
