// See status.hpp. Everything shown comes from the agent's own state; text from the gateway
// in it (owner, grantees, actors) is printed as plain values, never interpreted.
#include "agent/status.hpp"

#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <boost/json/value.hpp>

namespace json = boost::json;

namespace rsgate::agent {
namespace {

std::string str(const json::object& o, const char* k) {
  auto* v = o.if_contains(k);
  return v && v->is_string() ? std::string(v->as_string()) : std::string();
}

const json::array* list(const json::object& o, const char* k) {
  auto* v = o.if_contains(k);
  return v && v->is_array() && !v->as_array().empty() ? &v->as_array() : nullptr;
}

}  // namespace

std::string render_status(std::string_view text) {
  boost::system::error_code ec;
  auto v = json::parse(text, ec);
  if (ec || !v.is_object()) return std::string(text);
  auto& o = v.as_object();
  std::string out;
  out += "state:    " + str(o, "state") + "\n";
  out += "machine:  " + str(o, "machine") + "\n";
  out += "gateway:  " + str(o, "gateway") + "\n";
  out += "session:  " + str(o, "session") + "\n";
  out += "owner:    " + (str(o, "owner").empty() ? "(nobody attached)" : str(o, "owner") + " for PMR " + str(o, "pmr")) + "\n";
  out += "key:      " + (str(o, "key_expires_at").empty() ? "-" : "expires " + str(o, "key_expires_at")) + "\n";
  out += "grants:   ";
  if (auto* grants = list(o, "grants")) {
    for (auto& g : *grants) out += (g.is_string() ? std::string(g.as_string()) : "?") + " ";
    out += "\n";
  } else {
    out += "none\n";
  }
  out += "channels: ";
  if (auto* channels = list(o, "channels")) {
    out += "\n";
    for (auto& c : *channels) {
      if (!c.is_object()) continue;
      auto& co = c.as_object();
      auto* waiting = co.if_contains("awaiting_approval");
      auto* id = co.if_contains("request");
      std::string request;  // the agent's own JSON: ids are non-negative integers (int64 when parsed)
      if (waiting && waiting->is_bool() && waiting->as_bool() && id && id->is_int64())
        request = " (request " + std::to_string(id->as_int64()) + ": waiting for approve or refuse)";
      out += "  " + str(co, "actor") + " " + str(co, "access_type") + " to " + str(co, "scope") + request + "\n";
    }
  } else {
    out += "none\n";
  }
  return out;
}

}  // namespace rsgate::agent
