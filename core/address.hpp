// Listen addresses as the configuration and the command lines write them: an IP literal (IPv6
// in brackets) and a port. Shared by the gateway's configuration and `rsgate connect`.
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace rsgate {

struct listen_address {
  std::string host;
  std::uint16_t port = 0;
};
// "127.0.0.1:8443", "[::1]:8443", "0.0.0.0:0": an IP literal and a port; nullopt otherwise.
[[nodiscard]] std::optional<listen_address> parse_listen(std::string_view text);

}  // namespace rsgate
