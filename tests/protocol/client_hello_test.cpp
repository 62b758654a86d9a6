// The ClientHello scan that lets tunnels and HTTPS share a port: real ClientHellos made by
// OpenSSL (with and without ALPN, TLS 1.3 and 1.2), every prefix of one, and malformed records.
#include "protocol/client_hello.hpp"

#include <openssl/ssl.h>

#include <catch2/catch.hpp>
#include <string>
#include <vector>

using namespace rsgate::tunnel;
using result = client_hello_scan::result;

namespace {

// What an OpenSSL client sends first, offering `alpn` (wire format: length-prefixed names).
std::vector<std::uint8_t> client_hello(const std::string& alpn_wire, int max_version = TLS1_3_VERSION) {
  SSL_CTX* ctx = SSL_CTX_new(TLS_client_method());
  REQUIRE(ctx);
  SSL_CTX_set_max_proto_version(ctx, max_version);
  SSL* ssl = SSL_new(ctx);
  BIO* in = BIO_new(BIO_s_mem());
  BIO* out = BIO_new(BIO_s_mem());
  SSL_set_bio(ssl, in, out);
  SSL_set_tlsext_host_name(ssl, "gw.example.com");
  if (!alpn_wire.empty())
    REQUIRE(SSL_set_alpn_protos(ssl, reinterpret_cast<const unsigned char*>(alpn_wire.data()),
                                static_cast<unsigned>(alpn_wire.size())) == 0);
  SSL_set_connect_state(ssl);
  CHECK(SSL_do_handshake(ssl) <= 0);  // waits for the server: the ClientHello is in `out`
  char* data = nullptr;
  long n = BIO_get_mem_data(out, &data);
  std::vector<std::uint8_t> bytes(data, data + n);
  SSL_free(ssl);
  SSL_CTX_free(ctx);
  return bytes;
}

}  // namespace

TEST_CASE("a real ClientHello's ALPN list is read, without ALPN the list is empty") {
  auto agent = client_hello(std::string("\x08rsgate/1", 9));
  auto s = scan_client_hello(agent);
  REQUIRE(s.state == result::hello);
  CHECK(s.alpn == std::vector<std::string>{"rsgate/1"});

  auto browser = client_hello(std::string("\x02h2\x08http/1.1", 12), TLS1_2_VERSION);
  s = scan_client_hello(browser);
  REQUIRE(s.state == result::hello);
  CHECK(s.alpn == std::vector<std::string>{"h2", "http/1.1"});

  s = scan_client_hello(client_hello(""));
  REQUIRE(s.state == result::hello);
  CHECK(s.alpn.empty());
}

TEST_CASE("every prefix of a ClientHello asks for more, bytes after the record change nothing") {
  auto hello = client_hello(std::string("\x08rsgate/1", 9));
  for (std::size_t n = 0; n < hello.size(); ++n) {
    INFO(n);
    CHECK(scan_client_hello(std::span(hello.data(), n)).state == result::need_more);
  }
  hello.push_back(0x17);
  CHECK(scan_client_hello(hello).alpn == std::vector<std::string>{"rsgate/1"});
}

TEST_CASE("what is not a ClientHello is said to be so, early") {
  auto is_not = [](std::vector<std::uint8_t> b) { return scan_client_hello(b).state == result::not_hello; };
  CHECK(is_not({'G', 'E', 'T', ' '}));                      // plain HTTP on the TLS port
  CHECK(is_not({0x16, 0x02}));                              // not TLS's record version
  CHECK(is_not({0x16, 0x03, 0x01, 0x00, 0x00}));            // an empty record
  CHECK(is_not({0x16, 0x03, 0x01, 0x40, 0x01}));            // longer than 2^14
  CHECK(is_not({0x16, 0x03, 0x01, 0x00, 0x04, 0x02, 0x00, 0x00, 0x00}));  // a ServerHello
  // A ClientHello whose ALPN list lies about its length, and one with an empty name.
  auto hello = client_hello(std::string("\x08rsgate/1", 9));
  std::vector<std::uint8_t> needle = {0x00, 0x10};  // extension type 16
  auto it = std::search(hello.begin(), hello.end(), needle.begin(), needle.end());
  REQUIRE(it != hello.end());
  auto at = static_cast<std::size_t>(it - hello.begin());
  auto lying = hello;
  lying[at + 5] = 0x20;  // the list's length, beyond the extension
  CHECK(scan_client_hello(lying).state == result::not_hello);
  auto empty_name = hello;
  empty_name[at + 6] = 0x00;
  CHECK(scan_client_hello(empty_name).state == result::not_hello);
}
