// Fuzz target for what a (possibly hostile) gateway's NOTICE and KEY_ACK become on the
// customer's side (agent/notice.hpp, agent/tunnel_state.hpp). No parser may crash or throw; a
// refusal must say why; an accepted notice reads the same after a round trip through
// to_payload, and the line shown for it is printable ASCII only (nothing can reach the
// customer's terminal as a control sequence); a KEY_ACK's expiry check never crashes and
// always answers the offer.
//
// Input: the first byte picks the target (even: NOTICE payload, odd: KEY_ACK expires_at text).
#include <string>

#include "agent/notice.hpp"
#include "protocol/agent_state.hpp"
#include "tests/fuzz/fuzz_support.hpp"

namespace tunnel = rsgate::tunnel;
namespace agent = rsgate::agent;

namespace {

void check_notice(std::span<const std::uint8_t> p) {
  std::string why;
  auto n = agent::parse_notice_for_display(p, why);
  if (!n) {
    FUZZ_CHECK(!why.empty());
    return;
  }
  auto line = agent::describe_notice(*n);
  for (unsigned char c : line) FUZZ_CHECK(c >= 0x20 && c <= 0x7e);
  auto again = agent::parse_notice_for_display(tunnel::to_payload(*n), why);
  FUZZ_CHECK(again.has_value());
  FUZZ_CHECK(agent::describe_notice(*again) == line);
}

void check_key_ack(std::string_view text) {
  agent::tunnel_state s;
  s.on_hello_sent();
  s.on_response_sent();
  s.on_verified_success();
  s.on_key_offer("GXW6-1JFR-GGWH-K", 3600);
  std::string why;
  bool unsolicited = true;
  constexpr rsgate::micros now = 1'800'000'000'000'000;
  auto key = s.on_key_ack(tunnel::key_ack{std::string(text)}, now, why, unsolicited);
  FUZZ_CHECK(!unsolicited);
  FUZZ_CHECK(!s.key_offer_outstanding());
  FUZZ_CHECK(key.has_value() == why.empty());
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  std::span<const std::uint8_t> p(data + 1, size - 1);
  if (data[0] % 2 == 0)
    check_notice(p);
  else
    check_key_ack(rsgate::fuzz::as_text(data + 1, size - 1));
  return 0;
}
