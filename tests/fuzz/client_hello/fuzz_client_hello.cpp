// Fuzz target for the ClientHello scan (protocol/client_hello.hpp): the first bytes any client
// sends to a port shared by HTTPS and tunnels, read before TLS. Nothing may crash; a verdict on
// a prefix is "need more" or the same verdict as on the whole; every ALPN name found is 1-255
// bytes.
#include "protocol/client_hello.hpp"

#include "tests/fuzz/fuzz_support.hpp"

using namespace rsgate::tunnel;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::span<const std::uint8_t> b(data, size);
  auto s = scan_client_hello(b);
  for (auto& n : s.alpn) FUZZ_CHECK(!n.empty() && n.size() <= 255);
  if (s.state != client_hello_scan::result::hello) FUZZ_CHECK(s.alpn.empty());
  if (size > 1) {
    auto p = scan_client_hello(b.first(size / 2));
    FUZZ_CHECK(p.state == client_hello_scan::result::need_more || p.state == s.state);
  }
  return 0;
}
