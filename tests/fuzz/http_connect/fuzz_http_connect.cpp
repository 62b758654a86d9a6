// Fuzz target for the HTTP proxy's answer to the agent's CONNECT and for the profile's proxy
// URL (protocol/http_connect.hpp). Input: a selector byte, then the text. Nothing may crash
// or throw; an accepted answer has a status of 100-999 and a printable reason; an accepted
// URL has a host, a port, and no ':' in its user.
#include "protocol/http_connect.hpp"

#include "tests/fuzz/fuzz_support.hpp"

using namespace rsgate::agent;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  auto text = rsgate::fuzz::as_text(data + 1, size - 1);
  std::string why;
  if (data[0] % 2 == 0) {
    if (auto a = parse_connect_answer(text, why)) {
      FUZZ_CHECK(a->status >= 100 && a->status <= 999);
      for (unsigned char c : a->reason) FUZZ_CHECK(c >= 0x20 && c <= 0x7e);
    } else {
      FUZZ_CHECK(!why.empty());
    }
  } else {
    if (auto u = parse_proxy_url(text, why)) {
      FUZZ_CHECK(!u->host.empty() && u->port != 0);
      FUZZ_CHECK(u->user.find(':') == std::string::npos);
      auto req = connect_request("gw.example.com:4433", *u);
      FUZZ_CHECK(req.ends_with("\r\n\r\n"));
      FUZZ_CHECK(req.find("\r\n\r\n") == req.size() - 4);  // credentials cannot break the header
    } else {
      FUZZ_CHECK(!why.empty());
    }
  }
  return 0;
}
