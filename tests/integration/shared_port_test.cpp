// Tunnels and HTTPS on one TCP port (issue 9, docs/operations.md §13): with tunnel.listen =
// "http" the gateway reads each connection's ClientHello before TLS and gives one offering
// ALPN rsgate/1 to the tunnel side, anything else to HTTPS. The real agent, curl, `rsgate
// connect` and `openssl s_client` all use the one port.
#include <sys/socket.h>
#include <unistd.h>

#include <csignal>

#include <catch2/catch.hpp>

#include "core/files.hpp"
#include "tests/integration/gateway_fixture.hpp"
#include "tests/support/echo_server.hpp"

using namespace rsgate;
using namespace rsgate::test;
using namespace std::chrono_literals;
namespace json = boost::json;

namespace {

std::string negotiated(const std::string& hostport, const std::string& alpn) {
  auto r = run({"openssl", "s_client", "-connect", hostport, "-servername", "localhost", "-alpn", alpn}, "", 20s);
  auto at = r.out.find("ALPN protocol: ");
  if (at == std::string::npos) return "none";
  return r.out.substr(at + 15, r.out.find('\n', at) - at - 15);
}

}  // namespace

TEST_CASE("tunnels and HTTPS on one port, told apart by ALPN") {
  std::signal(SIGPIPE, SIG_IGN);
  gateway_fixture f(2, "listen = \"http\"");
  CHECK(f.tunnel == f.https);  // `rsgate: tunnel:` names the HTTPS listener's address

  // TLS itself, as each kind of client asks for it.
  CHECK(negotiated(f.https, "rsgate/1") == "rsgate/1");
  CHECK(negotiated(f.https, "http/1.1") == "http/1.1");
  CHECK(f.raw("GET", "/healthz", {}).first == 200);

  // Not TLS at all: the HTTPS side's handshake refuses it; the port goes on serving.
  {
    auto colon = f.https.rfind(':');
    int s = connect_local(static_cast<std::uint16_t>(std::stoi(f.https.substr(colon + 1))));
    REQUIRE(s >= 0);
    const char req[] = "GET /healthz HTTP/1.0\r\n\r\n";
    CHECK(::send(s, req, sizeof req - 1, 0) == static_cast<ssize_t>(sizeof req - 1));
    char c[64];
    timeval tv{10, 0};
    ::setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    ssize_t n;
    while ((n = ::recv(s, c, sizeof c, 0)) > 0) {
    }
    CHECK(n == 0);  // closed (after TLS's own alert at most), not left hanging
    ::close(s);
  }

  // The whole flow on the one port: agent, attach, a channel, the end with its receipt.
  echo_server echo;
  auto profile = f.enroll("7801601", false, {"hmc=127.0.0.1:" + std::to_string(echo.port())});
  auto sess = start_and_attach(f, profile, "alice", "TS000000601");
  CHECK(read_file(profile).find("primary = '" + f.https + "'") != std::string::npos);
  CHECK(channel_round_trip(f, "alice", sess.sid, "hmc", 100'000));
  REQUIRE(f.api("DELETE", "/api/v1/sessions/" + sess.sid, "alice").status == 200);
  (void)wait_line(*sess.agent, "Receipt: ");
  CHECK(sess.agent->wait(30s) == 0);
  CHECK(f.kinds("tunnel.auth", "ok").size() == 1);
  CHECK(f.kinds("channel.close", "ok").size() == 1);
  // A stop closes the one listener for both: the gateway exits cleanly.
  CHECK(f.stop() == 0);
}
