// The gateway's HTTP API without the network: requests and responses as plain values and a
// router that answers them. The Beast server (gateway/runtime.cpp) converts wire messages to
// these and back, so every endpoint is unit-testable without sockets or TLS.
//
// Handlers complete asynchronously: an endpoint that must journal before it grants access
// answers only when the journal has committed, from the journal writer's thread.
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <utility>
#include <vector>

namespace rsgate::gateway {

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

}  // namespace rsgate::gateway
