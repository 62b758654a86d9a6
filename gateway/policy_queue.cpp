// See policy_queue.hpp.
#include "gateway/policy_queue.hpp"

#include "core/log.hpp"

namespace rsgate::gateway {

struct policy_queue::ticket::state {
  state(policy_queue* queue, std::string k) : q(queue), key(std::move(k)) {}
  state(const state&) = delete;
  state& operator=(const state&) = delete;
  ~state() { q->finished(key, std::move(settled)); }  // the last copy of the step's ticket is gone
  policy_queue* q;
  std::string key;
  std::mutex mu;
  std::vector<std::function<void()>> settled;  // guarded by mu
};

void policy_queue::ticket::when_settled(std::function<void()> f) {
  if (!s_) return f();
  std::lock_guard lock(s_->mu);
  s_->settled.push_back(std::move(f));
}

namespace {

void run_settled(const std::string& key, std::vector<std::function<void()>>& settled) {
  for (auto& f : settled) {
    try {
      f();
    } catch (const std::exception& e) {
      log::error("after the policy step for {} settled: {}", key, e.what());
    }
  }
}

}  // namespace

policy_queue::~policy_queue() = default;

void policy_queue::set_executor(executor ex) {
  std::lock_guard lock(mu_);
  executor_ = std::move(ex);
}

bool policy_queue::submit(const std::string& key, step s, bool force) {
  {
    std::lock_guard lock(mu_);
    auto& q = queues_[key];
    if (!force && !q.empty() && q.size() - 1 >= max_waiting_) return false;
    q.push_back(s);
    if (q.size() > 1) return true;  // starts when the one before it finishes
  }
  run(key, std::move(s));
  return true;
}

void policy_queue::run(const std::string& key, step s) {
  ticket t(std::make_shared<ticket::state>(this, key));
  try {
    s(std::move(t));
  } catch (const std::exception& e) {
    log::error("policy step for {} failed: {}", key, e.what());
  } catch (...) {
    log::error("policy step for {} failed", key);
  }
}

void policy_queue::set_after_step(std::function<void(const std::string& key)> f) {
  std::lock_guard lock(mu_);
  after_step_ = std::move(f);
}

void policy_queue::finished(const std::string& key, std::vector<std::function<void()>> settled) {
  std::function<void(const std::string&)> after;
  {
    std::lock_guard lock(mu_);
    after = after_step_;
    if (after && executor_) {
      // The key stays busy (its finished step still at the front) until this has run.
      executor_([this, key, after, settled = std::move(settled)]() mutable {
        try {
          after(key);
        } catch (const std::exception& e) {
          log::error("after a policy step for {}: {}", key, e.what());
        }
        run_settled(key, settled);
        advance(key, true);
      });
      return;
    }
  }
  if (after) {
    try {
      after(key);
    } catch (const std::exception& e) {
      log::error("after a policy step for {}: {}", key, e.what());
    }
  }
  run_settled(key, settled);
  advance(key, false);
}

// The finished step leaves its key's queue; the next one runs here (`here`: this thread is
// the executor's already) or is posted to the executor.
void policy_queue::advance(const std::string& key, bool here) {
  step next;
  {
    std::lock_guard lock(mu_);
    auto it = queues_.find(key);
    if (it == queues_.end() || it->second.empty()) return;
    it->second.pop_front();
    if (it->second.empty()) {
      queues_.erase(it);
      return;
    }
    next = it->second.front();
    // Posted under the lock, so that once set_executor has replaced an executor (the worker
    // pool at shutdown) nothing is posted to the old one any more. Posting does not block.
    if (executor_ && !here) {
      executor_([this, key, next] { run(key, next); });
      return;
    }
  }
  run(key, std::move(next));
}

std::size_t policy_queue::busy_keys() const {
  std::lock_guard lock(mu_);
  return queues_.size();
}

}  // namespace rsgate::gateway
