// See notice.hpp.
#include "agent/notice.hpp"

#include <fmt/format.h>

#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <boost/json/value.hpp>

namespace json = boost::json;

namespace rsgate::agent {
namespace {

bool plain_event_name(std::string_view s) {
  if (s.empty() || s.size() > 32) return false;
  for (char c : s)
    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_')) return false;
  return true;
}

// "notice NAME: actor=..., user=..." with the fields that are present.
std::string generic_line(const tunnel::notice& n) {
  std::string out = "notice " + n.event;
  std::string sep = ": ";
  auto add = [&](const char* key, const std::string& v) {
    if (v.empty()) return;
    out += sep + key + "=" + v;
    sep = ", ";
  };
  add("actor", n.actor);
  add("user", n.user);
  add("pmr", n.pmr);
  add("scope", n.scope);
  add("access_type", n.access_type);
  add("reason", n.reason);
  if (n.channel) add("channel", std::to_string(n.channel));
  if (n.bytes_in) add("bytes_in", std::to_string(n.bytes_in));
  if (n.bytes_out) add("bytes_out", std::to_string(n.bytes_out));
  return out;
}

}  // namespace

std::optional<tunnel::notice> parse_notice_for_display(std::span<const std::uint8_t> payload, std::string& why) {
  if (auto n = tunnel::parse_notice(payload, why)) return n;
  if (why != "unknown event") return std::nullopt;
  // The shared parser knows only this version's events. Check every other field with it by
  // parsing a copy that names a known event, then put the real name back.
  json::parse_options opt;
  opt.max_depth = 4;
  boost::system::error_code ec;
  auto v = json::parse(std::string_view(reinterpret_cast<const char*>(payload.data()), payload.size()), ec, {}, opt);
  if (ec || !v.is_object() || !v.as_object().contains("event") || !v.as_object().at("event").is_string())
    return std::nullopt;
  std::string event(v.as_object().at("event").as_string());
  if (!plain_event_name(event)) {
    why = "event is not a plain name";
    return std::nullopt;
  }
  v.as_object()["event"] = "key_used";
  auto copy = json::serialize(v);
  auto n = tunnel::parse_notice(std::span(reinterpret_cast<const std::uint8_t*>(copy.data()), copy.size()), why);
  if (n) n->event = event;
  return n;
}

std::string describe_notice(const tunnel::notice& n) {
  if (n.event == "attach") return fmt::format("{} attached for PMR {} and now owns the session", n.actor, n.pmr);
  if (n.event == "attach_refused")
    return fmt::format("{} tried to attach for PMR {}: refused ({})", n.actor, n.pmr, n.reason);
  if (n.event == "grant")
    return fmt::format("{} granted {} access{}", n.actor, n.user, n.scope.empty() ? "" : " to " + n.scope);
  if (n.event == "revoke") return fmt::format("{} revoked the access of {}", n.actor, n.user);
  if (n.event == "transfer") return fmt::format("{} handed the session to {}", n.actor, n.user);
  if (n.event == "channel_open") return fmt::format("{} opened {} to {}", n.actor, n.access_type, n.scope);
  if (n.event == "channel_close")
    return fmt::format("{} closed {} to {} ({} bytes in, {} out)", n.actor, n.access_type, n.scope, n.bytes_in,
                       n.bytes_out);
  if (n.event == "tunnel_refused")
    return fmt::format(
        "WARNING: another connection for this machine (from {}) authenticated and was refused: {} "
        "(if that was not you, someone else holds this machine's profile)",
        n.actor.empty() ? "an unknown address" : n.actor, n.reason.empty() ? "no reason given" : n.reason);
  return generic_line(n);
}

}  // namespace rsgate::agent
