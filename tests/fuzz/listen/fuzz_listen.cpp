// Fuzz target for the gateway's own configuration values (core/address.hpp, journal/entry.hpp),
// read from the TOML file and from flags: parse_listen must never crash, must accept only IP literals, and
// an address it accepts must come back the same when written in the canonical form
// ("v4:port", "[v6]:port") and parsed again; is_valid_gateway_name must accept only the
// documented 1-64 of [A-Za-z0-9._-].
#include "core/address.hpp"

#include "journal/entry.hpp"

#include <arpa/inet.h>

#include <string>

#include "tests/fuzz/fuzz_support.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  auto text = rsgate::fuzz::as_text(data, size);
  if (rsgate::journal::is_valid_gateway_name(text)) {
    FUZZ_CHECK(!text.empty() && text.size() <= 64);
    for (char c : text)
      FUZZ_CHECK((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                 c == '.' || c == '_' || c == '-');
  }

  auto a = rsgate::parse_listen(text);
  if (!a) return 0;
  // The whole host must be the literal: inet_pton reads only up to a NUL byte.
  FUZZ_CHECK(a->host.find('\0') == std::string::npos);
  bool v6 = a->host.find(':') != std::string::npos;
  unsigned char addr[16];
  FUZZ_CHECK(inet_pton(v6 ? AF_INET6 : AF_INET, a->host.c_str(), addr) == 1);
  auto canonical = (v6 ? "[" + a->host + "]" : a->host) + ":" + std::to_string(a->port);
  auto again = rsgate::parse_listen(canonical);
  FUZZ_CHECK(again && again->host == a->host && again->port == a->port);
  return 0;
}
