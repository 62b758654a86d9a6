// What the tunnel listener lets in before a tunnel has authenticated, and how much of that the
// journal records (docs/protocol.md §1.1, docs/security.md §5). Counts connections per source
// (an IPv4 address or an IPv6 /64) and in all: pre-authentication slots apart from
// authenticated tunnels, so slow or abandoned handshakes cannot keep real agents out; HELLOs
// per source and window; and a journal budget: the first few unauthenticated connections of a
// source in a window are journaled one by one, the rest of that window become one summary.
//
// No I/O and no clock of its own: time comes from the caller, so tests drive it. Memory is
// bounded (kMaxTrackedSources; beyond, new sources share one entry, "*").
// Thread-safe: one mutex inside; tunnels on every strand call it.
#pragma once
#include <cstdint>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "core/clock.hpp"
#include "protocol/wire.hpp"

namespace rsgate::tunnel {

struct admission_limits {
  std::size_t max_authenticated = kMaxTunnels;
  std::size_t max_preauth = kMaxPreAuthTunnels;
  std::size_t max_preauth_per_source = kMaxPreAuthPerSource;
  int max_hellos = kMaxHellosPerSource;
  int journal_burst = kJournalBurstPerSource;
  micros window = kSourceWindowSeconds * 1'000'000LL;
  std::size_t max_sources = kMaxTrackedSources;
};

// The connections of one source in one window that the journal did not record one by one.
struct source_summary {
  std::string source;
  micros since = 0;  // the window's start
  std::uint64_t connections = 0;
  std::map<std::string, std::uint64_t> reasons;  // at most kMaxSummaryReasons, then "other"
  std::vector<std::string> machines;             // the names claimed, at most kMaxSummaryMachines
};

class admission {
 public:
  explicit admission(admission_limits l = {}) : limits_(l) {}

  enum class verdict { admit, source_full, gateway_full };
  struct ticket {
    verdict v = verdict::admit;
    std::string source;  // the key to pass to every later call for this connection
  };
  // A new connection from `source` (the key of its address, see source_key in the server).
  // Admitted: it holds a pre-authentication slot until on_authenticated or on_close.
  [[nodiscard]] ticket on_accept(const std::string& source, micros now);
  // False when the source has sent its HELLOs for this window already.
  [[nodiscard]] bool on_hello(const std::string& source, micros now);
  // The connection authenticated: its slot moves to the authenticated count. False (and the
  // slot stays pre-authentication) when the authenticated tunnels are at their limit.
  [[nodiscard]] bool on_authenticated(const std::string& source);
  // An admitted connection ended.
  void on_close(const std::string& source, bool authenticated);

  // Asked once per unauthenticated connection, before its first entry: may it be journaled
  // one by one? Takes one of the window's burst.
  [[nodiscard]] bool journal_individually(const std::string& source, micros now);
  // A connection that was not journaled one by one ended: counted into its window's summary.
  void suppressed(const std::string& source, const std::string& reason, const std::string& machine, micros now);
  // Summaries of windows that have ended (to be journaled now); with `all`, of every window.
  [[nodiscard]] std::vector<source_summary> take_due(micros now, bool all = false);

  [[nodiscard]] std::size_t preauth() const;
  [[nodiscard]] std::size_t authenticated() const;
  [[nodiscard]] std::size_t tracked_sources() const;

 private:
  struct source_state {
    std::size_t preauth = 0;
    micros window_start = 0;
    int hellos = 0;
    int journaled = 0;
    std::optional<source_summary> pending;
  };
  // The state of `source` (or of the shared "*" when too many are tracked), its window rolled
  // forward to `now`. Called with mu_ held.
  std::pair<const std::string, source_state>& state_for(const std::string& source, micros now);
  void roll(const std::string& key, source_state& s, micros now);
  void prune(micros now);

  admission_limits limits_;
  mutable std::mutex mu_;
  std::unordered_map<std::string, source_state> sources_;
  std::vector<source_summary> due_;  // windows ended, summaries not yet taken
  std::size_t preauth_ = 0;
  std::size_t authenticated_ = 0;
};

}  // namespace rsgate::tunnel
