// See refusal_throttle.hpp.
#include "gateway/refusal_throttle.hpp"

namespace rsgate::gateway {

bool refusal_throttle::admit(const std::string& source, micros now) {
  auto it = buckets_.find(source);
  if (it == buckets_.end()) {
    auto key = buckets_.size() >= p_.max_sources ? std::string("*") : source;
    it = buckets_.try_emplace(key, bucket{now, 0, 0}).first;
  }
  auto& b = it->second;
  if (now - b.window_start >= p_.window && b.suppressed == 0) b = bucket{now, 0, 0};
  if (now - b.window_start < p_.window && b.admitted < p_.individual) {
    ++b.admitted;
    return true;
  }
  ++b.suppressed;  // its window's summary (taken once the window is over) counts it
  return false;
}

std::vector<refusal_throttle::summary> refusal_throttle::take_summaries(micros now) {
  std::vector<summary> out;
  for (auto it = buckets_.begin(); it != buckets_.end();) {
    auto& b = it->second;
    if (now - b.window_start < p_.window) {
      ++it;
      continue;
    }
    if (b.suppressed > 0) out.push_back({it->first, b.suppressed, b.window_start});
    it = buckets_.erase(it);
  }
  return out;
}

}  // namespace rsgate::gateway
