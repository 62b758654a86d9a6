// See refusal_throttle.hpp.
#include "gateway/refusal_throttle.hpp"

#include <arpa/inet.h>

#include <cstring>

namespace rsgate::gateway {

std::string source_group(const std::string& address) {
  in6_addr a6{};
  if (::inet_pton(AF_INET6, address.c_str(), &a6) != 1) return address;  // IPv4, or not an address
  static const std::uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
  char text[INET6_ADDRSTRLEN] = {};
  if (std::memcmp(a6.s6_addr, mapped, sizeof mapped) == 0) {
    in_addr a4{};
    std::memcpy(&a4, a6.s6_addr + 12, 4);
    return ::inet_ntop(AF_INET, &a4, text, sizeof text) ? std::string(text) : address;
  }
  std::memset(a6.s6_addr + 8, 0, 8);
  if (!::inet_ntop(AF_INET6, &a6, text, sizeof text)) return address;
  return std::string(text) + "/64";
}

bool refusal_throttle::admit(const std::string& source, micros now) {
  auto it = buckets_.find(source);
  if (it == buckets_.end()) {
    auto key = buckets_.size() >= p_.max_sources ? std::string("*") : source;
    it = buckets_.try_emplace(key, bucket{now, 0, 0}).first;
  }
  auto& b = it->second;
  if (now - b.window_start >= p_.window && b.suppressed == 0) b = bucket{now, 0, 0};
  if (now - global_start_ >= p_.window) {
    global_start_ = now;
    global_admitted_ = 0;
  }
  if (now - b.window_start < p_.window && b.admitted < p_.individual && global_admitted_ < p_.global_individual) {
    ++b.admitted;
    ++global_admitted_;
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
