// See http_connect.hpp.
#include "protocol/http_connect.hpp"

#include <fmt/format.h>

#include <span>

#include "core/encoding.hpp"
#include "protocol/profile.hpp"

namespace rsgate::agent {
namespace {

int hex_digit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// Percent-decoding of a userinfo part; nullopt on a broken escape or a control character.
std::optional<std::string> decode(std::string_view s) {
  std::string out;
  for (std::size_t i = 0; i < s.size(); ++i) {
    char c = s[i];
    if (c == '%') {
      if (i + 2 >= s.size()) return std::nullopt;
      const int hi = hex_digit(s[i + 1]);
      const int lo = hex_digit(s[i + 2]);
      if (hi < 0 || lo < 0) return std::nullopt;
      c = static_cast<char>(hi * 16 + lo);
      i += 2;
    }
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) return std::nullopt;
    out.push_back(c);
  }
  return out;
}

bool printable(std::string_view s) {
  for (unsigned char c : s)
    if (c < 0x20 || c > 0x7e) return false;
  return true;
}

}  // namespace

std::optional<proxy_url> parse_proxy_url(std::string_view url, std::string& why) {
  constexpr std::string_view scheme = "http://";
  if (url.size() > 512 || !url.starts_with(scheme)) {
    why = "must be http://[USER:PASSWORD@]HOST:PORT";
    return std::nullopt;
  }
  url.remove_prefix(scheme.size());
  if (!url.empty() && url.back() == '/') url.remove_suffix(1);
  proxy_url p;
  if (auto at = url.rfind('@'); at != std::string_view::npos) {
    auto info = url.substr(0, at);
    url.remove_prefix(at + 1);
    auto colon = info.find(':');
    auto user = decode(info.substr(0, colon));
    auto password = decode(colon == std::string_view::npos ? std::string_view() : info.substr(colon + 1));
    if (!user || !password || user->empty() || user->find(':') != std::string::npos) {
      why = "the proxy's USER:PASSWORD is not valid (a user without ':', percent-encoding allowed)";
      return std::nullopt;
    }
    p.user = *user;
    p.password = *password;
  }
  if (!parse_host_port(url, p.host, p.port)) {
    why = "must be http://[USER:PASSWORD@]HOST:PORT";
    return std::nullopt;
  }
  return p;
}

std::string connect_request(std::string_view target, const proxy_url& proxy) {
  std::string r = fmt::format("CONNECT {0} HTTP/1.1\r\nHost: {0}\r\n", target);
  if (!proxy.user.empty()) {
    auto cred = proxy.user + ":" + proxy.password;
    r += "Proxy-Authorization: Basic " +
         to_base64(std::span(reinterpret_cast<const std::uint8_t*>(cred.data()), cred.size())) + "\r\n";
  }
  r += "\r\n";
  return r;
}

std::optional<connect_answer> parse_connect_answer(std::string_view head, std::string& why) {
  if (head.size() > kMaxConnectAnswer || !head.ends_with("\r\n\r\n")) {
    why = "the proxy's answer is not an HTTP header of at most 8 KiB";
    return std::nullopt;
  }
  auto eol = head.find("\r\n");
  auto line = head.substr(0, eol);
  // HTTP/1.x SP 3DIGIT SP reason
  auto digit = [](char c) { return c >= '0' && c <= '9'; };
  if (line.size() < 12 || !(line.starts_with("HTTP/1.1 ") || line.starts_with("HTTP/1.0 ")) || !digit(line[9]) ||
      !digit(line[10]) || !digit(line[11]) || (line.size() > 12 && line[12] != ' ')) {
    why = "the proxy did not answer with an HTTP/1.x status line";
    return std::nullopt;
  }
  connect_answer a;
  a.status = (line[9] - '0') * 100 + (line[10] - '0') * 10 + (line[11] - '0');
  if (a.status < 100) {
    why = "the proxy's status code is out of range";
    return std::nullopt;
  }
  auto reason = line.size() > 13 ? line.substr(13) : std::string_view();
  if (!printable(reason)) {
    why = "the proxy's reason phrase is not printable";
    return std::nullopt;
  }
  a.reason = std::string(reason.substr(0, 128));
  // Header lines: printable, each with a colon; the blank line ends them.
  for (auto rest = head.substr(eol + 2); rest.size() > 2;) {
    auto e = rest.find("\r\n");
    auto h = rest.substr(0, e);
    if (h.empty()) break;
    if (h.find(':') == std::string_view::npos || h.front() == ' ' || h.front() == '\t') {
      why = "the proxy's answer has a malformed header line";
      return std::nullopt;
    }
    for (unsigned char c : h)
      if ((c < 0x20 && c != '\t') || c == 0x7f) {
        why = "the proxy's answer has a control character in a header";
        return std::nullopt;
      }
    rest.remove_prefix(e + 2);
  }
  return a;
}

}  // namespace rsgate::agent
