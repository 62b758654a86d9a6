// The agent's side of a channel's flow control (docs/protocol.md §8) against a scripted
// gateway that breaks its rules: the real `rsgate-agent` answers with ERROR, closes the
// tunnel and exits 1, whatever its target does. The target is a listener that never reads or
// writes (silent_target), so nothing but the gateway's frames moves the channel.
#include "tests/integration/scripted_gateway.hpp"

using namespace rsgate;
using namespace rsgate::test;
using namespace std::chrono_literals;
using ft = rsgate::tunnel::frame_type;

TEST_CASE("hostile gateway: a channel frame beyond the flow-control rules is a protocol error", "[integration]") {
  struct hostile_case {
    const char* name;
    std::vector<std::pair<ft, std::string>> frames;  // after CHANNEL_ACCEPT; WINDOW payloads are u32
    const char* code;
  };
  const std::vector<hostile_case> cases = {
      {"DATA after the gateway's EOF", {{ft::eof, ""}, {ft::data, "x"}}, "window_exceeded"},
      {"WINDOW beyond 16 MiB of credit", {{ft::window, std::string("\x01\x00\x00\x00", 4)}}, "window_exceeded"},
      {"a second EOF", {{ft::eof, ""}, {ft::eof, ""}}, "unexpected"},
  };
  for (auto& hc : cases) {
    INFO(hc.name);
    silent_target target;
    scripted_gateway g(target.port());
    g.start_agent();
    g.authenticate_and_ack_key();
    REQUIRE(g.peer->send(ft::channel_open,
                         as_bytes(R"({"scope":"hmc","access_type":"ssh","actor":"alice","window":262144})"), 1));
    REQUIRE(g.peer->recv_until(ft::channel_accept, 10s));
    for (auto& [type, payload] : hc.frames) REQUIRE(g.peer->send(type, as_bytes(payload), 1));
    g.read_until_closed();
    CHECK(g.error_codes() == std::vector<std::string>{hc.code});
    auto rc = g.wait_exit();
    REQUIRE(rc);
    CHECK(*rc == 1);
    CHECK(g.stderr_text().find("rsgate-agent: ") != std::string::npos);
  }
}
