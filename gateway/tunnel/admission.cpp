// See admission.hpp.
#include "gateway/tunnel/admission.hpp"

#include <algorithm>
#include <utility>

namespace rsgate::tunnel {
namespace {
constexpr std::string_view kShared = "*";       // every source beyond kMaxTrackedSources
constexpr std::string_view kOtherReason = "other";
}  // namespace

void admission::roll(const std::string& key, source_state& s, micros now) {
  if (now < s.window_start + limits_.window) return;
  if (s.pending) {
    s.pending->source = key;
    due_.push_back(std::move(*s.pending));
    s.pending.reset();
  }
  s.window_start = now;
  s.hellos = 0;
  s.journaled = 0;
}

// Forgets sources that hold nothing: no slot, no pending summary, nothing counted in the
// current window (so forgetting them lifts no limit).
void admission::prune(micros now) {
  for (auto it = sources_.begin(); it != sources_.end();) {
    roll(it->first, it->second, now);
    const auto& s = it->second;
    if (s.preauth == 0 && !s.pending && s.hellos == 0 && s.journaled == 0)
      it = sources_.erase(it);
    else
      ++it;
  }
}

std::pair<const std::string, admission::source_state>& admission::state_for(const std::string& source, micros now) {
  auto it = sources_.find(source);
  if (it == sources_.end() && sources_.size() >= limits_.max_sources) {
    prune(now);
    if (sources_.size() >= limits_.max_sources) it = sources_.find(std::string(kShared));
  }
  if (it == sources_.end()) {
    const std::string key = sources_.size() >= limits_.max_sources ? std::string(kShared) : source;
    source_state fresh;
    fresh.window_start = now;
    it = sources_.emplace(key, std::move(fresh)).first;
  }
  roll(it->first, it->second, now);
  return *it;
}

admission::ticket admission::on_accept(const std::string& source, micros now) {
  std::lock_guard lock(mu_);
  auto& [key, s] = state_for(source, now);
  if (preauth_ >= limits_.max_preauth) return {verdict::gateway_full, key};
  if (s.preauth >= limits_.max_preauth_per_source) return {verdict::source_full, key};
  ++s.preauth;
  ++preauth_;
  return {verdict::admit, key};
}

bool admission::on_hello(const std::string& source, micros now) {
  std::lock_guard lock(mu_);
  auto& s = state_for(source, now).second;
  return ++s.hellos <= limits_.max_hellos;
}

bool admission::on_authenticated(const std::string& source) {
  std::lock_guard lock(mu_);
  if (authenticated_ >= limits_.max_authenticated) return false;
  if (auto it = sources_.find(source); it != sources_.end() && it->second.preauth > 0) --it->second.preauth;
  if (preauth_ > 0) --preauth_;
  ++authenticated_;
  return true;
}

void admission::on_close(const std::string& source, bool authenticated) {
  std::lock_guard lock(mu_);
  if (authenticated) {
    if (authenticated_ > 0) --authenticated_;
    return;
  }
  if (auto it = sources_.find(source); it != sources_.end() && it->second.preauth > 0) --it->second.preauth;
  if (preauth_ > 0) --preauth_;
}

bool admission::journal_individually(const std::string& source, micros now) {
  std::lock_guard lock(mu_);
  auto& s = state_for(source, now).second;
  if (s.journaled >= limits_.journal_burst) return false;
  ++s.journaled;
  return true;
}

void admission::suppressed(const std::string& source, const std::string& reason, const std::string& machine,
                           micros now) {
  std::lock_guard lock(mu_);
  auto& [key, s] = state_for(source, now);
  if (!s.pending) {
    s.pending.emplace();
    s.pending->source = key;
    s.pending->since = s.window_start;
  }
  auto& p = *s.pending;
  ++p.connections;
  // Distinct reasons are few by construction (the listener's own categories); the cap keeps
  // a summary small whatever happens.
  if (p.reasons.count(reason) || p.reasons.size() + 1 < kMaxSummaryReasons)
    ++p.reasons[reason];
  else
    ++p.reasons[std::string(kOtherReason)];
  if (!machine.empty() && p.machines.size() < kMaxSummaryMachines &&
      std::find(p.machines.begin(), p.machines.end(), machine) == p.machines.end())
    p.machines.push_back(machine);
}

std::vector<source_summary> admission::take_due(micros now, bool all) {
  std::lock_guard lock(mu_);
  prune(now);  // rolls every window, moving the summaries of ended ones to due_
  if (all) {
    for (auto& [key, s] : sources_) {
      if (!s.pending) continue;
      due_.push_back(std::move(*s.pending));
      s.pending.reset();
    }
  }
  return std::exchange(due_, {});
}

std::size_t admission::preauth() const {
  std::lock_guard lock(mu_);
  return preauth_;
}

std::size_t admission::authenticated() const {
  std::lock_guard lock(mu_);
  return authenticated_;
}

std::size_t admission::tracked_sources() const {
  std::lock_guard lock(mu_);
  return sources_.size();
}

}  // namespace rsgate::tunnel
