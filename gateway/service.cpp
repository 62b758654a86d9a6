// See service.hpp. This file holds what every capability shares — the policy steps and their
// records — and the tunnel side of sessions, housekeeping, start-up and shutdown. The REST
// handlers live in service_auth.cpp, service_sessions.cpp, service_channels.cpp and
// service_audit.cpp.
#include "gateway/service.hpp"

#include <fmt/format.h>

#include <chrono>
#include <thread>

#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <boost/json/value.hpp>

#include "auth/formats.hpp"
#include "auth/password.hpp"
#include "auth/session_key.hpp"
#include "core/log.hpp"
#include "core/timefmt.hpp"
#include "gateway/detail/service_common.hpp"
#include "gateway/http/request_input.hpp"
#include "protocol/messages.hpp"

namespace json = boost::json;

namespace rsgate::gateway {

using namespace detail;

namespace {

constexpr micros kReconnectGrace = tunnel::kReconnectGraceSeconds * kSecond;
// Ended sessions stay visible through the API this long (and at most this many); after that
// the journal (PMR lookup, GET /journal) keeps their story.
constexpr micros kEndedRetention = 3600 * kSecond;
constexpr std::size_t kMaxEndedSessions = 1000;
// Records one session may keep while the journal cannot write: removals and channel ends are
// bounded by what was granted before, refusals by this.
constexpr std::size_t kMaxKeptRecords = 4096;

bool is_journal_rejection(const journal::append_result& r) { return r.ec == journal::errc::invalid_entry; }

// The grant `gid` of an active session while it is not revoked, else nullptr.
grant* live_grant(session& s, const std::string& gid) {
  if (s.state != session_state::active) return nullptr;
  for (auto& g : s.grants)
    if (g.id == gid && !g.revoked) return &g;
  return nullptr;
}

}  // namespace

// --- what the service files share (detail/service_common.hpp) ---

namespace detail {

http_response ok_json(int status, const json::value& v) {
  http_response r;
  r.status = status;
  r.body = json::serialize(v);
  return r;
}

http_response from_refusal(const refusal& r) { return json_error(r.status, r.code, r.message); }

http_response journal_unavailable() {
  return json_error(503, "journal_unavailable", "the journal cannot record this, so it is refused");
}

void about(journal::entry& e, const session& s) {
  e.session_id = s.id;
  e.pmr = s.pmr;
  e.machine = s.machine;
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
    json::array gs, ga;
    if (g.scopes.empty()) gs.emplace_back("*");
    for (auto& x : g.scopes) gs.emplace_back(x);
    if (g.access_types.empty()) ga.emplace_back("*");
    for (auto& x : g.access_types) ga.emplace_back(x);
    grants.emplace_back(json::object{
        {"id", g.id}, {"user", g.user}, {"scopes", std::move(gs)}, {"access_types", std::move(ga)},
        {"expires_at", g.expires_at ? json::value(format_rfc3339(g.expires_at)) : json::value(nullptr)},
        {"granted_by", g.granted_by}, {"granted_at", format_rfc3339(g.granted_at)}, {"revoked", g.revoked}});
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

std::string address_of(const std::string& remote) {
  auto colon = remote.rfind(':');
  auto a = colon == std::string::npos ? remote : remote.substr(0, colon);
  if (a.size() > 2 && a.front() == '[' && a.back() == ']') a = a.substr(1, a.size() - 2);
  return a;
}

}  // namespace detail

// --- construction ---

service::service(journal::writer& journal, const data_layout& layout, const clock& clk)
    : journal_(journal),
      layout_(layout),
      clock_(clk),
      hmac_(journal::hmac_key::load(layout.hmac_key())),
      state_(layout.state_db()),
      tunnel_state_(layout.state_db()),
      login_user_limiter_({5, 15 * 60 * kSecond, 15 * 60 * kSecond, 100'000}),
      login_source_limiter_({20, 15 * 60 * kSecond, 15 * 60 * kSecond, 100'000}) {}

service::~service() = default;

void service::set_executor(policy_queue::executor ex) {
  {
    std::lock_guard lock(executor_mu_);
    executor_ = ex;
  }
  policy_.set_executor(std::move(ex));
}

void service::post(std::function<void()> f) {
  {
    std::lock_guard lock(executor_mu_);
    if (executor_) return executor_(std::move(f));  // posting does not block
  }
  f();
}

std::string service::new_session_id() {
  // Date for people, 40 random bits so ids never repeat across restarts or gateways.
  return fmt::format("S-{}-{}", format_rfc3339(clock_.now()).substr(0, 10), auth::random_secret(40));
}

std::string service::open_session(const std::string& machine, std::vector<std::string> scopes) {
  std::lock_guard lock(mu_);
  auto id = new_session_id();
  return registry_.open_for_machine(id, machine, std::move(scopes), clock_.now()).id;
}

void service::set_session_key(const std::string& session_id, std::string_view display_key, micros expires_at) {
  auto canonical = auth::normalize_session_key(display_key);
  if (!canonical) throw std::invalid_argument("malformed session key");
  std::lock_guard lock(mu_);
  if (auto* s = registry_.find(session_id)) registry_.set_key(*s, hmac_.hash_of(*canonical), expires_at);
}

// --- the request boundary ---

void service::handle(const http_request& req, std::string_view path, api::reply done_in) {
  // The fault firewall: whatever happens below, the client gets exactly one answer and the
  // gateway keeps serving. Client input is a 400; anything else is our fault: 500, logged.
  auto done = exactly_once(std::move(done_in));
  try {
    route(req, path, done);
  } catch (const bad_input& e) {
    done(json_error(400, "bad_request", e.what()));
  } catch (const std::exception& e) {
    log::error("{} {}: {}", req.method, req.target.substr(0, 200), e.what());
    done(json_error(500, "internal", "the gateway failed to handle this request"));
  }
}

// --- policy steps ---

void service::in_session(const std::string& id, const api::reply& done, step s, bool force) {
  auto guarded = [s = std::move(s), done](ticket t) {
    try {
      s(std::move(t));
    } catch (const bad_input& e) {
      done(json_error(400, "bad_request", e.what()));
    } catch (const std::exception& e) {
      log::error("policy step failed: {}", e.what());
      done(json_error(500, "internal", "the gateway failed to handle this request"));
    }
  };
  if (!policy_.submit(id, std::move(guarded), force))
    done(json_error(429, "busy", "too many requests for this session at once; try again shortly"));
}

void service::record(journal::entry e, ticket t, std::function<void(const journal::append_result&)> then) {
  journal_.append(std::move(e), [t = std::move(t), then = std::move(then)](const journal::append_result& r) {
    if (is_journal_rejection(r)) log::error("journal refused an entry: {}", r.message);
    then(r);
  });
}

bool service::has_unrecorded(const std::string& sid) const { return unrecorded_.count(sid) > 0; }

void service::keep_record(const std::string& sid, journal::entry late) {
  auto& q = unrecorded_[sid];
  if (q.size() >= kMaxKeptRecords) {
    log::error("journal: session {} has {} records waiting; dropping {} {}", sid, q.size(), late.kind, late.detail);
    return;
  }
  // Written later than it took effect: say when it did.
  boost::system::error_code ec;
  auto d = json::parse(late.detail, ec);
  if (!ec && d.is_object()) {
    d.as_object()["effective_at"] = format_rfc3339(clock_.now());
    late.detail = json::serialize(d);
  }
  q.push_back(std::move(late));
}

void service::record_done(const std::string& sid, journal::entry e, ticket t, std::function<void()> then) {
  bool kept = false;
  {
    std::lock_guard lock(mu_);
    if (has_unrecorded(sid)) {  // behind earlier records: keep the order
      keep_record(sid, std::move(e));
      kept = true;
    }
  }
  if (kept) {
    if (then) then();
    return;
  }
  journal::entry copy = e;
  journal_.append(std::move(e), [this, sid, copy = std::move(copy), t = std::move(t),
                                 then = std::move(then)](const journal::append_result& r) mutable {
    if (!r.ok()) {
      if (is_journal_rejection(r)) {
        log::error("journal refused a record of {}: {}", sid, r.message);
      } else {
        std::lock_guard lock(mu_);
        keep_record(sid, std::move(copy));
      }
    }
    if (then) then();
  });
}

void service::flush_unrecorded(const std::string& sid, ticket t) {
  journal::entry e;
  {
    std::lock_guard lock(mu_);
    auto it = unrecorded_.find(sid);
    if (it == unrecorded_.end()) return;
    if (it->second.empty()) {
      unrecorded_.erase(it);
      return;
    }
    e = it->second.front();
  }
  journal_.append(std::move(e), [this, sid, t](const journal::append_result& r) {
    if (!r.ok() && !is_journal_rejection(r)) return;  // still failing: next housekeeping pass
    if (!r.ok()) log::error("journal refused a kept record of {}, dropped: {}", sid, r.message);
    {
      std::lock_guard lock(mu_);
      auto it = unrecorded_.find(sid);
      if (it != unrecorded_.end()) {
        it->second.pop_front();
        if (it->second.empty()) unrecorded_.erase(it);
      }
    }
    flush_unrecorded(sid, t);
  });
}

void service::deny(journal::entry e, std::string_view code, std::string_view reason, http_response answer,
                   const api::reply& done, std::optional<ticket> t, const detail_fields& extra) {
  e.result = journal::outcome::denied;
  json::object d;
  for (auto& [k, v] : extra) d[k] = v;
  d["code"] = code;
  d["reason"] = reason;
  e.detail = json::serialize(d);
  if (t && !e.session_id.empty()) {
    // A refusal in a session whose earlier records wait for the journal joins them, so it
    // cannot be written before the change it refers to.
    bool kept = false;
    {
      std::lock_guard lock(mu_);
      if (has_unrecorded(e.session_id)) {
        keep_record(e.session_id, e);
        kept = true;
      }
    }
    if (kept) return done(answer);
  }
  auto reply = [done, answer = std::move(answer)](const journal::append_result&) { done(answer); };
  if (t) record(std::move(e), std::move(*t), reply);
  else journal_.append(std::move(e), reply);
}

void service::deny(journal::entry e, const refusal& r, const api::reply& done, std::optional<ticket> t,
                   const detail_fields& extra) {
  deny(std::move(e), r.code, r.message, from_refusal(r), done, std::move(t), extra);
}

void service::remove_by_gateway(const std::string& sid, std::function<std::optional<journal::entry>(session&)> act) {
  auto ignore = [](http_response) {};
  in_session(sid, ignore, [this, sid, act](ticket t) {
    std::optional<journal::entry> e;
    {
      std::lock_guard lock(mu_);
      if (auto* s = registry_.find(sid); s && s->state != session_state::ended) e = act(*s);
    }
    if (e) record_done(sid, std::move(*e), std::move(t));
  }, true);
}

journal::entry service::revoke_now(session& s, grant& g, const std::string& actor, const std::string& reason) {
  auto closing = registry_.commit_revoke(s, g);
  close_channels(closing, reason == "owner" ? "access revoked" : reason);
  tunnel::notice n;
  n.event = "revoke";
  n.actor = actor;
  n.user = g.user;
  if (reason != "owner") n.reason = reason;
  notify(s.id, n);
  journal::entry e;
  e.kind = "session.revoke";
  e.actor = actor;
  about(e, s);
  json::array ch;
  for (auto serial : closing)
    if (auto it = s.channels.find(serial); it != s.channels.end()) ch.emplace_back(it->second.id);
  e.detail = json::serialize(
      json::object{{"grant", g.id}, {"user", g.user}, {"reason", reason}, {"closed_channels", std::move(ch)}});
  return e;
}

journal::entry service::end_now(session& s, const std::string& actor, const std::string& reason,
                                std::string agent_reason) {
  auto closing = registry_.end(s, reason, clock_.now());
  close_channels(closing, "the session ended");
  if (auto it = links_.find(s.id); it != links_.end()) {
    if (auto l = it->second.lock(); l && !agent_reason.empty()) l->end_session(agent_reason);
    links_.erase(it);
  }
  journal::entry e;
  e.kind = "session.end";
  e.actor = actor;
  about(e, s);
  e.detail = json::serialize(json::object{{"reason", reason}});
  return e;
}

// --- the tunnel side ---

std::optional<tunnel::machine_record> service::machine_record_for(const std::string& machine) {
  std::optional<machine_row> row;
  {
    std::lock_guard lock(tunnel_state_mu_);
    row = tunnel_state_.find_machine(machine);
    if (row && row->md5_enabled && !master_)
      master_ = master_key::load_or_create(layout_.keys() / "master.key");
  }
  if (!row) return std::nullopt;
  auto v = auth::scram::verifier::decode(row->verifier);
  if (!v) return std::nullopt;
  tunnel::machine_record r;
  r.machine = row->machine;
  r.verifier = *v;
  r.revoked = row->revoked;
  r.md5_enabled = row->md5_enabled;
  if (row->md5_enabled) {
    auto secret = master_->open(row->md5_secret_sealed);
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
                          const std::string& source, std::function<void(std::optional<micros>)> done_in) {
  auto done = once_or<std::optional<micros>>(std::move(done_in), std::nullopt);
  auto canonical = auth::normalize_session_key(display_key);
  if (!canonical) return done(std::nullopt);
  auto hmac = hmac_.hash_of(*canonical);
  auto ignore = [](http_response) {};
  // A step of the session: the key is usable only once its issue is durable, and an attach
  // with it can only be decided after that.
  in_session(session_id, ignore, [this, session_id, hmac, lifetime, source, done](ticket t) {
    journal::entry e;
    e.kind = "session.key_issued";
    e.actor = "customer";
    e.source = source;
    e.session_id = session_id;
    e.secret_hmac = hmac;
    {
      std::lock_guard lock(mu_);
      auto* s = registry_.find(session_id);
      if (!s || s->state == session_state::ended || has_unrecorded(session_id)) return done(std::nullopt);
      e.machine = s->machine;
    }
    e.detail = json::serialize(json::object{{"expires_in_seconds", lifetime / kSecond}});
    record(std::move(e), std::move(t), [this, session_id, hmac, lifetime, done](const journal::append_result& r) {
      if (!r.ok()) return done(std::nullopt);
      std::lock_guard lock(mu_);
      auto* s = registry_.find(session_id);
      if (!s) return done(std::nullopt);
      registry_.set_key(*s, hmac, r.ts + lifetime);
      done(r.ts + lifetime);
    });
  }, true);
}

void service::customer_stopped(const std::string& session_id, const std::string& source, std::function<void()> done) {
  auto finish = once_or<int>([done](int) { done(); }, 0);
  auto ignore = [](http_response) {};
  in_session(session_id, ignore, [this, session_id, source, finish](ticket t) {
    journal::entry e;
    {
      // Ending removes access: at once, recorded in order.
      std::lock_guard lock(mu_);
      auto* s = registry_.find(session_id);
      if (!s || s->state == session_state::ended) return finish(0);
      e = end_now(*s, "customer", "customer", "");
    }
    e.source = source;
    record_done(session_id, std::move(e), std::move(t), [finish] { finish(0); });
  }, true);
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
    // The channels of that tunnel went with it (a newer tunnel's stay).
    std::vector<channel_serial> gone;
    for (auto& [serial, c] : s->channels) {
      auto found = channel_links_.find(serial);
      auto cl = found == channel_links_.end() ? nullptr : found->second.lock();
      auto t = cl ? cl->tunnel.lock() : nullptr;
      if (!t || t.get() == link) gone.push_back(serial);
    }
    for (auto serial : gone) (void)registry_.close_channel(*s, serial);
  }
}

// --- housekeeping ---

void service::housekeeping() {
  std::unique_lock one(housekeeping_mu_, std::try_to_lock);
  if (!one.owns_lock()) return;  // the previous pass still runs
  auto now = clock_.now();
  try {
    housekeeping_accounts();
  } catch (const std::exception& e) {
    log::warn("housekeeping: cannot read state.db: {}", e.what());
    housekeeping_state_.reset();  // reopen next time
  }
  housekeeping_time(now);
}

void service::housekeeping_accounts() {
  // What to look up, taken under the lock; state.db is read without it, on our own connection.
  std::set<std::string> machines, users;
  {
    std::lock_guard lock(mu_);
    for (auto* s : registry_.live_sessions()) {
      machines.insert(s->machine);
      if (s->state != session_state::active) continue;
      users.insert(s->owner);
      for (auto& g : s->grants)
        if (!g.revoked) users.insert(g.user);
    }
  }
  if (machines.empty()) return;
  if (!housekeeping_state_) housekeeping_state_.emplace(layout_.state_db());
  std::set<std::string> gone_machines, gone_users;
  for (auto& m : machines) {
    auto row = housekeeping_state_->find_machine(m);
    if (!row || row->revoked) gone_machines.insert(m);
  }
  for (auto& u : users) {
    auto row = housekeeping_state_->find_user(u);
    if (!row || row->disabled) gone_users.insert(u);
  }
  std::vector<std::pair<std::string, std::string>> ends;      // session, reason
  std::vector<std::pair<std::string, std::string>> revokes;   // session, grant
  {
    std::lock_guard lock(mu_);
    for (auto* s : registry_.live_sessions()) {
      if (gone_machines.count(s->machine)) ends.emplace_back(s->id, "machine revoked");
      else if (s->state == session_state::active && gone_users.count(s->owner)) ends.emplace_back(s->id, "owner disabled");
      else
        for (auto& g : s->grants)
          if (!g.revoked && gone_users.count(g.user)) revokes.emplace_back(s->id, g.id);
    }
  }
  for (auto& end : ends) {  // (no structured bindings: clang 14 cannot capture them)
    const auto& reason = end.second;
    remove_by_gateway(end.first, [this, reason, gone_machines, gone_users](session& s) -> std::optional<journal::entry> {
      bool machine = reason == "machine revoked";
      if (!(machine ? gone_machines.count(s.machine) : gone_users.count(s.owner))) return std::nullopt;
      return end_now(s, "gateway", reason,
                     machine ? "this machine's enrollment was revoked" : "the session ended (" + reason + ")");
    });
  }
  for (auto& revoke : revokes) {
    const auto& gid = revoke.second;
    remove_by_gateway(revoke.first, [this, gid](session& s) -> std::optional<journal::entry> {
      auto* g = live_grant(s, gid);
      if (!g) return std::nullopt;
      return revoke_now(s, *g, "gateway", "account disabled");
    });
  }
}

void service::housekeeping_time(micros now) {
  std::vector<std::string> lost, backlog;
  std::vector<std::pair<std::string, std::string>> lapsed;
  std::vector<refusal_throttle::summary> summaries;
  {
    std::lock_guard lock(mu_);
    for (auto* s : registry_.live_sessions())
      if (!s->tunnel_up && now - s->tunnel_lost_at >= kReconnectGrace) lost.push_back(s->id);
    lapsed = registry_.lapsed_grants(now);
    for (auto& [sid, q] : unrecorded_) backlog.push_back(sid);
    summaries = credential_refusals_.take_summaries(now);
    std::set<std::string> pinned(backlog.begin(), backlog.end());
    registry_.prune(now, kEndedRetention, kMaxEndedSessions, pinned);
    for (auto it = tickets_.begin(); it != tickets_.end();)
      it = it->second.expires_at <= now ? tickets_.erase(it) : std::next(it);
    for (auto it = web_sessions_.begin(); it != web_sessions_.end();)
      it = (it->second.expires_at <= now || it->second.idle_until <= now) ? web_sessions_.erase(it) : std::next(it);
  }
  auto ignore = [](http_response) {};
  for (auto& sid : backlog)
    in_session(sid, ignore, [this, sid](ticket t) { flush_unrecorded(sid, std::move(t)); }, true);
  for (auto& sid : lost) {
    remove_by_gateway(sid, [this](session& s) -> std::optional<journal::entry> {
      if (s.tunnel_up || clock_.now() - s.tunnel_lost_at < kReconnectGrace) return std::nullopt;
      return end_now(s, "gateway", "tunnel lost", "");
    });
  }
  for (auto& lapse : lapsed) {
    const auto& gid = lapse.second;
    remove_by_gateway(lapse.first, [this, gid](session& s) -> std::optional<journal::entry> {
      auto* g = live_grant(s, gid);
      if (!g || g->expires_at == 0 || g->expires_at > clock_.now()) return std::nullopt;
      auto e = revoke_now(s, *g, "gateway", "the grant expired");
      e.detail = json::serialize(json::object{{"grant", gid}, {"user", g->user}, {"reason", "expired"}});
      return e;
    });
  }
  for (auto& sm : summaries) {
    journal::entry e;
    e.kind = "user.login";
    e.source = sm.source;
    e.result = journal::outcome::denied;
    e.detail = json::serialize(json::object{{"reason", "suppressed"},
                                            {"count", sm.suppressed},
                                            {"window_start", format_rfc3339(sm.window_start)},
                                            {"note", "refused credentials from this address beyond the per-minute entries"}});
    journal_.append(std::move(e), [](const journal::append_result&) {});
  }
}

// --- start-up and shutdown ---

std::size_t service::end_orphaned_sessions() {
  struct orphan {
    std::string id, machine, pmr;
  };
  std::vector<orphan> open;
  {
    journal::reader rd({layout_.journal_db()});
    auto st = rd.db(0).prepare(
        "SELECT session_id, "
        "  (SELECT machine FROM journal m WHERE m.session_id = j.session_id AND m.machine <> '' ORDER BY seq DESC LIMIT 1), "
        "  (SELECT pmr FROM journal p WHERE p.session_id = j.session_id AND p.pmr <> '' ORDER BY seq DESC LIMIT 1) "
        "FROM journal j WHERE session_id <> '' GROUP BY session_id HAVING SUM(kind = 'session.end') = 0");
    while (st.step())
      open.push_back({std::string(st.col_text(0)), std::string(st.col_text(1)), std::string(st.col_text(2))});
  }
  std::size_t ended = 0;
  for (auto& o : open) {
    journal::entry e;
    e.kind = "session.end";
    e.actor = "gateway";
    e.session_id = o.id;
    e.machine = o.machine;
    e.pmr = o.pmr;
    e.detail = R"({"reason":"gateway restart"})";
    if (journal_.append_sync(std::move(e)).ok()) ++ended;
  }
  return ended;
}

void service::end_all_sessions(const std::string& reason, std::chrono::milliseconds wait) {
  set_executor({});  // the worker pool is gone: steps continue inline
  // Each live session ends in a step of its own, after whatever its queue still holds, so no
  // grant decided before the stop can be journaled after its session.end.
  std::vector<std::string> live;
  {
    std::lock_guard lock(mu_);
    for (auto* s : registry_.live_sessions()) live.push_back(s->id);
  }
  for (auto& sid : live)
    remove_by_gateway(sid, [this, reason](session& s) -> std::optional<journal::entry> {
      return end_now(s, "gateway", reason, "");
    });
  auto until = std::chrono::steady_clock::now() + wait;
  while (!idle() && std::chrono::steady_clock::now() < until)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  // What the journal could not take before: one last try, oldest first, session by session.
  std::map<std::string, std::deque<journal::entry>> left;
  {
    std::lock_guard lock(mu_);
    left.swap(unrecorded_);
  }
  for (auto& [sid, q] : left)
    for (auto& e : q)
      if (auto r = journal_.append_sync(e); !r.ok())
        log::error("journal: a record of session {} is lost at shutdown ({}): {} {}", sid, r.message, e.kind, e.detail);
}

// --- helpers ---

void service::close_channels(const std::vector<channel_serial>& serials, const std::string& reason) {
  for (auto serial : serials) {
    auto it = channel_links_.find(serial);
    auto c = it == channel_links_.end() ? nullptr : it->second.lock();
    if (!c) continue;
    // Closed at once for the stream side (nothing more is relayed), then CLOSE through the
    // tunnel the channel runs in — not whichever tunnel serves the session now.
    c->close_for(reason);
    if (auto t = c->tunnel.lock()) t->channel_close(c->id, reason);
  }
}

void service::notify(const std::string& session_id, tunnel::notice n) {
  auto it = links_.find(session_id);
  if (it == links_.end()) return;
  if (auto l = it->second.lock()) {
    n.ts = format_rfc3339(clock_.now());
    l->notify(n);
  }
}

journal::entry service::base_entry(std::string kind, const principal& p, const http_request& req) const {
  journal::entry e;
  e.kind = std::move(kind);
  e.actor = journal::escape_for_journal(p.user);
  e.source = journal::escape_for_journal(req.remote);
  return e;
}

std::optional<user_row> service::lookup_user(const std::string& name) {
  std::lock_guard lock(state_mu_);
  return state_.find_user(name);
}

std::optional<token_row> service::lookup_token(const std::string& hash) {
  std::lock_guard lock(state_mu_);
  return state_.find_token(hash);
}

}  // namespace rsgate::gateway
