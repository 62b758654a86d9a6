// See address.hpp.
#include "core/address.hpp"

#include <arpa/inet.h>

#include <cctype>
#include <charconv>

namespace rsgate {

std::optional<listen_address> parse_listen(std::string_view text) {
  if (text.size() > 100) return std::nullopt;
  auto colon = text.rfind(':');
  if (colon == std::string_view::npos || colon == 0) return std::nullopt;
  std::string_view host = text.substr(0, colon);
  std::string_view port = text.substr(colon + 1);
  if (host.front() == '[') {
    if (host.size() < 3 || host.back() != ']') return std::nullopt;
    host = host.substr(1, host.size() - 2);
    if (host.find(':') == std::string_view::npos) return std::nullopt;
  } else if (host.find(':') != std::string_view::npos) {
    return std::nullopt;  // IPv6 must be bracketed
  }
  // An IP literal: the listener binds addresses, it does not resolve names. Only the
  // characters of one, so an embedded NUL cannot hide a suffix from inet_pton.
  for (char c : host)
    if (!std::isxdigit(static_cast<unsigned char>(c)) && c != '.' && c != ':') return std::nullopt;
  std::string h(host);
  unsigned char buf[16];
  if (inet_pton(AF_INET, h.c_str(), buf) != 1 && inet_pton(AF_INET6, h.c_str(), buf) != 1)
    return std::nullopt;
  unsigned p = 0;
  auto [end, ec] = std::from_chars(port.data(), port.data() + port.size(), p);
  if (port.empty() || ec != std::errc{} || end != port.data() + port.size() || p > 65535)
    return std::nullopt;
  return listen_address{std::string(host), static_cast<std::uint16_t>(p)};
}

}  // namespace rsgate
