// Process-wide counters exported at GET /metrics in the Prometheus text format (version
// 0.0.4). Lock-free atomics; any thread may bump them.
#pragma once
#include <atomic>
#include <cstdint>
#include <string>

namespace rsgate::journal {
struct writer_stats;
}

namespace rsgate::gateway {

struct metrics {
  std::atomic<std::uint64_t> http_requests_2xx{0}, http_requests_3xx{0}, http_requests_4xx{0},
      http_requests_5xx{0};
  std::atomic<std::uint64_t> http_connections_total{0};
  std::atomic<std::int64_t> http_connections_active{0};
  std::atomic<std::uint64_t> http_connections_refused{0};  // over the connection limit
  std::atomic<std::uint64_t> tls_handshake_failures{0};
  std::atomic<std::int64_t> tunnels_active{0};
  std::atomic<std::int64_t> tunnel_machines{0};  // machines with a slot in the tunnel listener
  std::int64_t start_time_us = 0;

  void count_status(int status);
  // The exposition text; journal figures are read at scrape time.
  [[nodiscard]] std::string render(const journal::writer_stats& js, bool journal_ready) const;
};

}  // namespace rsgate::gateway
