// The agent's side of one tunnel's protocol state (docs/protocol.md §4, §10): which frames a
// gateway may send in each phase, and the session key offer waiting for its KEY_ACK. Until the
// gateway has proven itself (a SUCCESS whose server signature checked), only the handshake's
// frames are acceptable: nothing the gateway says can make the agent connect to a target,
// print a notice or a key, or end "normally". Pure: no I/O, no clock (callers pass the time).
// One object per tunnel connection, owned by its coroutine.
#pragma once
#include <cstdint>
#include <optional>
#include <string>

#include "core/clock.hpp"
#include "protocol/messages.hpp"

namespace rsgate::agent {

enum class tunnel_phase {
  connecting,     // TCP + TLS; nothing sent yet
  hello_sent,     // waiting for CHALLENGE (or FAILURE)
  challenged,     // RESPONSE sent; waiting for SUCCESS (or FAILURE)
  authenticated,  // SUCCESS verified: the session's frames are acceptable
};

// How far a KEY_ACK's expires_at may lie beyond what the agent asked for, counted from the
// moment the ACK arrives (clock differences, the gateway's journal commit).
inline constexpr int kKeyAckSkewSeconds = 120;

class tunnel_state {
 public:
  [[nodiscard]] tunnel_phase phase() const { return phase_; }
  [[nodiscard]] bool authenticated() const { return phase_ == tunnel_phase::authenticated; }

  void on_hello_sent();
  // A CHALLENGE was answered: before authentication SUCCESS or FAILURE must follow; after it
  // (a re-challenge, §6) one SUCCESS becomes acceptable again.
  void on_response_sent();
  // SUCCESS with a verified server signature.
  void on_verified_success();

  // "" when the gateway may send a frame of type `t` now; otherwise why it may not (a
  // protocol error: ERROR `unexpected`, close). KEY_ACK and ERROR `key_refused` are checked
  // further by on_key_ack / on_key_refused.
  [[nodiscard]] std::string refuse(tunnel::frame_type t) const;

  // KEY_OFFER / KEY_ACK (§4.6): one offer at a time, answered by exactly one KEY_ACK or one
  // ERROR `key_refused`.
  [[nodiscard]] bool key_offer_outstanding() const { return offer_.has_value(); }
  void on_key_offer(std::string key, std::int64_t expires_in_seconds);
  // The key the ACK confirms. nullopt with `why` when no offer is waiting (`unsolicited` set),
  // or when expires_at is not an RFC 3339 time after `now` and at most the asked lifetime
  // (plus kKeyAckSkewSeconds) after it. Either way the offer is answered.
  [[nodiscard]] std::optional<std::string> on_key_ack(const tunnel::key_ack& ack, micros now, std::string& why,
                                                      bool& unsolicited);
  // ERROR `key_refused`: false when no offer was waiting for an answer.
  [[nodiscard]] bool on_key_refused();

 private:
  struct offer {
    std::string key;
    std::int64_t expires_in = 0;
  };
  tunnel_phase phase_ = tunnel_phase::connecting;
  bool rechallenge_answered_ = false;  // authenticated, and a re-challenge's RESPONSE was sent
  std::optional<offer> offer_;
};

// A KEY_ACK's expires_at as an RFC 3339 date-time ("2026-11-27T04:27:08.211858Z", an offset
// allowed), or nullopt: bare dates and relative ages are not accepted here.
[[nodiscard]] std::optional<micros> parse_rfc3339_instant(std::string_view text);

}  // namespace rsgate::agent
