// The gateway's HTTP API without the network: requests and responses as plain values and a
// router that answers them. The Beast server (gateway/runtime.cpp) converts wire messages to
// these and back, so every endpoint is unit-testable without sockets or TLS.
//
// Handlers complete asynchronously: an endpoint that must journal before it grants access
// answers only when the journal has committed, from the journal writer's thread.
#pragma once
#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace rsgate::gateway {

class event_subscription;  // gateway/events.hpp

struct http_request {
  std::string method;  // "GET", "POST", …
  std::string target;  // path and query as received
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;
  std::string remote;  // "ip:port" of the peer
  [[nodiscard]] std::string header(std::string_view name) const;  // case-insensitive; "" if absent
};

struct http_response {
  int status = 200;
  std::string content_type = "application/json";
  std::string body;
  std::vector<std::pair<std::string, std::string>> headers;
  // Set only by GET /api/v1/events (docs/api.md §5.6): the caller's subscription, which the
  // HTTPS layer serves as a server-sent-events stream (with these headers) instead of `body`.
  std::shared_ptr<event_subscription> events{};
};

// {"error": {"code": ..., "message": ...}} with the given status (SPEC §4).
[[nodiscard]] http_response json_error(int status, std::string_view code, std::string_view message);

class api {
 public:
  using reply = std::function<void(http_response)>;
  virtual ~api() = default;
  // Must call `done` exactly once, from any thread.
  virtual void handle(http_request req, reply done) = 0;
};

// Wraps the completion `f` so that it runs exactly once: calls after the first are ignored,
// and when the last copy is destroyed without any call (a handler that lost its completion on
// some path, an exception) it runs with `fallback` — so a caller never waits forever and never
// gets two answers. Thread-safe.
template <typename T>
[[nodiscard]] std::function<void(T)> once_or(std::function<void(T)> f, T fallback) {
  struct state {
    state(std::function<void(T)> fn, T fb) : f(std::move(fn)), fallback(std::move(fb)) {}
    ~state() {
      if (called.exchange(true)) return;
      try {
        f(std::move(fallback));
      } catch (...) {
      }
    }
    std::function<void(T)> f;
    T fallback;
    std::atomic<bool> called{false};
  };
  auto st = std::make_shared<state>(std::move(f), std::move(fallback));
  return [st](T v) {
    if (!st->called.exchange(true)) st->f(std::move(v));
  };
}

// An API reply that answers exactly once; unanswered, it answers 500.
[[nodiscard]] api::reply exactly_once(api::reply r);

}  // namespace rsgate::gateway
