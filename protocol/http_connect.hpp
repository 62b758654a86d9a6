// The agent's way through a customer's HTTP proxy (SPEC §2 step 1, docs/protocol.md §1): an
// HTTP/1.1 CONNECT to the gateway's HOST:PORT, with Basic proxy authentication when the
// profile's proxy URL carries credentials, then TLS end to end through the tunnel the proxy
// opened (the proxy sees only TLS). Pure: building the request and reading the proxy's answer;
// the agent does the I/O. The answer comes from the network, so its parser is strict and
// bounded and has a fuzz target.
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace rsgate::agent {

// `http://[user:password@]host:port`; user and password may be percent-encoded (RFC 3986).
struct proxy_url {
  std::string host;
  std::uint16_t port = 0;
  std::string user, password;  // both empty: no authentication
};
[[nodiscard]] std::optional<proxy_url> parse_proxy_url(std::string_view url, std::string& why);

// The CONNECT request for `target` (the gateway's HOST:PORT), ending with the blank line.
[[nodiscard]] std::string connect_request(std::string_view target, const proxy_url& proxy);

// The most the agent reads of the proxy's answer before the blank line that ends its header.
inline constexpr std::size_t kMaxConnectAnswer = 8192;

struct connect_answer {
  int status = 0;
  std::string reason;  // the reason phrase, printable ASCII only
};
// `head`: the answer up to and including the first "\r\n\r\n". nullopt with `why` when it is
// not an HTTP/1.x status line followed by header lines.
[[nodiscard]] std::optional<connect_answer> parse_connect_answer(std::string_view head, std::string& why);

}  // namespace rsgate::agent
