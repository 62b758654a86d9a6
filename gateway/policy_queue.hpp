// Serializes the policy steps of each session (docs/architecture.md §4): a step decides,
// allocates ids, journals and applies its change, and the next step of the same session
// starts only when that one has finished — its journal entry durable or failed, its change
// applied or released. So no concurrent request can decide on state that another step is
// about to change, and the journal's order of a session's entries is the order in which its
// state changed. Steps of different sessions run concurrently (and share group commits).
//
// A running step holds a ticket; it passes copies to the completions it waits for (the
// journal's), and when the last copy is gone the step is over and the next one starts, on the
// executor given to set_executor (the API's worker pool), or inline when none is set (tests).
// A throwing step is logged and ends like any other. Thread-safe; owned by the service.
#pragma once
#include <cstddef>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

namespace rsgate::gateway {

class policy_queue {
 public:
  class ticket {
   public:
    ticket() = default;
    // Runs `f` once the step has settled: every copy of its ticket gone and the after-step
    // hook run (the session's state written to state.db), before the key's next step starts.
    // An answer given through this is never seen before the change it confirms is kept.
    // On a default-constructed ticket, at once.
    void when_settled(std::function<void()> f);

   private:
    friend class policy_queue;
    struct state;
    explicit ticket(std::shared_ptr<state> s) : s_(std::move(s)) {}
    std::shared_ptr<state> s_;
  };
  using step = std::function<void(ticket)>;
  using executor = std::function<void(std::function<void()>)>;

  explicit policy_queue(std::size_t max_waiting_per_key = 64) : max_waiting_(max_waiting_per_key) {}
  ~policy_queue();
  policy_queue(const policy_queue&) = delete;
  policy_queue& operator=(const policy_queue&) = delete;

  void set_executor(executor ex);
  // Runs after every step of a key and before the next one of that key starts (on the
  // executor when one is set: it may block, and a step often ends on the journal writer's
  // thread). The service writes the session's state there (state.db), in the session's order.
  void set_after_step(std::function<void(const std::string& key)> f);
  // Queues `s` behind the steps of `key`; runs it at once (on this thread) when none is
  // queued. False, and `s` is dropped, when max_waiting_per_key steps wait already, unless
  // `force` (for records of what happened already, which must not be lost).
  [[nodiscard]] bool submit(const std::string& key, step s, bool force = false);
  // Keys with a running or waiting step (for tests and metrics).
  [[nodiscard]] std::size_t busy_keys() const;

 private:
  void run(const std::string& key, step s);
  void finished(const std::string& key, std::vector<std::function<void()>> settled);
  void advance(const std::string& key, bool here);

  friend struct ticket::state;
  std::size_t max_waiting_;
  mutable std::mutex mu_;
  executor executor_;                              // guarded by mu_
  std::function<void(const std::string&)> after_step_;  // guarded by mu_
  std::map<std::string, std::deque<step>> queues_;  // guarded by mu_; front() is running
};

}  // namespace rsgate::gateway
