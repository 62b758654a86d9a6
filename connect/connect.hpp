// `rsgate connect`: exposes one scope of a session as a local TCP listener on the
// representative's workstation (like `ssh -L`). Every accepted connection asks the gateway
// for a channel (POST /api/v1/sessions/{id}/channels) and relays its bytes over the
// channel's WebSocket stream (docs/api.md), half-close included.
#pragma once
#include <cstddef>
#include <iosfwd>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace rsgate::representative {

int run_connect(const std::vector<std::string>& args, std::ostream& out, std::ostream& err);

// One GET of the gateway's REST API for the online journal tool (`rsgate journal --gateway`):
// TLS to `gateway_url` (https://HOST:PORT) with its certificate checked against the PEM file
// `ca` and the URL's host (nothing checked with `insecure`), `Authorization: Bearer token`, and
// an answer body of at most `max_body` bytes. `status` 0 and `error` saying why when no
// answer came; throws cli::usage_error for a malformed URL or CA file.
struct api_answer {
  int status = 0;
  std::string body;
  std::vector<std::pair<std::string, std::string>> headers;
  std::string error;
  [[nodiscard]] std::string header(std::string_view name) const;
};
[[nodiscard]] api_answer api_get(const std::string& gateway_url, const std::string& token, const std::string& ca,
                                 bool insecure, const std::string& target, std::size_t max_body);

}  // namespace rsgate::representative
