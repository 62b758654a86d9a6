// See sessions.hpp.
#include "gateway/sessions.hpp"

#include <fmt/format.h>

#include <algorithm>

#include "protocol/wire.hpp"

namespace rsgate::gateway {
namespace {

refusal refuse(int status, std::string code, std::string message) {
  return {status, std::move(code), std::move(message)};
}

bool live(const grant& g, micros now) { return !g.revoked && (g.expires_at == 0 || g.expires_at > now); }

bool covers(const grant& g, const std::string& scope, const std::string& access_type) {
  return (g.scopes.empty() || g.scopes.count(scope)) &&
         (g.access_types.empty() || g.access_types.count(access_type));
}

}  // namespace

std::optional<role> parse_role(std::string_view s) {
  if (s == "representative") return role::representative;
  if (s == "developer") return role::developer;
  if (s == "auditor") return role::auditor;
  if (s == "admin") return role::admin;
  return std::nullopt;
}

std::string_view to_string(role r) {
  switch (r) {
    case role::representative: return "representative";
    case role::developer: return "developer";
    case role::auditor: return "auditor";
    case role::admin: return "admin";
  }
  return "unknown";
}

std::string_view to_string(session_state s) {
  switch (s) {
    case session_state::waiting: return "waiting";
    case session_state::active: return "active";
    case session_state::ended: return "ended";
  }
  return "unknown";
}

session_registry::session_registry(limits_policy p)
    : policy_(p), per_user_(p.per_user), per_source_(p.per_source), global_(p.global) {}

session& session_registry::open_for_machine(const std::string& id, const std::string& machine,
                                            std::vector<std::string> scopes, micros now) {
  if (auto* live_s = find_live_for_machine(machine)) {
    live_s->scopes = std::move(scopes);  // a reconnect may offer a different set
    live_s->tunnel_up = true;
    live_s->tunnel_lost_at = 0;
    return *live_s;
  }
  session s;
  s.id = id;
  s.machine = machine;
  s.scopes = std::move(scopes);
  s.created_at = now;
  live_by_machine_[machine] = id;
  return sessions_[id] = std::move(s);
}

session& session_registry::restore(session s) {
  live_by_machine_[s.machine] = s.id;
  auto& r = sessions_[s.id] = std::move(s);
  index_key(r);
  return r;
}

void session_registry::index_key(const session& s) {
  if (!s.key_hmac.empty()) live_by_key_[s.key_hmac] = s.id;
}

void session_registry::unindex(const session& s) {
  if (auto it = live_by_machine_.find(s.machine); it != live_by_machine_.end() && it->second == s.id)
    live_by_machine_.erase(it);
  if (auto it = live_by_key_.find(s.key_hmac); it != live_by_key_.end() && it->second == s.id) live_by_key_.erase(it);
}

session* session_registry::find(const std::string& id) {
  auto it = sessions_.find(id);
  return it == sessions_.end() ? nullptr : &it->second;
}

session* session_registry::find_live_for_machine(const std::string& machine) {
  auto it = live_by_machine_.find(machine);
  if (it == live_by_machine_.end()) return nullptr;
  auto* s = find(it->second);
  return s && s->state != session_state::ended && s->machine == machine ? s : nullptr;
}

session* session_registry::find_live_by_key(const std::string& key_hmac) {
  if (key_hmac.empty()) return nullptr;
  auto it = live_by_key_.find(key_hmac);
  if (it == live_by_key_.end()) return nullptr;
  auto* s = find(it->second);
  return s && s->state != session_state::ended && s->key_hmac == key_hmac ? s : nullptr;
}

std::vector<session*> session_registry::live_sessions() {
  std::vector<session*> out;
  for (auto& [id, s] : sessions_)
    if (s.state != session_state::ended) out.push_back(&s);
  return out;
}

std::vector<const session*> session_registry::visible_to(const std::string& user, micros now) const {
  std::vector<const session*> out;
  for (auto& [id, s] : sessions_) {
    bool mine = s.owner == user;
    for (auto& g : s.grants) mine = mine || (g.user == user && (live(g, now) || s.state == session_state::ended));
    if (mine) out.push_back(&s);
  }
  return out;
}

std::set<std::string> session_registry::audience(const session& s, micros now) {
  std::set<std::string> out;
  if (!s.owner.empty()) out.insert(s.owner);
  for (auto& g : s.grants)
    if (live(g, now) || s.state == session_state::ended) out.insert(g.user);
  return out;
}

void session_registry::set_key(session& s, std::string key_hmac, micros expires_at) {
  if (auto it = live_by_key_.find(s.key_hmac); it != live_by_key_.end() && it->second == s.id) live_by_key_.erase(it);
  s.key_hmac = std::move(key_hmac);
  if (s.state != session_state::ended) index_key(s);
  s.key_expires_at = expires_at;
  s.key_used = false;
}

std::variant<session*, refusal> session_registry::check_attach(const attach_request& r, micros now) {
  if (r.user_role != role::representative)
    return refuse(403, "forbidden",
                  fmt::format("a {} cannot attach; only representatives attach, others need a grant "
                              "from the session's owner",
                              to_string(r.user_role)));
  if (!per_user_.allowed(r.user, now) || !per_source_.allowed(r.source, now) || !global_.allowed("*", now))
    return refuse(429, "rate_limited", "too many wrong session keys; try again later");
  session* s = nullptr;
  if (!r.key_hmac.empty()) {
    s = find_live_by_key(r.key_hmac);
    if (!s) return refuse(403, "bad_key", "no live session has this key");
    if (!s->key_used && s->key_expires_at <= now)
      return refuse(403, "key_expired", "this session key has expired; the customer can issue a new one");
  } else {
    s = find_live_for_machine(r.machine);
    if (!s) return refuse(404, "not_found", fmt::format("no live session for machine {}", r.machine));
  }
  if (s->state == session_state::active)
    return refuse(409, "locked", fmt::format("the session is owned by {}", s->owner));
  if (!s->tunnel_up)
    return refuse(409, "not_connected", "the customer's tunnel is not connected; it may come back shortly");
  return s;
}

void session_registry::record_bad_key(const attach_request& r, micros now) {
  per_user_.record_failure(r.user, now);
  per_source_.record_failure(r.source, now);
  global_.record_failure("*", now);
}

void session_registry::commit_attach(session& s, const attach_request& r, micros) {
  s.owner = r.user;
  s.pmr = r.pmr;
  if (std::find(s.pmrs.begin(), s.pmrs.end(), r.pmr) == s.pmrs.end()) s.pmrs.push_back(r.pmr);
  s.state = session_state::active;
  if (!r.key_hmac.empty()) s.key_used = true;
}

std::optional<refusal> session_registry::check_owner(const session& s, const std::string& user) const {
  if (s.state == session_state::ended) return refuse(409, "ended", "the session has ended");
  if (s.state != session_state::active) return refuse(409, "not_attached", "nobody has attached to this session yet");
  if (s.owner != user) return refuse(403, "not_owner", fmt::format("only the session's owner, {}, may do this", s.owner));
  return std::nullopt;
}

std::variant<grant, refusal> session_registry::check_grant(const session& s, const std::string& owner,
                                                           const std::string& grantee, role grantee_role,
                                                           std::set<std::string> scopes,
                                                           std::set<std::string> access_types,
                                                           micros expires_at, micros now) const {
  if (auto r = check_owner(s, owner)) return *r;
  if (grantee == owner) return refuse(400, "bad_request", "the owner needs no grant");
  if (grantee_role != role::developer && grantee_role != role::representative)
    return refuse(403, "forbidden", fmt::format("a {} cannot be granted access to a customer system", to_string(grantee_role)));
  for (auto& sc : scopes)
    if (std::find(s.scopes.begin(), s.scopes.end(), sc) == s.scopes.end())
      return refuse(400, "bad_request", fmt::format("scope '{}' is not offered by the customer", sc));
  if (expires_at != 0 && expires_at <= now) return refuse(400, "bad_request", "the grant would expire at once");
  for (auto& g : s.grants)
    if (g.user == grantee && live(g, now))
      return refuse(409, "conflict", fmt::format("{} already holds grant {}; revoke it first", grantee, g.id));
  grant g;
  g.id = fmt::format("G{}", s.next_grant);
  g.user = grantee;
  g.scopes = std::move(scopes);
  g.access_types = std::move(access_types);
  g.expires_at = expires_at;
  g.granted_by = owner;
  g.granted_at = now;
  return g;
}

grant& session_registry::commit_grant(session& s, grant g) {
  ++s.next_grant;
  s.grants.push_back(std::move(g));
  return s.grants.back();
}

std::variant<grant*, refusal> session_registry::check_revoke(session& s, const std::string& owner,
                                                             const std::string& grant_id) {
  if (auto r = check_owner(s, owner)) return *r;
  for (auto& g : s.grants)
    if (g.id == grant_id) {
      if (g.revoked) return refuse(409, "conflict", fmt::format("grant {} is revoked already", grant_id));
      return &g;
    }
  return refuse(404, "not_found", fmt::format("no grant {} in this session", grant_id));
}

std::variant<grant, refusal> session_registry::check_change_grant(
    const session& s, const std::string& owner, const std::string& grant_id,
    const std::optional<std::set<std::string>>& scopes, const std::optional<std::set<std::string>>& access_types,
    std::optional<micros> expires_at, micros now) const {
  if (auto r = check_owner(s, owner)) return *r;
  auto it = std::find_if(s.grants.begin(), s.grants.end(), [&](const grant& g) { return g.id == grant_id; });
  if (it == s.grants.end()) return refuse(404, "not_found", fmt::format("no grant {} in this session", grant_id));
  if (!live(*it, now)) return refuse(409, "conflict", fmt::format("grant {} has ended; grant anew", grant_id));
  grant g = *it;
  if (scopes) {
    for (auto& sc : *scopes)
      if (std::find(s.scopes.begin(), s.scopes.end(), sc) == s.scopes.end())
        return refuse(400, "bad_request", fmt::format("scope '{}' is not offered by the customer", sc));
    g.scopes = *scopes;
  }
  if (access_types) g.access_types = *access_types;
  if (expires_at) {
    if (*expires_at <= now) return refuse(400, "bad_request", "the grant would expire at once; revoke it instead");
    g.expires_at = *expires_at;
  }
  return g;
}

std::vector<channel_serial> session_registry::commit_change_grant(session& s, const grant& changed) {
  std::vector<channel_serial> out;
  for (auto& g : s.grants)
    if (g.id == changed.id) g = changed;
  for (auto& [id, c] : s.channels)
    if (c.grant_id == changed.id && !covers(changed, c.scope, c.access_type)) out.push_back(id);
  return out;
}

std::vector<channel_serial> session_registry::commit_revoke(session& s, grant& g) {
  g.revoked = true;
  std::vector<channel_serial> out;
  for (auto& [id, c] : s.channels)
    if (c.grant_id == g.id) out.push_back(id);
  return out;
}

std::optional<refusal> session_registry::check_transfer(const session& s, const std::string& owner,
                                                        const std::string& to, role to_role) const {
  if (auto r = check_owner(s, owner)) return r;
  if (to == owner) return refuse(400, "bad_request", "the session is yours already");
  if (to_role != role::representative)
    return refuse(403, "forbidden", "ownership can be handed only to another representative");
  return std::nullopt;
}

std::vector<channel_serial> session_registry::commit_transfer(session& s, const std::string& to) {
  std::vector<channel_serial> out;
  for (auto& [id, c] : s.channels)
    if (c.user == s.owner && c.grant_id.empty()) out.push_back(id);
  s.owner = to;
  return out;
}

std::vector<channel_serial> session_registry::end(session& s, std::string reason, micros now) {
  std::vector<channel_serial> out;
  for (auto& [id, c] : s.channels) out.push_back(id);
  unindex(s);
  s.state = session_state::ended;
  s.ended_at = now;
  s.end_reason = std::move(reason);
  for (auto& g : s.grants) g.revoked = true;
  return out;
}

std::optional<refusal> session_registry::check_channel(const session& s, const std::string& user,
                                                       const std::string& scope,
                                                       const std::string& access_type, micros now) const {
  if (s.state != session_state::active)
    return refuse(409, s.state == session_state::ended ? "ended" : "not_attached",
                  s.state == session_state::ended ? "the session has ended" : "nobody has attached yet");
  if (std::find(s.scopes.begin(), s.scopes.end(), scope) == s.scopes.end())
    return refuse(400, "bad_request", fmt::format("scope '{}' is not offered by the customer", scope));
  if (s.channels.size() >= tunnel::kMaxChannelsPerSession) return refuse(409, "conflict", "too many open channels in this session");
  if (user == s.owner) return std::nullopt;
  bool any = false;
  for (auto& g : s.grants) {
    if (g.user != user || !live(g, now)) continue;
    any = true;
    if (covers(g, scope, access_type)) return std::nullopt;
  }
  if (any)
    return refuse(403, "outside_grant",
                  fmt::format("your grant does not cover scope '{}' with access type '{}'", scope, access_type));
  return refuse(403, "no_grant", "you hold no grant on this session");
}

void session_registry::commit_channel(session& s, channel_info c) {
  if (c.user != s.owner) {
    for (auto& g : s.grants)
      if (g.user == c.user && !g.revoked && covers(g, c.scope, c.access_type)) c.grant_id = g.id;
  }
  s.channels[c.serial] = std::move(c);
}

std::optional<channel_info> session_registry::close_channel(session& s, channel_serial serial) {
  auto it = s.channels.find(serial);
  if (it == s.channels.end()) return std::nullopt;
  auto c = std::move(it->second);
  s.channels.erase(it);
  return c;
}

std::vector<std::pair<std::string, std::string>> session_registry::lapsed_grants(micros now) const {
  std::vector<std::pair<std::string, std::string>> out;
  for (auto& [id, s] : sessions_)
    for (auto& g : s.grants)
      if (!g.revoked && g.expires_at != 0 && g.expires_at <= now && s.state == session_state::active)
        out.emplace_back(id, g.id);
  return out;
}

std::vector<std::string> session_registry::prune(micros now, micros keep, std::size_t max_ended,
                                                const std::set<std::string>& pinned) {
  std::vector<std::pair<micros, std::string>> ended;
  for (auto& [id, s] : sessions_)
    if (s.state == session_state::ended && !pinned.count(id)) ended.emplace_back(s.ended_at, id);
  std::sort(ended.begin(), ended.end());
  std::size_t excess = ended.size() > max_ended ? ended.size() - max_ended : 0;
  std::vector<std::string> gone;
  for (std::size_t i = 0; i < ended.size(); ++i)
    if (i < excess || now - ended[i].first > keep) {
      sessions_.erase(ended[i].second);
      gone.push_back(std::move(ended[i].second));
    }
  return gone;
}

}  // namespace rsgate::gateway
