// See session_snapshot.hpp.
#include "gateway/session_snapshot.hpp"

#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <boost/json/value.hpp>
#include <set>
#include <stdexcept>

namespace json = boost::json;

namespace rsgate::gateway {
namespace {

constexpr int kVersion = 1;
// Bounds against a damaged file, not limits of a session: a session's grants and PMRs are not
// capped (revoked grants stay listed), so these are far above what one accumulates.
constexpr std::size_t kMaxText = 256;          // any one string
constexpr std::size_t kMaxList = 100'000;      // scopes, PMRs, grants, a grant's sets
constexpr std::size_t kMaxSnapshot = 64 << 20;

json::array strings(const auto& v) {
  json::array a;
  for (auto& x : v) a.emplace_back(x);
  return a;
}

// Reads one object's fields, each exactly once; refuses what is left over.
class fields {
 public:
  explicit fields(const json::value& v, const char* what) : what_(what) {
    if (!v.is_object()) throw std::invalid_argument(std::string(what) + " is not an object");
    o_ = &v.as_object();
  }
  const json::value& at(const char* k) {
    auto* p = o_->if_contains(k);
    if (!p) throw std::invalid_argument(std::string(what_) + "." + k + " is missing");
    seen_.insert(k);
    return *p;
  }
  std::string str(const char* k, bool may_be_empty = true) {
    auto& v = at(k);
    if (!v.is_string() || v.as_string().size() > kMaxText || (!may_be_empty && v.as_string().empty()))
      throw std::invalid_argument(std::string(what_) + "." + k + " is not a string of 0-256 bytes");
    return std::string(v.as_string());
  }
  std::int64_t integer(const char* k, std::int64_t lo, std::int64_t hi) {
    auto& v = at(k);
    if (!v.is_int64() || v.as_int64() < lo || v.as_int64() > hi)
      throw std::invalid_argument(std::string(what_) + "." + k + " is out of range");
    return v.as_int64();
  }
  bool boolean(const char* k) {
    auto& v = at(k);
    if (!v.is_bool()) throw std::invalid_argument(std::string(what_) + "." + k + " is not a boolean");
    return v.as_bool();
  }
  template <typename Out>
  void list(const char* k, Out& out) {
    auto& v = at(k);
    if (!v.is_array() || v.as_array().size() > kMaxList)
      throw std::invalid_argument(std::string(what_) + "." + k + " is not a list of at most 100000");
    for (auto& x : v.as_array()) {
      if (!x.is_string() || x.as_string().size() > kMaxText)
        throw std::invalid_argument(std::string(what_) + "." + k + " holds something else than short strings");
      out.insert(out.end(), std::string(x.as_string()));
    }
  }
  const json::array& array(const char* k) {
    auto& v = at(k);
    if (!v.is_array() || v.as_array().size() > kMaxList)
      throw std::invalid_argument(std::string(what_) + "." + k + " is not a list of at most 100000");
    return v.as_array();
  }
  void done() const {
    for (auto& [k, v] : *o_)
      if (!seen_.count(std::string(k))) throw std::invalid_argument(std::string(what_) + ": unknown field " + std::string(k));
  }

 private:
  const char* what_;
  const json::object* o_ = nullptr;
  std::set<std::string> seen_;
};

constexpr std::int64_t kMaxTime = 253402300799LL * 1'000'000;  // 9999-12-31, microseconds

}  // namespace

std::string to_snapshot(const session& s) {
  json::array grants;
  for (auto& g : s.grants)
    grants.emplace_back(json::object{{"id", g.id},
                                     {"user", g.user},
                                     {"scopes", strings(g.scopes)},
                                     {"access_types", strings(g.access_types)},
                                     {"expires_at", g.expires_at},
                                     {"granted_by", g.granted_by},
                                     {"granted_at", g.granted_at},
                                     {"revoked", g.revoked}});
  json::object o{{"v", kVersion},
                 {"id", s.id},
                 {"machine", s.machine},
                 {"scopes", strings(s.scopes)},
                 {"state", std::string(to_string(s.state))},
                 {"key_hmac", s.key_hmac},
                 {"key_expires_at", s.key_expires_at},
                 {"key_used", s.key_used},
                 {"owner", s.owner},
                 {"pmr", s.pmr},
                 {"pmrs", strings(s.pmrs)},
                 {"grants", std::move(grants)},
                 {"created_at", s.created_at},
                 {"next_grant", s.next_grant}};
  return json::serialize(o);
}

std::optional<session> session_from_snapshot(std::string_view text, std::string& why) {
  if (text.size() > kMaxSnapshot) {
    why = "larger than 64 MiB";
    return std::nullopt;
  }
  boost::system::error_code ec;
  auto v = json::parse(text, ec);
  if (ec) {
    why = "not JSON: " + ec.message();
    return std::nullopt;
  }
  try {
    fields f(v, "session");
    if (f.integer("v", kVersion, kVersion) != kVersion) throw std::invalid_argument("unknown version");
    session s;
    s.id = f.str("id", false);
    s.machine = f.str("machine", false);
    f.list("scopes", s.scopes);
    auto state = f.str("state");
    if (state == "waiting") s.state = session_state::waiting;
    else if (state == "active") s.state = session_state::active;
    else throw std::invalid_argument("session.state is neither waiting nor active");
    s.key_hmac = f.str("key_hmac");
    s.key_expires_at = f.integer("key_expires_at", 0, kMaxTime);
    s.key_used = f.boolean("key_used");
    s.owner = f.str("owner");
    s.pmr = f.str("pmr");
    f.list("pmrs", s.pmrs);
    for (auto& gv : f.array("grants")) {
      fields gf(gv, "grant");
      grant g;
      g.id = gf.str("id", false);
      g.user = gf.str("user", false);
      gf.list("scopes", g.scopes);
      gf.list("access_types", g.access_types);
      g.expires_at = gf.integer("expires_at", 0, kMaxTime);
      g.granted_by = gf.str("granted_by");
      g.granted_at = gf.integer("granted_at", 0, kMaxTime);
      g.revoked = gf.boolean("revoked");
      gf.done();
      s.grants.push_back(std::move(g));
    }
    s.created_at = f.integer("created_at", 0, kMaxTime);
    s.next_grant = static_cast<int>(f.integer("next_grant", 1, 1'000'000'000));
    f.done();
    if ((s.state == session_state::active) == s.owner.empty())
      throw std::invalid_argument("an active session has an owner, a waiting one none");
    return s;
  } catch (const std::exception& e) {
    why = e.what();
    return std::nullopt;
  }
}

}  // namespace rsgate::gateway
