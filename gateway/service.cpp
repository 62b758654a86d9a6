// See service.hpp. Every handler follows one pattern: validate the input (400), identify the
// caller (401/403), decide under the lock (registry check_*, which also reserves), journal
// without the lock, then apply (commit_*) and answer — or release and answer 503 when the
// journal could not record it. Refusals are journaled too, as outcome "denied".
#include "gateway/service.hpp"

#include <fmt/format.h>
#include <sodium.h>

#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <boost/json/value.hpp>

#include "auth/formats.hpp"
#include "auth/password.hpp"
#include "auth/session_key.hpp"
#include "core/encoding.hpp"
#include "core/timefmt.hpp"
#include "gateway/tunnel/messages.hpp"
#include "journal/tool/format.hpp"

namespace json = boost::json;

namespace rsgate::gateway {
namespace {

constexpr micros kSecond = 1'000'000;
constexpr micros kWebSessionLife = 8 * 3600 * kSecond;
constexpr micros kWebSessionIdle = 30 * 60 * kSecond;
constexpr micros kTicketLife = 60 * kSecond;
constexpr std::size_t kMaxWebSessions = 10'000;
constexpr std::size_t kMaxTickets = 10'000;
constexpr std::string_view kCookie = "rsgate_session";
constexpr micros kReconnectGrace = tunnel::kReconnectGraceSeconds * kSecond;

http_response ok_json(int status, const json::value& v) {
  http_response r;
  r.status = status;
  r.body = json::serialize(v);
  return r;
}

http_response from_refusal(const refusal& r) { return json_error(r.status, r.code, r.message); }

// The session an entry is about: its id, PMR and machine.
void about(journal::entry& e, const session& s) {
  e.session_id = s.id;
  e.pmr = s.pmr;
  e.machine = s.machine;
}

std::string random_token() {
  unsigned char b[32];
  randombytes_buf(b, sizeof b);
  char out[sodium_base64_ENCODED_LEN(32, sodium_base64_VARIANT_URLSAFE_NO_PADDING)];
  sodium_bin2base64(out, sizeof out, b, sizeof b, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
  return out;
}

std::vector<std::string> split_path(std::string_view path) {
  std::vector<std::string> out;
  auto q = path.find('?');
  if (q != std::string_view::npos) path = path.substr(0, q);
  std::size_t pos = 0;
  while (pos < path.size()) {
    if (path[pos] == '/') {
      ++pos;
      continue;
    }
    auto next = path.find('/', pos);
    out.emplace_back(path.substr(pos, next == std::string_view::npos ? std::string_view::npos : next - pos));
    if (next == std::string_view::npos) break;
    pos = next;
  }
  return out;
}

std::optional<std::string> percent_decode(std::string_view s) {
  std::string out;
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '%') {
      if (i + 2 >= s.size()) return std::nullopt;
      auto v = from_hex(s.substr(i + 1, 2));
      if (!v) return std::nullopt;
      out.push_back(static_cast<char>((*v)[0]));
      i += 2;
    } else if (s[i] == '+') {
      out.push_back(' ');
    } else {
      out.push_back(s[i]);
    }
  }
  return out;
}

// The value of ?name=... in the target (decoded), or nullopt.
std::optional<std::string> query_param(std::string_view target, std::string_view name) {
  auto q = target.find('?');
  if (q == std::string_view::npos) return std::nullopt;
  auto rest = target.substr(q + 1);
  while (!rest.empty()) {
    auto amp = rest.find('&');
    auto pair = rest.substr(0, amp);
    auto eq = pair.find('=');
    if (pair.substr(0, eq) == name) return percent_decode(eq == std::string_view::npos ? "" : pair.substr(eq + 1));
    if (amp == std::string_view::npos) break;
    rest = rest.substr(amp + 1);
  }
  return std::nullopt;
}

struct bad_input : std::runtime_error {
  using std::runtime_error::runtime_error;
};

json::object body_object(const http_request& req) {
  boost::system::error_code ec;
  json::parse_options opt;
  opt.max_depth = 8;
  auto v = json::parse(req.body, ec, {}, opt);
  if (ec || !v.is_object()) throw bad_input("the body must be a JSON object");
  return v.as_object();
}

std::string str_field(const json::object& o, std::string_view key, bool required, std::size_t max = 256) {
  auto* v = o.if_contains(key);
  if (!v) {
    if (required) throw bad_input(fmt::format("\"{}\" is required", key));
    return {};
  }
  if (!v->is_string() || v->as_string().size() > max)
    throw bad_input(fmt::format("\"{}\" must be a string of at most {} characters", key, max));
  return std::string(v->as_string());
}

std::set<std::string> str_set(const json::object& o, std::string_view key, std::size_t max_items) {
  std::set<std::string> out;
  auto* v = o.if_contains(key);
  if (!v) return out;
  if (!v->is_array() || v->as_array().size() > max_items)
    throw bad_input(fmt::format("\"{}\" must be an array of at most {} strings", key, max_items));
  for (auto& x : v->as_array()) {
    if (!x.is_string() || x.as_string().size() > 64) throw bad_input(fmt::format("\"{}\" must hold strings", key));
    out.emplace(x.as_string());
  }
  return out;
}

json::object session_json(const session& s) {
  json::object o;
  o["id"] = s.id;
  o["machine"] = s.machine;
  o["state"] = to_string(s.state);
  json::array scopes;
  for (auto& sc : s.scopes) scopes.emplace_back(sc);
  o["scopes"] = std::move(scopes);
  o["owner"] = s.owner;
  o["pmr"] = s.pmr;
  json::array pmrs;
  for (auto& p : s.pmrs) pmrs.emplace_back(p);
  o["pmrs"] = std::move(pmrs);
  json::array grants;
  for (auto& g : s.grants) {
    json::object go;
    go["id"] = g.id;
    go["user"] = g.user;
    json::array gs, ga;
    for (auto& x : g.scopes) gs.emplace_back(x);
    for (auto& x : g.access_types) ga.emplace_back(x);
    go["scopes"] = std::move(gs);
    go["access_types"] = std::move(ga);
    go["expires_at"] = g.expires_at ? json::value(format_rfc3339(g.expires_at)) : json::value(nullptr);
    go["granted_by"] = g.granted_by;
    go["granted_at"] = format_rfc3339(g.granted_at);
    go["revoked"] = g.revoked;
    grants.emplace_back(std::move(go));
  }
  o["grants"] = std::move(grants);
  json::array chans;
  for (auto& [id, c] : s.channels) {
    chans.emplace_back(json::object{{"id", c.id}, {"user", c.user}, {"scope", c.scope},
                                    {"access_type", c.access_type}, {"opened_at", format_rfc3339(c.opened_at)},
                                    {"bytes_to_agent", c.bytes_to_agent}, {"bytes_from_agent", c.bytes_from_agent}});
  }
  o["channels"] = std::move(chans);
  o["created_at"] = format_rfc3339(s.created_at);
  o["ended_at"] = s.ended_at ? json::value(format_rfc3339(s.ended_at)) : json::value(nullptr);
  o["end_reason"] = s.end_reason;
  return o;
}

// "203.0.113.7:51234" -> "203.0.113.7": limits count per address, not per connection.
std::string address_of(const std::string& remote) {
  auto colon = remote.rfind(':');
  return colon == std::string::npos ? remote : remote.substr(0, colon);
}

std::string cookie_value(const http_request& req) {
  auto c = req.header("Cookie");
  std::string_view v = c;
  while (!v.empty()) {
    auto semi = v.find(';');
    auto part = v.substr(0, semi);
    while (!part.empty() && part.front() == ' ') part.remove_prefix(1);
    if (part.starts_with(kCookie) && part.size() > kCookie.size() && part[kCookie.size()] == '=')
      return std::string(part.substr(kCookie.size() + 1));
    if (semi == std::string_view::npos) break;
    v = v.substr(semi + 1);
  }
  return {};
}

}  // namespace

service::service(journal::writer& journal, const data_layout& layout, const clock& clk)
    : journal_(journal),
      layout_(layout),
      clock_(clk),
      hmac_(journal::hmac_key::load(layout.hmac_key())),
      state_(layout.state_db()),
      login_user_limiter_({5, 15 * 60 * kSecond, 15 * 60 * kSecond, 100'000}),
      login_source_limiter_({20, 15 * 60 * kSecond, 15 * 60 * kSecond, 100'000}) {}

std::string service::new_session_id() {
  // Date for people, 40 random bits so ids never repeat across restarts or gateways.
  return fmt::format("S-{}-{}", format_rfc3339(clock_.now()).substr(0, 10), auth::random_secret(40));
}

std::string service::open_session(const std::string& machine, std::vector<std::string> scopes) {
  std::lock_guard lock(mu_);
  auto id = new_session_id();
  return registry_.open_for_machine(id, machine, std::move(scopes), clock_.now()).id;
}

std::optional<tunnel::machine_record> service::machine_record_for(const std::string& machine) {
  std::lock_guard lock(mu_);
  auto row = state_.find_machine(machine);
  if (!row) return std::nullopt;
  auto v = auth::scram::verifier::decode(row->verifier);
  if (!v) return std::nullopt;
  tunnel::machine_record r;
  r.machine = row->machine;
  r.verifier = *v;
  r.revoked = row->revoked;
  r.md5_enabled = row->md5_enabled;
  if (row->md5_enabled) {
    auto key = master_key::load_or_create(layout_.keys() / "master.key");
    auto secret = key.open(row->md5_secret_sealed);
    if (!secret) r.md5_enabled = false;  // unreadable: refuse MD5 rather than guess
    else r.md5_secret = *secret;
  }
  return r;
}

std::string service::tunnel_authenticated(const std::string& machine, std::vector<std::string> scopes,
                                          std::shared_ptr<tunnel_link> link) {
  std::lock_guard lock(mu_);
  auto now = clock_.now();
  std::string id;
  if (auto* live_s = registry_.find_live_for_machine(machine)) id = live_s->id;
  else id = new_session_id();
  auto& s = registry_.open_for_machine(id, machine, std::move(scopes), now);
  links_[s.id] = link;
  if (s.state == session_state::active) {
    // A reconnect within the grace period: tell the agent who owns its session.
    tunnel::notice n;
    n.event = "attach";
    n.actor = s.owner;
    n.pmr = s.pmr;
    notify(s.id, n);
  }
  return s.id;
}

void service::key_offered(const std::string& session_id, std::string_view display_key, micros lifetime,
                          const std::string& source, std::function<void(std::optional<micros>)> done) {
  auto canonical = auth::normalize_session_key(display_key);
  if (!canonical) return done(std::nullopt);
  auto hmac = hmac_.hash_of(*canonical);
  journal::entry e;
  e.kind = "session.key_issued";
  e.actor = "customer";
  e.source = source;
  e.session_id = session_id;
  e.secret_hmac = hmac;
  {
    std::lock_guard lock(mu_);
    auto* s = registry_.find(session_id);
    if (!s || s->state == session_state::ended) return done(std::nullopt);
    e.machine = s->machine;
  }
  e.detail = json::serialize(json::object{{"expires_in_seconds", lifetime / kSecond}});
  journal_.append(std::move(e), [this, session_id, hmac, lifetime, done](const journal::append_result& r) {
    if (!r.ok()) return done(std::nullopt);
    std::lock_guard lock(mu_);
    auto* s = registry_.find(session_id);
    if (!s) return done(std::nullopt);
    registry_.set_key(*s, hmac, r.ts + lifetime);
    done(r.ts + lifetime);
  });
}

void service::customer_stopped(const std::string& session_id, const std::string& source, std::function<void()> done) {
  journal::entry e;
  e.kind = "session.end";
  e.actor = "customer";
  e.source = source;
  e.session_id = session_id;
  {
    // Ending removes access: at once, journaled as soon as possible.
    std::lock_guard lock(mu_);
    auto* s = registry_.find(session_id);
    if (!s || s->state == session_state::ended) return done();
    (void)registry_.end(*s, "customer", clock_.now());
    about(e, *s);
    links_.erase(session_id);
  }
  e.detail = R"({"reason":"customer"})";
  journal_.append(std::move(e), [done](const journal::append_result&) { done(); });
}

void service::tunnel_closed(const std::string& session_id, const tunnel_link* link) {
  std::lock_guard lock(mu_);
  auto it = links_.find(session_id);
  if (it != links_.end()) {
    auto l = it->second.lock();
    if (l && l.get() != link) return;  // a newer tunnel serves the session already
    links_.erase(it);
  }
  if (auto* s = registry_.find(session_id); s && s->state != session_state::ended) {
    s->tunnel_up = false;
    s->tunnel_lost_at = clock_.now();
    std::vector<std::uint32_t> open;
    for (auto& [cid, c] : s->channels) open.push_back(cid);
    for (auto cid : open) (void)registry_.close_channel(*s, cid);  // they went with the tunnel
  }
}

void service::redeem_channel(const std::string& token, const std::string& source,
                             std::function<void(std::variant<channel_grant, http_response>)> done) {
  auto now = clock_.now();
  channel_grant g;
  journal::entry e;
  {
    std::lock_guard lock(mu_);
    auto it = tickets_.find(token_hash(token));
    if (it == tickets_.end() || it->second.expires_at <= now) {
      if (it != tickets_.end()) tickets_.erase(it);
      return done(json_error(401, "unauthorized", "unknown or expired channel token"));
    }
    auto t = it->second;
    tickets_.erase(it);  // one use
    auto* s = registry_.find(t.session_id);
    if (!s) return done(json_error(404, "not_found", "no such session"));
    e.kind = "channel.open";
    e.actor = t.user;
    e.source = source;
    about(e, *s);
    e.scope = t.scope;
    e.access_type = t.access_type;
    auto refused = [done](http_response a) { done(std::move(a)); };
    // The grant may have been revoked, or the session ended, since the token was issued.
    if (auto r = registry_.check_channel(*s, t.user, t.scope, t.access_type, now)) return deny(std::move(e), *r, refused);
    auto l = links_.find(s->id);
    if (l == links_.end() || !l->second.lock()) {
      // Between a dropped tunnel and its reconnection (or the end of the grace period): a
      // refusal like the others, so it is journaled like them.
      constexpr std::string_view why = "the customer's tunnel is not connected";
      return deny(std::move(e), "tunnel_down", why, json_error(409, "conflict", why), refused);
    }
    g = {s->id, t.user, t.scope, t.access_type, l->second.lock()};
  }
  journal_then(std::move(e), done, [g, done](const journal::append_result& r) {
    if (r.ok()) done(g);
  });
}

void service::channel_opened(const std::shared_ptr<channel_link>& c) {
  std::lock_guard lock(mu_);
  auto* s = registry_.find(c->session_id);
  if (!s) return;
  // The grant may have been revoked (or the session ended) while the agent was connecting:
  // such a channel is closed at once instead of being registered.
  if (auto r = registry_.check_channel(*s, c->user, c->scope, c->access_type, clock_.now())) {
    close_channels(s->id, {c->id}, "access revoked");
    return;
  }
  registry_.commit_channel(*s, {c->id, c->user, "", c->scope, c->access_type, c->opened_at});
}

void service::channel_closed(const std::shared_ptr<channel_link>& c, const std::string& source) {
  journal::entry e;
  e.kind = "channel.close";
  e.actor = c->user;
  e.source = source;
  e.session_id = c->session_id;
  e.scope = c->scope;
  e.access_type = c->access_type;
  json::object d;
  {
    std::lock_guard cl(c->mu);
    d = json::object{{"channel", c->id}, {"bytes_to_agent", c->bytes_to_agent},
                     {"bytes_from_agent", c->bytes_from_agent},
                     {"duration_ms", (clock_.now() - c->opened_at) / 1000}, {"reason", c->reason}};
  }
  {
    std::lock_guard lock(mu_);
    if (auto* s = registry_.find(c->session_id)) {
      (void)registry_.close_channel(*s, c->id);
      about(e, *s);
    }
  }
  e.detail = json::serialize(d);
  journal_.append(std::move(e), [](const journal::append_result&) {});
}

void service::housekeeping() {
  auto now = clock_.now();
  std::vector<journal::entry> entries;
  {
    std::lock_guard lock(mu_);
    for (auto* s : registry_.live_sessions()) {
      auto row = state_.find_machine(s->machine);
      std::string reason;
      if (!row || row->revoked) reason = "machine revoked";
      else if (!s->tunnel_up && now - s->tunnel_lost_at >= kReconnectGrace) reason = "tunnel lost";
      else if (s->state == session_state::active) {
        // `rsgate user disable` runs in another process: a disabled owner's session ends,
        // a disabled grantee's grants are revoked (their channels close).
        auto owner = lookup_user(s->owner);
        if (!owner || owner->disabled) reason = "owner disabled";
        for (auto& g : s->grants) {
          if (g.revoked) continue;
          auto grantee = lookup_user(g.user);
          if (grantee && !grantee->disabled) continue;
          close_channels(s->id, registry_.commit_revoke(*s, g), "account disabled");
          journal::entry e;
          e.kind = "session.revoke";
          e.actor = "gateway";
          about(e, *s);
          e.detail = json::serialize(json::object{{"grant", g.id}, {"user", g.user}, {"reason", "account disabled"}});
          entries.push_back(std::move(e));
        }
      }
      if (reason.empty()) continue;
      (void)registry_.end(*s, reason, now);
      if (auto it = links_.find(s->id); it != links_.end()) {
        if (auto l = it->second.lock())
          l->end_session(reason == "machine revoked" ? "this machine's enrollment was revoked"
                                                     : "the session ended (" + reason + ")");
        links_.erase(it);
      }
      journal::entry e;
      e.kind = "session.end";
      e.actor = "gateway";
      about(e, *s);
      e.detail = json::serialize(json::object{{"reason", reason}});
      entries.push_back(std::move(e));
    }
    for (auto [s, g] : registry_.expire_grants(now)) {
      std::vector<std::uint32_t> lapsing;
      for (auto& [cid, c] : s->channels)
        if (c.grant_id == g->id) lapsing.push_back(cid);
      close_channels(s->id, lapsing, "the grant expired");
      tunnel::notice n;
      n.event = "revoke";
      n.actor = "gateway";
      n.user = g->user;
      n.reason = "the grant expired";
      notify(s->id, n);
      journal::entry e;
      e.kind = "session.revoke";
      e.actor = "gateway";
      about(e, *s);
      e.detail = json::serialize(json::object{{"grant", g->id}, {"user", g->user}, {"reason", "expired"}});
      entries.push_back(std::move(e));
    }
  }
  // Access was removed already (fail closed); the journal records it as soon as it can.
  for (auto& e : entries) journal_.append(std::move(e), [](const journal::append_result&) {});
}

void service::close_channels(const std::string& session_id, const std::vector<std::uint32_t>& ids,
                             const std::string& reason) {
  auto it = links_.find(session_id);
  if (it == links_.end()) return;
  if (auto l = it->second.lock())
    for (auto id : ids) l->channel_close(id, reason);
}

void service::notify(const std::string& session_id, tunnel::notice n) {
  auto it = links_.find(session_id);
  if (it == links_.end()) return;
  if (auto l = it->second.lock()) {
    n.ts = format_rfc3339(clock_.now());
    l->notify(n);
  }
}

void service::set_session_key(const std::string& session_id, std::string_view display_key, micros expires_at) {
  auto canonical = auth::normalize_session_key(display_key);
  if (!canonical) throw std::invalid_argument("malformed session key");
  std::lock_guard lock(mu_);
  if (auto* s = registry_.find(session_id)) registry_.set_key(*s, hmac_.hash_of(*canonical), expires_at);
}

journal::entry service::base_entry(std::string kind, const principal& p, const http_request& req) const {
  journal::entry e;
  e.kind = std::move(kind);
  e.actor = p.user;
  e.source = req.remote;
  return e;
}

void service::journal_then(journal::entry e, api::reply done,
                           std::function<void(const journal::append_result&)> then) {
  journal_.append(std::move(e), [done, then](const journal::append_result& r) {
    if (!r.ok()) {
      then(r);  // lets the caller release what it reserved
      done(json_error(503, "journal_unavailable", "the journal cannot record this, so it is refused"));
      return;
    }
    then(r);
  });
}

std::optional<user_row> service::lookup_user(const std::string& name) { return state_.find_user(name); }

void service::deny(journal::entry e, const refusal& r, api::reply done) {
  deny(std::move(e), r.code, r.message, from_refusal(r), std::move(done));
}

void service::deny(journal::entry e, std::string_view code, std::string_view reason, http_response answer,
                   api::reply done) {
  e.result = journal::outcome::denied;
  e.detail = json::serialize(json::object{{"code", code}, {"reason", reason}});
  journal_.append(std::move(e), [done, answer](const journal::append_result&) { done(answer); });
}

std::optional<principal> service::authenticate(const http_request& req, bool state_changing,
                                               http_response& error) {
  auto now = clock_.now();
  auto bearer = req.header("Authorization");
  if (bearer.starts_with("Bearer ")) {
    auto tok = bearer.substr(7);
    auto row = state_.find_token(token_hash(tok));
    if (!row || row->revoked || (row->expires_at && row->expires_at <= now)) {
      error = json_error(401, "unauthorized", "the bearer token is unknown, revoked or expired");
      return std::nullopt;
    }
    auto u = lookup_user(row->user);
    if (!u || u->disabled) {
      error = json_error(401, "unauthorized", "the token's account is disabled");
      return std::nullopt;
    }
    if (u->must_change) {
      error = json_error(403, "password_change_required",
                         "the account's one-time password must be changed first (POST /api/v1/login)");
      return std::nullopt;
    }
    return principal{u->name, parse_role(u->role).value_or(role::developer), false};
  }
  auto cookie = cookie_value(req);
  if (!cookie.empty()) {
    auto it = web_sessions_.find(token_hash(cookie));
    if (it == web_sessions_.end() || it->second.expires_at <= now || it->second.idle_until <= now) {
      if (it != web_sessions_.end()) web_sessions_.erase(it);
      error = json_error(401, "unauthorized", "the login session has expired; log in again");
      return std::nullopt;
    }
    if (state_changing && !auth::equal_constant_time(req.header("X-CSRF-Token"), it->second.csrf)) {
      error = json_error(403, "csrf", "missing or wrong X-CSRF-Token header");
      return std::nullopt;
    }
    auto u = lookup_user(it->second.user);
    if (!u || u->disabled) {
      web_sessions_.erase(it);
      error = json_error(401, "unauthorized", "the account is disabled");
      return std::nullopt;
    }
    it->second.idle_until = now + kWebSessionIdle;
    return principal{it->second.user, it->second.user_role, true};
  }
  error = json_error(401, "unauthorized", "log in (POST /api/v1/login) or send Authorization: Bearer <token>");
  return std::nullopt;
}

void service::handle(const http_request& req, std::string_view path, api::reply done) {
  try {
    auto seg = split_path(path);
    const auto& m = req.method;
    if (seg.size() == 1 && seg[0] == "login" && m == "POST") return login(req, done);
    if (seg.size() == 1 && seg[0] == "logout" && m == "POST") return logout(req, done);
    const bool changing = m != "GET" && m != "HEAD";
    std::optional<principal> p;
    {
      http_response err;
      std::lock_guard lock(mu_);
      p = authenticate(req, changing, err);
      if (!p) return done(err);
    }
    if (seg.size() == 1 && seg[0] == "sessions" && m == "GET") return list_sessions(*p, req, done);
    if (seg.size() == 2 && seg[0] == "sessions" && seg[1] == "attach" && m == "POST") return attach(*p, req, done);
    if (seg.size() == 2 && seg[0] == "sessions" && m == "GET") return get_session(*p, seg[1], req, done);
    if (seg.size() == 2 && seg[0] == "sessions" && m == "DELETE") return end_session(*p, seg[1], req, done);
    if (seg.size() == 3 && seg[0] == "sessions" && seg[2] == "grants" && m == "POST") return add_grant(*p, seg[1], req, done);
    if (seg.size() == 4 && seg[0] == "sessions" && seg[2] == "grants" && m == "DELETE")
      return revoke_grant(*p, seg[1], seg[3], req, done);
    if (seg.size() == 3 && seg[0] == "sessions" && seg[2] == "transfer" && m == "POST") return transfer(*p, seg[1], req, done);
    if (seg.size() == 3 && seg[0] == "sessions" && seg[2] == "channels" && m == "POST")
      return open_channel(*p, seg[1], req, done);
    if (seg.size() == 3 && seg[0] == "pmrs" && seg[2] == "sessions" && m == "GET") {
      auto pmr = percent_decode(seg[1]);
      if (!pmr) throw bad_input("malformed PMR in the path");
      return pmr_sessions(*p, *pmr, req, done);
    }
    if (seg.size() == 1 && seg[0] == "journal" && m == "GET") return journal_query(*p, req, done);
    if (seg.size() == 2 && seg[0] == "journal" && seg[1] == "verify" && m == "GET") return journal_verify(*p, req, done);
    done(json_error(404, "not_found", "no such endpoint"));
  } catch (const bad_input& e) {
    done(json_error(400, "bad_request", e.what()));
  }
}

void service::login(const http_request& req, api::reply done) {
  auto body = body_object(req);
  auto name = str_field(body, "user", true, 64);
  auto password = str_field(body, "password", true, 1024);
  auto new_password = str_field(body, "new_password", false, 1024);
  auto now = clock_.now();
  principal who{name, role::developer, false};
  const auto address = address_of(req.remote);
  std::optional<user_row> u;
  bool lockout = false;
  std::string why;
  {
    std::lock_guard lock(mu_);
    if (!login_user_limiter_.allowed(name, now) || !login_source_limiter_.allowed(address, now))
      why = "rate_limited";
    else
      u = auth::is_valid_user_name(name) ? lookup_user(name) : std::nullopt;
  }
  if (why.empty()) {
    // Argon2id takes ~0.1 s: never under the lock. An unknown user is checked against a
    // fixed hash so timing does not tell which accounts exist.
    static const std::string dummy = auth::hash_password("dummy password for timing");
    bool ok = auth::verify_password(u ? u->password_hash : dummy, password) && u && !u->disabled;
    if (!ok) {
      why = "bad_credentials";
      std::lock_guard lock(mu_);
      lockout = login_user_limiter_.record_failure(name, now);
      login_source_limiter_.record_failure(address, now);
    } else if (u->must_change && new_password.empty()) {
      why = "password_change_required";
    } else if (!new_password.empty() && (new_password.size() < 12 || new_password == password)) {
      why = "weak_new_password";
    }
  }
  if (!why.empty()) {
    auto e = base_entry("user.login", who, req);
    e.result = journal::outcome::denied;
    e.detail = json::serialize(json::object{{"reason", why}});
    auto status = why == "rate_limited" ? 429 : why == "bad_credentials" ? 401 : why == "password_change_required" ? 403 : 400;
    std::string message = why == "rate_limited"                ? "too many failed logins; try again later"
                          : why == "bad_credentials"           ? "invalid user name or password"
                          : why == "password_change_required"  ? "this password must be changed: send new_password too"
                                                               : "the new password must be at least 12 characters and differ from the old";
    auto answer = json_error(status, why, message);
    journal_.append(std::move(e), [this, done, answer, lockout, name, req](const journal::append_result&) {
      if (lockout) {
        journal::entry l;
        l.kind = "user.lockout";
        l.actor = name;
        l.source = req.remote;
        l.result = journal::outcome::denied;
        l.detail = R"({"reason":"too many failed logins"})";
        journal_.append(std::move(l), [](const journal::append_result&) {});
      }
      done(answer);
    });
    return;
  }
  who.user_role = parse_role(u->role).value_or(role::developer);
  auto cookie = random_token();
  auto csrf = random_token();
  auto e = base_entry("user.login", who, req);
  e.secret_hmac = hmac_.hash_of(cookie);
  e.detail = json::serialize(json::object{{"role", u->role}, {"password_changed", !new_password.empty()}});
  std::string new_hash = new_password.empty() ? "" : auth::hash_password(new_password);
  journal_then(std::move(e), done, [this, done, cookie, csrf, who, new_hash, now](const journal::append_result& r) {
    if (!r.ok()) return;
    json::object o{{"user", who.user}, {"role", to_string(who.user_role)}, {"csrf_token", csrf},
                   {"expires_at", format_rfc3339(now + kWebSessionLife)}};
    {
      std::lock_guard lock(mu_);
      if (!new_hash.empty()) state_.set_password(who.user, new_hash, false);
      if (web_sessions_.size() >= kMaxWebSessions) {
        for (auto it = web_sessions_.begin(); it != web_sessions_.end();)
          it = it->second.idle_until <= now ? web_sessions_.erase(it) : std::next(it);
      }
      if (web_sessions_.size() >= kMaxWebSessions) {
        done(json_error(503, "busy", "too many login sessions"));
        return;
      }
      web_sessions_[token_hash(cookie)] = {who.user, who.user_role, csrf, now + kWebSessionLife, now + kWebSessionIdle};
      login_user_limiter_.record_success(who.user);
    }
    auto resp = ok_json(200, o);
    resp.headers.emplace_back("Set-Cookie", fmt::format("{}={}; HttpOnly; Secure; SameSite=Strict; Path=/; Max-Age={}",
                                                        kCookie, cookie, kWebSessionLife / kSecond));
    done(std::move(resp));
  });
}

void service::logout(const http_request& req, api::reply done) {
  auto cookie = cookie_value(req);
  std::string user;
  {
    std::lock_guard lock(mu_);
    auto it = web_sessions_.find(token_hash(cookie));
    if (it != web_sessions_.end()) {
      user = it->second.user;
      web_sessions_.erase(it);
    }
  }
  auto resp = ok_json(200, json::object{{"logged_out", !user.empty()}});
  resp.headers.emplace_back("Set-Cookie", fmt::format("{}=; HttpOnly; Secure; SameSite=Strict; Path=/; Max-Age=0", kCookie));
  if (user.empty()) return done(resp);
  auto e = base_entry("user.login", principal{user}, req);
  e.detail = R"({"action":"logout"})";
  journal_.append(std::move(e), [done, resp](const journal::append_result&) { done(resp); });
}

void service::list_sessions(const principal& p, const http_request& req, api::reply done) {
  auto state = query_param(req.target, "state");
  if (state && *state != "waiting" && *state != "active" && *state != "ended")
    throw bad_input("state must be waiting, active or ended");
  json::array out;
  std::lock_guard lock(mu_);
  for (auto* s : registry_.visible_to(p.user, clock_.now()))
    if (!state || to_string(s->state) == *state) out.emplace_back(session_json(*s));
  done(ok_json(200, json::object{{"sessions", std::move(out)}}));
}

void service::attach(const principal& p, const http_request& req, api::reply done) {
  auto body = body_object(req);
  auto key = str_field(body, "session_key", false, 64);
  auto machine = str_field(body, "machine", false, 32);
  auto pmr = str_field(body, "pmr", true, 32);
  if (key.empty() == machine.empty()) throw bad_input("give either \"session_key\" or \"machine\", not both");
  if (!auth::is_valid_pmr(pmr)) throw bad_input(std::string(auth::kPmrForm));
  attach_request a;
  a.user = p.user;
  a.user_role = p.user_role;
  a.source = address_of(req.remote);
  a.pmr = auth::normalize_pmr(pmr);
  if (!key.empty()) {
    auto canonical = auth::normalize_session_key(key);
    if (!canonical) throw bad_input("a session key looks like XXXX-XXXX-XXXX-C (12 symbols and a check symbol)");
    a.key_hmac = hmac_.hash_of(*canonical);
  } else {
    if (!auth::is_valid_machine(machine)) throw bad_input(std::string(auth::kMachineForm));
    a.machine = auth::normalize_machine(machine);
  }
  auto now = clock_.now();
  auto e = base_entry("session.attach", p, req);
  e.pmr = a.pmr;
  e.secret_hmac = a.key_hmac;
  std::variant<session*, refusal> v;
  {
    std::lock_guard lock(mu_);
    v = registry_.check_attach(a, now);
    if (auto* r = std::get_if<refusal>(&v)) {
      if (r->code == "bad_key" || r->code == "key_expired") registry_.record_bad_key(a, now);
    } else {
      auto* s = std::get<session*>(v);
      e.session_id = s->id;
      e.machine = s->machine;
    }
  }
  if (auto* r = std::get_if<refusal>(&v)) {
    e.result = journal::outcome::denied;
    e.machine = a.machine;
    if (r->code == "locked") {
      std::lock_guard lock(mu_);
      auto* locked = a.key_hmac.empty() ? registry_.find_live_for_machine(a.machine) : nullptr;
      if (locked) {
        tunnel::notice n;
        n.event = "attach_refused";
        n.actor = a.user;
        n.pmr = a.pmr;
        n.reason = "the session is locked";
        notify(locked->id, n);
      }
    }
    e.detail = json::serialize(json::object{{"code", r->code}, {"reason", r->message}, {"by", key.empty() ? "machine" : "key"}});
    auto answer = from_refusal(*r);
    journal_.append(std::move(e), [done, answer](const journal::append_result&) { done(answer); });
    return;
  }
  auto* s = std::get<session*>(v);
  e.detail = json::serialize(json::object{{"by", key.empty() ? "machine" : "key"}});
  journal_then(std::move(e), done, [this, s, a, done](const journal::append_result& r) {
    std::lock_guard lock(mu_);
    if (!r.ok()) {
      registry_.release_attach(*s);
      return;
    }
    registry_.commit_attach(*s, a, r.ts);
    tunnel::notice n;
    n.event = "attach";
    n.actor = a.user;
    n.pmr = a.pmr;
    notify(s->id, n);
    done(ok_json(201, session_json(*s)));
  });
}

void service::get_session(const principal& p, const std::string& id, const http_request& req, api::reply done) {
  json::object o;
  {
    std::lock_guard lock(mu_);
    auto* s = registry_.find(id);
    bool allowed = s && (s->owner == p.user || p.user_role == role::auditor);
    if (s && !allowed)
      for (auto& g : s->grants) allowed = allowed || g.user == p.user;
    if (!allowed) return done(json_error(404, "not_found", "no such session visible to you"));
    o = session_json(*s);
  }
  // The timeline comes from the journal, the record of what happened.
  journal::reader rd({layout_.journal_db()});
  journal::filter f;
  f.session_id = id;
  f.limit = 1000;
  const bool audit = [&] {
    std::lock_guard lock(mu_);
    auto* s = registry_.find(id);
    return p.user_role == role::auditor && s && s->owner != p.user;
  }();
  json::array timeline;
  for (auto& e : rd.query(f).entries)
    timeline.emplace_back(json::object{{"seq", e.seq}, {"ts", format_rfc3339(e.ts)}, {"kind", e.kind},
                                       {"actor", e.actor}, {"outcome", journal::to_string(e.result)}});
  o["timeline"] = std::move(timeline);
  auto answer = ok_json(200, o);
  if (!audit) return done(answer);
  // An auditor reading someone's session is an audit query (SPEC §5): journaled first.
  auto e = base_entry("audit.query", p, req);
  e.session_id = id;
  e.detail = R"({"endpoint":"sessions"})";
  journal_then(std::move(e), done, [answer, done](const journal::append_result& r) {
    if (r.ok()) done(answer);
  });
}

void service::add_grant(const principal& p, const std::string& id, const http_request& req, api::reply done) {
  auto body = body_object(req);
  auto grantee = str_field(body, "user", true, 64);
  auto scopes = str_set(body, "scopes", 64);
  auto types = str_set(body, "access_types", 16);
  for (auto& t : types)
    if (!tunnel::is_access_type(t)) throw bad_input(fmt::format("unknown access type '{}'", t));
  micros expires_at = 0;
  auto now = clock_.now();
  if (auto* v = body.if_contains("expires_in")) {
    std::optional<micros> d;
    if (v->is_int64() && v->as_int64() > 0 && v->as_int64() <= 7 * 86400) d = v->as_int64() * kSecond;
    else if (v->is_string()) d = parse_duration(v->as_string());
    if (!d || *d > 7 * 86400 * kSecond) throw bad_input("\"expires_in\" must be seconds or a duration like 2h, at most 7d");
    expires_at = now + *d;
  }
  auto e = base_entry("session.grant", p, req);
  e.session_id = id;
  std::variant<grant, refusal> v;
  {
    std::lock_guard lock(mu_);
    auto* s = registry_.find(id);
    if (!s) return done(json_error(404, "not_found", "no such session"));
    auto u = lookup_user(grantee);
    if (!u || u->disabled) return done(json_error(404, "not_found", fmt::format("no active user '{}'", grantee)));
    v = registry_.check_grant(*s, p.user, grantee, parse_role(u->role).value_or(role::admin), scopes, types, expires_at, now);
    about(e, *s);
  }
  if (auto* r = std::get_if<refusal>(&v)) {
    e.result = journal::outcome::denied;
    e.detail = json::serialize(json::object{{"user", grantee}, {"code", r->code}, {"reason", r->message}});
    auto answer = from_refusal(*r);
    journal_.append(std::move(e), [done, answer](const journal::append_result&) { done(answer); });
    return;
  }
  auto g = std::get<grant>(v);
  json::array js, jt;
  for (auto& x : g.scopes) js.emplace_back(x);
  for (auto& x : g.access_types) jt.emplace_back(x);
  e.detail = json::serialize(json::object{{"grant", g.id}, {"user", g.user}, {"scopes", js}, {"access_types", jt},
                                          {"expires_at", g.expires_at ? json::value(format_rfc3339(g.expires_at)) : json::value(nullptr)}});
  journal_then(std::move(e), done, [this, id, g, done](const journal::append_result& r) {
    if (!r.ok()) return;
    std::lock_guard lock(mu_);
    auto* s = registry_.find(id);
    // Re-check under the lock: the owner may have changed while the journal wrote.
    if (!s || s->state != session_state::active) return done(json_error(409, "conflict", "the session changed meanwhile"));
    registry_.commit_grant(*s, g);
    tunnel::notice n;
    n.event = "grant";
    n.actor = g.granted_by;
    n.user = g.user;
    std::string granted;
    for (auto& x : g.scopes) granted += (granted.empty() ? "" : ",") + x;
    n.scope = granted.substr(0, tunnel::kMaxNameBytes);
    notify(s->id, n);
    done(ok_json(201, session_json(*s)));
  });
}

void service::revoke_grant(const principal& p, const std::string& id, const std::string& gid,
                           const http_request& req, api::reply done) {
  auto e = base_entry("session.revoke", p, req);
  json::object answer;
  {
    // Revoking removes access: it takes effect at once, even if the journal cannot write
    // (fail closed), and the journal records it as soon as it can.
    std::lock_guard lock(mu_);
    auto* s = registry_.find(id);
    if (!s) return done(json_error(404, "not_found", "no such session"));
    about(e, *s);
    auto v = registry_.check_revoke(*s, p.user, gid);
    if (auto* r = std::get_if<refusal>(&v)) return deny(std::move(e), *r, done);
    auto* g = std::get<grant*>(v);
    json::array ch;
    auto closing = registry_.commit_revoke(*s, *g);
    for (auto c : closing) ch.emplace_back(c);
    close_channels(id, closing, "access revoked");
    about(e, *s);
    e.detail = json::serialize(json::object{{"grant", gid}, {"user", g->user}, {"closed_channels", std::move(ch)}});
    answer = session_json(*s);
    tunnel::notice n;
    n.event = "revoke";
    n.actor = p.user;
    n.user = g->user;
    notify(id, n);
  }
  journal_.append(std::move(e), [done, answer](const journal::append_result&) { done(ok_json(200, answer)); });
}

void service::transfer(const principal& p, const std::string& id, const http_request& req, api::reply done) {
  auto body = body_object(req);
  auto to = str_field(body, "user", true, 64);
  auto e = base_entry("session.transfer", p, req);
  {
    std::lock_guard lock(mu_);
    auto* s = registry_.find(id);
    if (!s) return done(json_error(404, "not_found", "no such session"));
    auto u = lookup_user(to);
    if (!u || u->disabled) return done(json_error(404, "not_found", fmt::format("no active user '{}'", to)));
    about(e, *s);
    if (auto r = registry_.check_transfer(*s, p.user, to, parse_role(u->role).value_or(role::admin)))
      return deny(std::move(e), *r, done);
  }
  e.detail = json::serialize(json::object{{"from", p.user}, {"to", to}});
  journal_then(std::move(e), done, [this, id, to, user = p.user, done](const journal::append_result& r) {
    if (!r.ok()) return;
    std::lock_guard lock(mu_);
    auto* s = registry_.find(id);
    if (!s || s->owner != user || s->state != session_state::active)
      return done(json_error(409, "conflict", "the session changed meanwhile"));
    close_channels(id, registry_.commit_transfer(*s, to), "ownership handed over");
    tunnel::notice n;
    n.event = "transfer";
    n.actor = user;
    n.user = to;
    notify(id, n);
    done(ok_json(200, session_json(*s)));
  });
}

void service::open_channel(const principal& p, const std::string& id, const http_request& req, api::reply done) {
  auto body = body_object(req);
  auto scope = str_field(body, "scope", true, 64);
  auto type = str_field(body, "access_type", true, 32);
  if (!tunnel::is_scope_name(scope)) throw bad_input("malformed scope name");
  if (!tunnel::is_access_type(type)) throw bad_input(fmt::format("unknown access type '{}'", type));
  auto now = clock_.now();
  std::optional<refusal> r;
  journal::entry e = base_entry("channel.open", p, req);
  {
    std::lock_guard lock(mu_);
    auto* s = registry_.find(id);
    if (!s) return done(json_error(404, "not_found", "no such session"));
    r = registry_.check_channel(*s, p.user, scope, type, now);
    about(e, *s);
    e.scope = scope;
    e.access_type = type;
    if (!r) {
      for (auto it = tickets_.begin(); it != tickets_.end();)
        it = it->second.expires_at <= now ? tickets_.erase(it) : std::next(it);
      if (tickets_.size() >= kMaxTickets) return done(json_error(429, "rate_limited", "too many pending channel tokens"));
    }
  }
  if (r) {
    e.result = journal::outcome::denied;
    e.detail = json::serialize(json::object{{"code", r->code}, {"reason", r->message}});
    auto answer = from_refusal(*r);
    journal_.append(std::move(e), [done, answer](const journal::append_result&) { done(answer); });
    return;
  }
  // The channel itself is journaled (channel.open) when its stream connects, before the
  // agent is asked to open it; the ticket only lets that stream find its session.
  auto token = random_token();
  {
    std::lock_guard lock(mu_);
    tickets_[token_hash(token)] = {id, p.user, scope, type, now + kTicketLife};
  }
  done(ok_json(201, json::object{{"token", token}, {"expires_in", kTicketLife / kSecond},
                                 {"stream", "/api/v1/channels/stream"}}));
}

void service::end_session(const principal& p, const std::string& id, const http_request& req, api::reply done) {
  auto e = base_entry("session.end", p, req);
  json::object answer;
  {
    std::lock_guard lock(mu_);
    auto* s = registry_.find(id);
    if (!s) return done(json_error(404, "not_found", "no such session"));
    about(e, *s);
    if (auto r = registry_.check_owner(*s, p.user)) return deny(std::move(e), *r, done);
    // Ending removes access: effective at once, journaled as soon as possible.
    (void)registry_.end(*s, "owner", clock_.now());
    answer = session_json(*s);
    auto it = links_.find(id);
    if (it != links_.end()) {
      if (auto l = it->second.lock()) l->end_session(fmt::format("ended by its owner, {}", p.user));
      links_.erase(it);
    }
  }
  e.detail = R"({"reason":"owner"})";
  journal_.append(std::move(e), [done, answer](const journal::append_result&) { done(ok_json(200, answer)); });
}

void service::pmr_sessions(const principal& p, const std::string& pmr_in, const http_request& req, api::reply done) {
  if (p.user_role != role::representative && p.user_role != role::auditor)
    return done(json_error(403, "forbidden", "PMR lookups are for representatives and auditors"));
  if (!auth::is_valid_pmr(pmr_in)) throw bad_input(std::string(auth::kPmrForm));
  auto pmr = auth::normalize_pmr(pmr_in);
  auto e = base_entry("audit.query", p, req);
  e.pmr = pmr;
  e.detail = json::serialize(json::object{{"endpoint", "pmrs"}});
  // Read first (on this I/O thread, not the journal writer's), release only once the query
  // itself is journaled.
  auto answer = [&] {
    journal::reader rd({layout_.journal_db()});
    journal::filter f;
    f.pmr = pmr;
    f.limit = journal::kMaxQueryLimit;
    std::vector<std::string> ids;
    json::array direct;
    for (auto& x : rd.query(f).entries) {
      if (x.kind == "audit.query") continue;
      if (!x.session_id.empty() && std::find(ids.begin(), ids.end(), x.session_id) == ids.end()) ids.push_back(x.session_id);
      if (x.session_id.empty()) direct.emplace_back(journal::to_json_object(x));
    }
    json::array sessions;
    for (auto& id : ids) {
      journal::filter sf;
      sf.session_id = id;
      sf.limit = journal::kMaxQueryLimit;
      json::array entries;
      std::string machine;
      for (auto& x : rd.query(sf).entries) {
        if (machine.empty()) machine = x.machine;
        entries.emplace_back(journal::to_json_object(x));
      }
      sessions.emplace_back(json::object{{"id", id}, {"machine", machine}, {"entries", std::move(entries)}});
    }
    return ok_json(200, json::object{{"pmr", pmr}, {"sessions", std::move(sessions)}, {"other_entries", std::move(direct)}});
  }();
  journal_then(std::move(e), done, [answer, done](const journal::append_result& r) {
    if (r.ok()) done(answer);
  });
}

void service::journal_query(const principal& p, const http_request& req, api::reply done) {
  if (p.user_role != role::auditor) return done(json_error(403, "forbidden", "the journal is for auditors"));
  journal::filter f;
  auto now = clock_.now();
  if (auto v = query_param(req.target, "pmr")) {
    if (!auth::is_valid_pmr(*v)) throw bad_input(std::string(auth::kPmrForm));
    f.pmr = auth::normalize_pmr(*v);
  }
  if (auto v = query_param(req.target, "machine")) {
    if (!auth::is_valid_machine(*v)) throw bad_input(std::string(auth::kMachineForm));
    f.machine = auth::normalize_machine(*v);
  }
  if (auto v = query_param(req.target, "kind")) {
    if (!journal::is_known_kind(*v)) throw bad_input("unknown kind");
    f.kind = *v;
  }
  if (auto v = query_param(req.target, "outcome")) {
    f.result = journal::parse_outcome(*v);
    if (!f.result) throw bad_input("outcome must be ok, denied or error");
  }
  if (auto v = query_param(req.target, "session")) f.session_id = *v;
  if (auto v = query_param(req.target, "actor")) f.actor = *v;
  for (auto [name, dst] : {std::pair{"since", &f.since}, std::pair{"until", &f.until}}) {
    if (auto v = query_param(req.target, name)) {
      auto t = parse_time(*v, now);
      if (!t) throw bad_input(fmt::format("{} must be an RFC 3339 time, a date or an age like 2h", name));
      *dst = t;
    }
  }
  if (auto v = query_param(req.target, "limit")) {
    long long n = 0;
    try {
      n = std::stoll(*v);
    } catch (...) {
      n = 0;
    }
    if (n < 1 || n > 1000) throw bad_input("limit must be 1 to 1000");
    f.limit = static_cast<std::size_t>(n);
  } else {
    f.limit = 100;
  }
  if (auto v = query_param(req.target, "cursor")) {
    f.after = journal::cursor::decode(*v);
    if (!f.after) throw bad_input("malformed cursor");
  }
  auto e = base_entry("audit.query", p, req);
  e.detail = json::serialize(json::object{{"endpoint", "journal"}, {"query", req.target.substr(0, 200)}});
  journal::reader rd({layout_.journal_db()});
  auto page = rd.query(f);
  json::array out;
  for (auto& x : page.entries) out.emplace_back(journal::to_json_object(x));
  auto answer = ok_json(200, json::object{{"entries", std::move(out)},
                                          {"next_cursor", page.next ? json::value(page.next->encode()) : json::value(nullptr)}});
  journal_then(std::move(e), done, [answer, done](const journal::append_result& r) {
    if (r.ok()) done(answer);
  });
}

void service::journal_verify(const principal& p, const http_request& req, api::reply done) {
  if (p.user_role != role::auditor) return done(json_error(403, "forbidden", "the journal is for auditors"));
  auto e = base_entry("audit.query", p, req);
  e.detail = R"({"endpoint":"journal/verify"})";
  journal::reader rd({layout_.journal_db()});
  auto res = journal::verify(rd.db(0), journal_.key().pub());
  auto answer = ok_json(200, json::object{{"ok", res.ok}, {"entries", res.entries}, {"head_seq", res.head_seq},
                                          {"head_hash", res.head_hash}, {"signed_through", res.signed_through},
                                          {"first_bad_seq", res.first_bad_seq}, {"problem", res.problem}});
  journal_then(std::move(e), done, [answer, done](const journal::append_result& r) {
    if (r.ok()) done(answer);
  });
}

}  // namespace rsgate::gateway
