// See rate_limit.hpp.
#include "auth/rate_limit.hpp"

#include <algorithm>

namespace rsgate::auth {

void failure_limiter::prune(entry& e, micros now) const {
  while (!e.failures.empty() && e.failures.front() <= now - policy_.window) e.failures.pop_front();
}

bool failure_limiter::allowed(const std::string& key, micros now) {
  auto it = state_.find(key);
  if (it == state_.end()) return true;
  if (it->second.locked_until > now) return false;
  prune(it->second, now);
  if (it->second.failures.empty() && it->second.locked_until <= now) state_.erase(it);
  return true;
}

bool failure_limiter::record_failure(const std::string& key, micros now) {
  if (!state_.count(key)) make_room(now);
  auto& e = state_[key];
  prune(e, now);
  e.failures.push_back(now);
  while (e.failures.size() > static_cast<size_t>(policy_.max_failures)) e.failures.pop_front();
  if (static_cast<int>(e.failures.size()) >= policy_.max_failures && e.locked_until <= now) {
    e.locked_until = now + policy_.lockout;
    e.failures.clear();
    return true;
  }
  return false;
}

micros failure_limiter::locked_until(const std::string& key, micros now) const {
  auto it = state_.find(key);
  if (it == state_.end() || it->second.locked_until <= now) return 0;
  return it->second.locked_until;
}

void failure_limiter::make_room(micros now) {
  if (state_.size() < policy_.max_keys) return;
  // Drop whatever is harmless first (expired), else the entry that would expire soonest.
  auto victim = state_.end();
  micros best = 0;
  for (auto it = state_.begin(); it != state_.end(); ++it) {
    micros expiry = std::max(it->second.locked_until,
                             it->second.failures.empty() ? 0 : it->second.failures.back() + policy_.window);
    if (expiry <= now) {
      victim = it;
      break;
    }
    if (victim == state_.end() || expiry < best) {
      victim = it;
      best = expiry;
    }
  }
  if (victim != state_.end()) state_.erase(victim);
}

}  // namespace rsgate::auth
