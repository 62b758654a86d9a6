// See tunnel_state.hpp.
#include "protocol/agent_state.hpp"

#include <fmt/format.h>

#include "core/timefmt.hpp"

namespace rsgate::agent {
namespace {

using tunnel::frame_type;

// Frames only an agent sends, and frames reserved in this version: never acceptable from a
// gateway, whatever the phase.
bool never_from_gateway(frame_type t) {
  switch (t) {
    case frame_type::hello:
    case frame_type::response:
    case frame_type::key_offer:
    case frame_type::stop:
    case frame_type::status:
    case frame_type::channel_accept:
    case frame_type::channel_reject:
    case frame_type::receipt_ack:
    case frame_type::status_reply:  // reserved
    case frame_type::upload_begin:
    case frame_type::upload_chunk:
    case frame_type::upload_end:
    case frame_type::upload_ack:
      return true;
    default:
      return false;
  }
}

std::string name(frame_type t) { return std::string(tunnel::name_of(t)); }

}  // namespace

void tunnel_state::on_hello_sent() { phase_ = tunnel_phase::hello_sent; }

void tunnel_state::on_response_sent() {
  if (authenticated())
    rechallenge_answered_ = true;
  else
    phase_ = tunnel_phase::challenged;
}

void tunnel_state::on_verified_success() {
  phase_ = tunnel_phase::authenticated;
  rechallenge_answered_ = false;
}

std::string tunnel_state::refuse(frame_type t) const {
  if (never_from_gateway(t)) return fmt::format("unexpected {} from the gateway", name(t));
  // Either side may probe liveness at any time; an ERROR ends the tunnel in any phase.
  if (t == frame_type::ping || t == frame_type::pong || t == frame_type::error) return {};
  switch (phase_) {
    case tunnel_phase::connecting:
      return fmt::format("unexpected {} before HELLO was sent", name(t));
    case tunnel_phase::hello_sent:
      if (t == frame_type::challenge || t == frame_type::failure) return {};
      return fmt::format("unexpected {} before the gateway proved itself (waiting for CHALLENGE)", name(t));
    case tunnel_phase::challenged:
      if (t == frame_type::success || t == frame_type::failure) return {};
      return fmt::format("unexpected {} before the gateway proved itself (waiting for SUCCESS)", name(t));
    case tunnel_phase::authenticated:
      break;
  }
  if (t == frame_type::challenge && rechallenge_answered_)
    return "unexpected CHALLENGE: the previous one is not answered by SUCCESS yet";
  if (t == frame_type::success && !rechallenge_answered_)
    return "unexpected SUCCESS: no CHALLENGE is waiting for it";
  return {};
}

void tunnel_state::on_key_offer(std::string key, std::int64_t expires_in_seconds) {
  offer_ = offer{std::move(key), expires_in_seconds};
}

std::optional<std::string> tunnel_state::on_key_ack(const tunnel::key_ack& ack, micros now, std::string& why,
                                                    bool& unsolicited) {
  unsolicited = !offer_;
  if (!offer_) {
    why = "unsolicited KEY_ACK: no session key offer is waiting for one";
    return std::nullopt;
  }
  auto o = std::move(*offer_);
  offer_.reset();
  auto at = parse_rfc3339_instant(ack.expires_at);
  if (!at) {
    why = "KEY_ACK's expires_at is not an RFC 3339 time";
    return std::nullopt;
  }
  if (*at <= now) {
    why = fmt::format("KEY_ACK's expires_at {} is not in the future", ack.expires_at);
    return std::nullopt;
  }
  constexpr micros kSecond = 1'000'000;
  if (*at > now + (o.expires_in + kKeyAckSkewSeconds) * kSecond) {
    why = fmt::format("KEY_ACK's expires_at {} is later than the {} s this agent asked for", ack.expires_at,
                      o.expires_in);
    return std::nullopt;
  }
  return o.key;
}

bool tunnel_state::on_key_refused() {
  if (!offer_) return false;
  offer_.reset();
  return true;
}

std::optional<micros> parse_rfc3339_instant(std::string_view text) {
  // parse_time also takes ages ("15m") and bare dates; a date-time has 'T' after the date.
  if (text.size() < 20 || (text[10] != 'T' && text[10] != 't')) return std::nullopt;
  return parse_time(text, 0);
}

}  // namespace rsgate::agent
