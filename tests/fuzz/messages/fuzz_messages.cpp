// Fuzz target for the tunnel's control messages (gateway/tunnel/messages.hpp): JSON payloads
// that arrive from agents (and, on the agent, from gateways) over the network. No parser may
// crash or throw; a refusal must say why; and whatever a parser accepts must serialise with
// to_payload into a payload the same parser accepts again and that serialises to the very
// same bytes (one reading of every message, as the header promises).
//
// Input: the first byte picks the parser (modulo 16), the rest is the frame payload.
#include "protocol/messages.hpp"

#include <array>
#include <string>

#include "tests/fuzz/fuzz_support.hpp"

namespace tunnel = rsgate::tunnel;

namespace {

using payload = std::span<const std::uint8_t>;

template <typename Message>
void check(payload p, std::optional<Message> (*parse)(payload, std::string&)) {
  std::string why;
  auto m = parse(p, why);
  if (!m) {
    FUZZ_CHECK(!why.empty());
    return;
  }
  FUZZ_CHECK(why.empty());
  auto once = tunnel::to_payload(*m);
  FUZZ_CHECK(!once.empty() && once.size() <= tunnel::kMaxControlPayload);
  auto again = parse(once, why);
  FUZZ_CHECK(again.has_value());
  FUZZ_CHECK(tunnel::to_payload(*again) == once);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  payload p(data + 1, size - 1);
  switch (data[0] % 16) {
    case 0:
      check(p, tunnel::parse_hello);
      break;
    case 1: {
      check(p, tunnel::parse_challenge);
      std::string why;
      if (auto c = tunnel::parse_challenge(p, why)) {
        std::array<std::uint8_t, tunnel::kExporterBytes> exporter{};
        auto msg = tunnel::scram_auth_message("9009-42A*7801234", "client-nonce", *c, exporter);
        FUZZ_CHECK(!msg.empty());
      }
      break;
    }
    case 2:
      check(p, tunnel::parse_response);
      break;
    case 3:
      check(p, tunnel::parse_success);
      break;
    case 4:
      check(p, tunnel::parse_failure);
      break;
    case 5:
      check(p, tunnel::parse_key_offer);
      break;
    case 6:
      check(p, tunnel::parse_key_ack);
      break;
    case 7:
      check(p, tunnel::parse_notice);
      break;
    case 8:
      check(p, tunnel::parse_channel_open);
      break;
    case 9:
      check(p, tunnel::parse_channel_accept);
      break;
    case 10:
      check(p, tunnel::parse_reason);
      break;
    case 11:
      check(p, tunnel::parse_error);
      break;
    case 12:  // added after 0-11, so the corpus' selectors keep their parser
      check(p, tunnel::parse_rekey);
      break;
    case 13:  // CHANNEL_REJECT with the customer's decision (docs/protocol.md §8.1)
      check(p, tunnel::parse_channel_reject);
      break;
    case 14:  // RECEIPT (docs/protocol.md §4.12)
      check(p, tunnel::parse_receipt);
      break;
    default:  // 15: RECEIPT_ACK (§4.12)
      check(p, tunnel::parse_receipt_ack);
      break;
  }
  return 0;
}
