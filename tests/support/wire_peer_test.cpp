// wire_peer against itself over real loopback TLS: frames both ways, ALPN, the exporter, a
// silent peer times out, a dropped peer reads as closed, a malformed header is a decode error.
#include "tests/support/wire_peer.hpp"

#include <catch2/catch.hpp>
#include <fstream>
#include <thread>

#include "gateway/pki.hpp"
#include "tests/support/process.hpp"

using namespace rsgate;
using namespace rsgate::test;
using namespace std::chrono_literals;

namespace {
struct pair_fixture {
  temp_dir t;
  std::string ca_file = (t / "ca.pem").string(), cert_file = (t / "cert.pem").string(), key_file = (t / "key.pem").string();
  pair_fixture() {
    auto ca = gateway::make_ca("test CA", 2);
    auto cert = gateway::make_server_cert(ca, "localhost", {"localhost", "127.0.0.1"}, 2);
    std::ofstream(ca_file) << ca.cert_pem;
    std::ofstream(cert_file) << cert.cert_pem;
    std::ofstream(key_file) << cert.key_pem;
  }
};
}  // namespace

TEST_CASE("wire_peer: frames both ways over TLS 1.3 with ALPN and the same exporter") {
  pair_fixture f;
  wire_listener l(f.cert_file, f.key_file);
  std::unique_ptr<wire_peer> server;
  std::thread acceptor([&] { server = l.accept(10s); });
  auto client = wire_peer::connect("127.0.0.1:" + std::to_string(l.port()), {.ca_file = f.ca_file, .server_name = "localhost"});
  acceptor.join();
  REQUIRE(server);
  CHECK(client->alpn() == "rsgate/1");
  CHECK(client->exporter() == server->exporter());
  REQUIRE(client->send_json(tunnel::frame_type::ping, "{}"));
  auto got = server->recv(5s);
  REQUIRE(got);
  CHECK(got->header.type == tunnel::frame_type::ping);
  CHECK(std::string(got->payload.begin(), got->payload.end()) == "{}");
  CHECK_FALSE(server->recv(200ms));
  CHECK(server->timed_out());
  client->drop();
  CHECK_FALSE(server->recv(5s));
  CHECK(server->closed());
}

TEST_CASE("wire_peer: no ALPN when the listener selects none, a bad header is a decode error") {
  pair_fixture f;
  wire_listener l(f.cert_file, f.key_file, "");
  std::unique_ptr<wire_peer> server;
  std::thread acceptor([&] { server = l.accept(10s); });
  auto client = wire_peer::connect("127.0.0.1:" + std::to_string(l.port()), {});
  acceptor.join();
  REQUIRE(server);
  CHECK(client->alpn().empty());
  const std::uint8_t bad[12] = {0xff, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0};
  REQUIRE(client->send_raw(bad));
  CHECK_FALSE(server->recv(5s));
  CHECK(server->decode_error() == tunnel::decode_error::unknown_type);
}
