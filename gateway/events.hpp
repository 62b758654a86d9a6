// Live events for the console and tools (docs/api.md §5.6): what the session service
// publishes after each change, fanned out to the callers who may see it, as server-sent-event
// frames. Plain C++ without Asio: the HTTPS layer (https_server.cpp) drains a subscription
// and writes it to its connection.
//
// A session's event is its whole session object (the state after the change, as GET
// /sessions/{id} shows it), sent to the users who may see it now: its owner and the holders of
// a live grant (every grantee once it ended). A user who could see it at the previous event
// and cannot any more (a revoked grantee, a transferred-away owner) gets `session.removed`
// instead. Equal objects for the same audience are sent once, so publishing is idempotent and
// may be repeated (the channel byte counts are published every second this way).
// Administrators get `machine` events (a tunnel came or went).
//
// Every subscription's queue is bounded in bytes: a subscriber that does not keep up loses
// its queue and its stream ends with `end` {"reason":"overflow"} (it reconnects and starts
// from the current state again). Subscriptions are bounded in number, in all and per user.
//
// Thread-safe. Owned by the service for the gateway's life; a subscription is shared by the
// hub and the stream serving it, and outlives neither's use of it.
#pragma once
#include <cstddef>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <vector>

#include "core/clock.hpp"
#include "gateway/sessions.hpp"

namespace rsgate::gateway {

// Why a stream ends (the `end` event's reason, docs/api.md §5.6).
inline constexpr std::string_view kEventsOverflow = "overflow";
inline constexpr std::string_view kEventsStopping = "gateway stopping";
inline constexpr std::string_view kEventsLoggedOut = "logged out";
inline constexpr std::string_view kEventsExpired = "credential expired";
inline constexpr std::string_view kEventsRevoked = "credential revoked";
inline constexpr std::string_view kEventsDisabled = "account disabled";

class event_subscription {
 public:
  struct owner {
    std::string user;
    role user_role = role::developer;
    std::string login_hash;  // the login cookie's SHA-256, "" for a bearer token
    std::string token_hash;  // the bearer token's SHA-256, "" for a login
    micros expires_at = 0;   // when the credential ends (0: never)
  };
  explicit event_subscription(owner who, std::size_t max_bytes) : who_(std::move(who)), max_bytes_(max_bytes) {}

  [[nodiscard]] const owner& who() const { return who_; }

  // The stream side: what was queued since the last call, as SSE text ("" for nothing), and
  // whether the stream must end after writing it. Once `end` is returned, every later call
  // returns {"", true}.
  struct batch {
    std::string text;
    bool end = false;
  };
  batch take();
  // Called (from any thread, no lock held) whenever something is queued or the subscription
  // ends; set once by the stream side before it first waits.
  void set_wake(std::function<void()> wake);

  // The hub's side. queue_initial() queues the current state at the start, outside the byte
  // bound (the caller bounds it: at most kMaxInitialSessions sessions). queue() drops the frame and ends the subscription when it would pass the
  // byte bound. close() ends it after what is queued, with `end` {"reason": why}.
  void queue_initial(const std::vector<std::string>& frames);
  void queue(const std::string& frame);
  void close(std::string_view why);
  [[nodiscard]] bool closed() const;

 private:
  void wake();
  const owner who_;
  const std::size_t max_bytes_;
  mutable std::mutex mu_;
  std::string queued_;      // guarded by mu_
  bool closing_ = false;    // guarded by mu_: an `end` frame is queued
  bool ended_ = false;      // guarded by mu_: take() returned end
  std::function<void()> wake_;  // guarded by mu_
};

class event_hub {
 public:
  struct limits {
    std::size_t max_subscriptions = 1000;
    std::size_t max_per_user = 8;
    std::size_t queue_bytes = 256 * 1024;
  };
  event_hub();
  explicit event_hub(limits l) : limits_(l) {}

  // A new subscription, with `initial` (SSE frames) queued first; nullptr when the limits
  // are reached. The caller (the service) holds the lock under which it publishes, so no
  // event falls between `initial` and the first published one.
  [[nodiscard]] std::shared_ptr<event_subscription> subscribe(event_subscription::owner who,
                                                              const std::vector<std::string>& initial);
  // The stream is over: the hub forgets it.
  void unsubscribe(const std::shared_ptr<event_subscription>& s);

  // Session `id`'s object now (`json`), for `audience` (user names); `ended`: the last event
  // of that session (the hub forgets it afterwards).
  void publish_session(const std::string& id, const std::string& json, const std::set<std::string>& audience,
                       bool ended);
  // A machine's tunnel came or went: to every administrator.
  void publish_machine(const std::string& json);

  // Ends the matching subscriptions (after what they have queued) with `end` {"reason": why}.
  void close_all(std::string_view why);
  void close_user(const std::string& user, std::string_view why);
  void close_login(const std::string& login_hash, std::string_view why);
  void close_token(const std::string& token_hash, std::string_view why);
  // Ends each open one for which `why` says a reason ("": it goes on). `why` is called with no
  // lock of the hub held: it may block (state.db).
  void close_if(const std::function<std::string_view(const event_subscription::owner&)>& why);

  [[nodiscard]] std::size_t subscriptions() const;

  // One SSE frame: `event: <type>` and `data: <json>` (which must hold no newline).
  [[nodiscard]] static std::string frame(std::string_view type, std::string_view json);
  static constexpr int kKeepaliveSeconds = 15;
  static constexpr std::size_t kMaxInitialSessions = 200;  // the current state a stream starts with
  static constexpr int kRetryMillis = 5000;  // the `retry:` a client waits before reconnecting

 private:
  const limits limits_;
  mutable std::mutex mu_;
  std::vector<std::shared_ptr<event_subscription>> subs_;  // guarded by mu_
  struct published {
    std::string json;
    std::set<std::string> audience;
  };
  std::map<std::string, published> sessions_;  // guarded by mu_: each session's last event
};

}  // namespace rsgate::gateway
