// See session_view.hpp.
#include "agent/session_view.hpp"

#include <algorithm>
#include <boost/json/serialize.hpp>
#include <boost/json/value.hpp>

namespace json = boost::json;

namespace rsgate::agent {

void apply_notice(session_view& v, const tunnel::notice& n) {
  if (n.event == "attach") {
    v.owner = n.actor;
    v.pmr = n.pmr;
    v.state = "active";
  } else if (n.event == "grant") {
    v.grants.push_back(n.user);
  } else if (n.event == "revoke") {
    std::erase(v.grants, n.user);
  } else if (n.event == "transfer") {
    v.owner = n.user;
  }
}

std::string status_json(const session_view& v, const std::string& machine, const std::vector<channel_view>& channels) {
  json::array grants;
  for (auto& g : v.grants) grants.emplace_back(g);
  json::array chans;
  for (auto& c : channels) {
    json::object o{{"id", c.id}, {"scope", c.scope}, {"access_type", c.access_type}, {"actor", c.actor},
                   {"bytes_in", c.bytes_in}, {"bytes_out", c.bytes_out}, {"awaiting_approval", c.awaiting_approval}};
    if (c.request) o["request"] = c.request;  // the number `approve N` / `refuse N` take
    chans.emplace_back(std::move(o));
  }
  json::object o{{"state", v.state}, {"machine", machine}, {"gateway", v.gateway},
                 {"session", v.session}, {"key_expires_at", v.key_expires_at}, {"owner", v.owner},
                 {"pmr", v.pmr}, {"grants", std::move(grants)}, {"channels", std::move(chans)}};
  return json::serialize(o);
}

std::string printable(std::string_view s, std::size_t max) {
  std::string out(s.substr(0, max));
  for (auto& c : out)
    if (static_cast<unsigned char>(c) < 0x20 || static_cast<unsigned char>(c) > 0x7e) c = '?';
  return out;
}

}  // namespace rsgate::agent
