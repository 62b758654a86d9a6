// Bounds the journal growth that refusals of unauthenticated requests can cause (docs/
// security.md §5): anyone can send a wrong password or a made-up bearer token, and each
// refusal is journaled — but only the first `individual` per source and window get an entry
// of their own, and no more than `global_individual` in all; the rest are counted, and one
// summary entry per source and window records how many there were. So every refusal is in
// the journal, individually or counted; a flood from one source costs at most individual + 1
// entries per window, and from any number of sources at most global_individual plus one
// summary per source (sources beyond max_sources share one). A source is an IPv4 address or
// an IPv6 /64 (source_group), since one host commonly holds a whole /64.
//
// Pure (the caller passes the time); not thread-safe: the service guards it with its mutex.
#pragma once
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "core/clock.hpp"

namespace rsgate::gateway {

struct refusal_policy {
  std::uint32_t individual = 10;          // entries of their own per source and window
  micros window = 60'000'000;             // 1 minute
  std::size_t max_sources = 10'000;       // beyond: the others share one bucket, "*"
  std::uint32_t global_individual = 300;  // entries of their own per window, all sources
};

// The source a refusal is counted against: an IPv4 address as it is, an IPv6 address as its
// /64 ("2001:db8:1:2::/64"), an IPv4-mapped IPv6 address as the IPv4 address. Anything that
// is not an address comes back unchanged.
[[nodiscard]] std::string source_group(const std::string& address);

class refusal_throttle {
 public:
  using policy = refusal_policy;
  struct summary {
    std::string source;
    std::uint64_t suppressed = 0;
    micros window_start = 0;
  };

  explicit refusal_throttle(policy p = {}) : p_(p) {}
  // True when this refusal from `source` gets its own journal entry; false when it is only
  // counted (it appears in a summary).
  [[nodiscard]] bool admit(const std::string& source, micros now);
  // The windows that are over and suppressed something: one summary each. Forgets them.
  [[nodiscard]] std::vector<summary> take_summaries(micros now);

 private:
  struct bucket {
    micros window_start = 0;
    std::uint32_t admitted = 0;
    std::uint64_t suppressed = 0;
  };
  policy p_;
  std::map<std::string, bucket> buckets_;
  micros global_start_ = 0;
  std::uint32_t global_admitted_ = 0;
};

}  // namespace rsgate::gateway
