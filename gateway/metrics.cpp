// See metrics.hpp.
#include "gateway/metrics.hpp"

#include <fmt/format.h>

#include "journal/writer.hpp"

namespace rsgate::gateway {

void metrics::count_status(int status) {
  if (status < 300) ++http_requests_2xx;
  else if (status < 400) ++http_requests_3xx;
  else if (status < 500) ++http_requests_4xx;
  else ++http_requests_5xx;
}

std::string metrics::render(const journal::writer_stats& js, bool journal_ready) const {
  std::string o;
  auto add = [&o](std::string_view name, std::string_view type, std::string_view help,
                  std::string_view samples) {
    o += fmt::format("# HELP {} {}\n# TYPE {} {}\n{}", name, help, name, type, samples);
  };
  add("rsgate_build_info", "gauge", "Build information.", "rsgate_build_info{version=\"0.1.0\"} 1\n");
  add("rsgate_start_time_seconds", "gauge", "Start time of the gateway, Unix seconds.",
      fmt::format("rsgate_start_time_seconds {}\n", start_time_us / 1'000'000));
  add("rsgate_http_requests_total", "counter", "HTTP requests answered, by status class.",
      fmt::format("rsgate_http_requests_total{{code=\"2xx\"}} {}\n"
                  "rsgate_http_requests_total{{code=\"3xx\"}} {}\n"
                  "rsgate_http_requests_total{{code=\"4xx\"}} {}\n"
                  "rsgate_http_requests_total{{code=\"5xx\"}} {}\n",
                  http_requests_2xx.load(), http_requests_3xx.load(), http_requests_4xx.load(),
                  http_requests_5xx.load()));
  add("rsgate_http_connections_total", "counter", "HTTPS connections accepted.",
      fmt::format("rsgate_http_connections_total {}\n", http_connections_total.load()));
  add("rsgate_http_connections_active", "gauge", "HTTPS connections open now.",
      fmt::format("rsgate_http_connections_active {}\n", http_connections_active.load()));
  add("rsgate_http_connections_refused_total", "counter",
      "Connections closed at once because the connection limit was reached.",
      fmt::format("rsgate_http_connections_refused_total {}\n", http_connections_refused.load()));
  add("rsgate_tls_handshake_failures_total", "counter", "TLS handshakes that failed or timed out.",
      fmt::format("rsgate_tls_handshake_failures_total {}\n", tls_handshake_failures.load()));
  add("rsgate_tunnels_active", "gauge", "Agent tunnels connected now.",
      fmt::format("rsgate_tunnels_active {}\n", tunnels_active.load()));
  add("rsgate_tunnel_machines", "gauge",
      "Machines the tunnel listener keeps a slot for now: a live tunnel, or a newcomer being decided.",
      fmt::format("rsgate_tunnel_machines {}\n", tunnel_machines.load()));
  add("rsgate_journal_ready", "gauge", "1 while the journal can write, else 0.",
      fmt::format("rsgate_journal_ready {}\n", journal_ready ? 1 : 0));
  add("rsgate_journal_appends_total", "counter", "Entries durably appended since start.",
      fmt::format("rsgate_journal_appends_total {}\n", js.appended));
  add("rsgate_journal_append_failures_total", "counter",
      "Appends refused because the journal could not write or was full.",
      fmt::format("rsgate_journal_append_failures_total {}\n", js.failed));
  add("rsgate_journal_batches_total", "counter", "Group-commit transactions.",
      fmt::format("rsgate_journal_batches_total {}\n", js.batches));
  add("rsgate_journal_checkpoints_total", "counter", "Signed checkpoints written since start.",
      fmt::format("rsgate_journal_checkpoints_total {}\n", js.checkpoints));
  add("rsgate_journal_last_seq", "gauge", "Seq of the newest durable entry.",
      fmt::format("rsgate_journal_last_seq {}\n", js.last_seq));
  add("rsgate_journal_queue_length", "gauge", "Appends waiting for the writer.",
      fmt::format("rsgate_journal_queue_length {}\n", js.queued));
  return o;
}

}  // namespace rsgate::gateway
