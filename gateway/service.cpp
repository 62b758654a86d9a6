// See service.hpp. This file holds what every capability shares: the request boundary, the
// policy steps and their records, and the helpers. The REST handlers live in service_auth.cpp,
// service_sessions.cpp, service_channels.cpp and service_audit.cpp; the tunnel side in
// service_tunnel.cpp; housekeeping, start-up and shutdown in service_life.cpp.
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
#include "journal/receipt.hpp"
#include "protocol/messages.hpp"

namespace json = boost::json;

namespace rsgate::gateway {

using namespace detail;

namespace {

// Records one session may keep while the journal cannot write: removals and channel ends are
// bounded by what was granted before, refusals by this.
constexpr std::size_t kMaxKeptRecords = 4096;

bool is_journal_rejection(const journal::append_result& r) { return r.ec == journal::errc::invalid_entry; }

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

http_response failed_record(const journal::append_result& r) {
  if (r.ec == journal::errc::invalid_entry)
    return json_error(500, "internal", "the gateway could not build the journal entry for this request");
  return journal_unavailable();
}

void about(journal::entry& e, const session& s) {
  e.session_id = s.id;
  e.pmr = s.pmr;
  e.machine = s.machine;
}

tunnel::notice grant_notice(const grant& g) {
  tunnel::notice n;
  n.event = "grant";
  n.actor = g.granted_by;
  n.user = g.user;
  std::string granted;
  for (auto& x : g.scopes) granted += (granted.empty() ? "" : ",") + x;
  n.scope = granted.substr(0, tunnel::kMaxNameBytes);
  return n;
}

json::object session_json(const session& s) {
  json::object o;
  o["id"] = s.id;
  o["machine"] = s.machine;
  o["state"] = to_string(s.state);
  o["connected"] = s.tunnel_up;
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

std::optional<std::string> user_param(const query_params& q, std::string_view name) {
  auto v = q.get(name);
  if (v && !auth::is_valid_user_name(*v)) throw bad_input(fmt::format("\"{}\" is not a valid user name", name));
  return v;
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
      login_source_limiter_({20, 15 * 60 * kSecond, 15 * 60 * kSecond, 100'000}) {
  policy_.set_after_step([this](const std::string& sid) {
    if (keep_sessions_) persist_session(sid);
    std::lock_guard lock(mu_);
    if (auto* s = registry_.find(sid)) publish_session(*s);  // account: and machine: keys find none
  });
}

service::~service() {
  // Completions handed to the journal hold tickets of policy_ (service::record), and the
  // writer thread destroys them after it ran them, when their caller may already be done:
  // wait, bounded, until it holds none, or a ticket would finish into a freed queue. The
  // gateway drains the journal before this (runtime.cpp); tests may not.
  for (int i = 0; i < 500 && !journal_.idle(); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(10));
}

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

namespace {

// An answer that waits for its step to settle: given before, it is kept and sent then.
class held_reply {
 public:
  explicit held_reply(api::reply to) : to_(std::move(to)) {}
  void answer(http_response r) {
    {
      std::lock_guard lock(mu_);
      if (!settled_) {
        if (!pending_) pending_ = std::move(r);
        return;
      }
    }
    to_(std::move(r));
  }
  void settle() {
    std::optional<http_response> r;
    {
      std::lock_guard lock(mu_);
      settled_ = true;
      r = std::exchange(pending_, std::nullopt);
    }
    if (r) to_(std::move(*r));
  }

 private:
  api::reply to_;
  std::mutex mu_;
  bool settled_ = false;                  // guarded by mu_
  std::optional<http_response> pending_;  // guarded by mu_
};

}  // namespace

void service::in_session(const std::string& id, const api::reply& done, step s, bool force) {
  auto guarded = [s = std::move(s), done](ticket t) {
    auto held = std::make_shared<held_reply>(done);
    t.when_settled([held] { held->settle(); });
    const api::reply reply = [held](http_response r) { held->answer(std::move(r)); };
    try {
      s(std::move(t), reply);
    } catch (const bad_input& e) {
      reply(json_error(400, "bad_request", e.what()));
    } catch (const std::exception& e) {
      log::error("policy step failed: {}", e.what());
      reply(json_error(500, "internal", "the gateway failed to handle this request"));
    }
  };
  if (!policy_.submit(id, std::move(guarded), force)) {
    auto busy = json_error(429, "busy", "too many requests for this session at once; try again shortly");
    busy.headers.emplace_back("Retry-After", "1");
    done(std::move(busy));
  }
}

void service::record(journal::entry e, ticket t, std::function<void(const journal::append_result&)> then) {
  journal_.append(std::move(e), [this, about = recorded_key(e), t = std::move(t),
                                 then = std::move(then)](const journal::append_result& r) {
    if (is_journal_rejection(r)) log::error("journal refused an entry: {}", r.message);
    note_recorded(about, r);
    then(r);
  });
}

journal::entry service::recorded_key(const journal::entry& e) {
  journal::entry k;
  k.kind = e.kind;
  k.session_id = e.session_id;
  k.result = e.result;
  return k;
}

void service::note_recorded(const journal::entry& e, const journal::append_result& r) {
  if (!r.ok() || e.result != journal::outcome::ok || e.session_id.empty()) return;
  if (e.kind == "session.end" || e.kind == "channel.close") receipt_progress(e.session_id, e.kind == "session.end");
  if (!e.kind.starts_with("session.")) return;
  std::lock_guard lock(mu_);
  if (auto* s = registry_.find(e.session_id)) s->journal_seq = std::max(s->journal_seq, r.seq);
}

void service::receipt_progress(const std::string& sid, bool end_recorded) {
  std::shared_ptr<tunnel_link> link;
  {
    std::lock_guard lock(mu_);
    auto it = receipt_waiters_.find(sid);
    if (it == receipt_waiters_.end()) return;
    it->second.end_recorded = it->second.end_recorded || end_recorded;
    if (!it->second.end_recorded) return;
    // The channels the end closed are journaled after it, each in its own step: the receipt
    // waits for the last of them (a stream side that never reports leaves the tunnel's own
    // bound to close it, without a receipt).
    for (auto& [serial, weak] : channel_links_)
      if (auto c = weak.lock(); c && c->session_id == sid) return;
    link = it->second.link.lock();
    receipt_waiters_.erase(it);
  }
  if (link) post([this, sid, link] { send_receipt(sid, link); });
}

std::optional<bytes> service::receipt_payload(journal::reader& rd, const std::string& sid) {
  try {
    if (auto r = journal::make_receipt(rd, sid, journal_.key(), clock_.now())) return tunnel::to_payload(*r);
    log::error("receipt of session {}: its session.end is not in the journal", sid);
  } catch (const std::exception& e) {
    log::error("receipt of session {} could not be made: {}", sid, e.what());
  }
  return std::nullopt;
}

void service::send_receipt(const std::string& sid, std::shared_ptr<tunnel_link> link) {
  std::optional<bytes> payload;
  try {
    journal::reader rd({layout_.journal_db()});
    payload = receipt_payload(rd, sid);
  } catch (const std::exception& e) {
    log::error("receipt of session {} could not be made: {}", sid, e.what());
  }
  link->deliver_receipt(std::move(payload));
}

namespace {
constexpr std::int64_t kOwedScanEntries = 2000;
}  // namespace

void service::send_owed_receipts(const std::string& machine, const std::string& current,
                                 std::weak_ptr<tunnel_link> link) {
  post([this, machine, current, link] {
    try {
      journal::reader rd({layout_.journal_db()});
      // `machine <> ''` lets SQLite use the partial index journal_by_machine, newest first.
      // Only the machine's last kOwedScanEntries entries are looked at, so that a connect
      // costs the same however long the machine's history. While no agent of it is connected
      // little else of a machine is journaled (its session's end, refused attaches and
      // authentications), so the ends owed are among its newest entries (docs/protocol.md §4.12).
      auto st = rd.db(0).prepare(
          "SELECT session_id FROM (SELECT session_id, kind, outcome, ts, seq FROM journal "
          "  WHERE machine = ?1 AND machine <> '' ORDER BY ts DESC, seq DESC LIMIT ?3) "
          "WHERE kind = 'session.end' AND outcome = 'ok' AND session_id <> '' ORDER BY ts DESC, seq DESC LIMIT ?2");
      st.bind(1, machine).bind(2, static_cast<std::int64_t>(tunnel::kOwedReceipts)).bind(3, kOwedScanEntries);
      std::vector<std::string> ended;
      while (st.step())
        if (auto id = std::string(st.col_text(0)); id != current) ended.push_back(std::move(id));
      if (ended.empty()) return;
      std::set<std::string> delivered;
      {
        std::lock_guard lock(tunnel_state_mu_);
        delivered = tunnel_state_.delivered_receipts(machine, ended);
      }
      for (auto it = ended.rbegin(); it != ended.rend(); ++it) {
        if (delivered.contains(*it)) continue;
        auto l = link.lock();
        if (!l) return;  // the tunnel went meanwhile: they stay owed
        if (auto p = receipt_payload(rd, *it)) l->deliver_owed_receipt(*it, std::move(*p));
      }
    } catch (const std::exception& e) {
      log::error("receipts owed to machine {} could not be sent: {}", machine, e.what());
    }
  });
}

void service::receipt_acknowledged(const std::string& machine, const std::string& session_id) {
  post([this, machine, session_id] {
    try {
      std::lock_guard lock(tunnel_state_mu_);
      tunnel_state_.receipt_delivered(session_id, machine, clock_.now());
    } catch (const std::exception& e) {
      log::error("state.db: the receipt of session {} acknowledged by its agent is not recorded: {}", session_id, e.what());
    }
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
    note_recorded(copy, r);
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
  journal_.append(std::move(e), [this, sid, t, about = recorded_key(e)](const journal::append_result& r) {
    note_recorded(about, r);
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
  in_session(sid, ignore, [this, sid, act](ticket t, const api::reply&) {
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
    auto l = it->second.lock();
    if (l && !agent_reason.empty()) l->end_session(agent_reason);
    // The agent told (END) or the customer's own STOP: its tunnel stays for the receipt.
    if (l && (!agent_reason.empty() || reason == "customer")) receipt_waiters_[s.id] = {l, false};
    links_.erase(it);
  }
  journal::entry e;
  e.kind = "session.end";
  e.actor = actor;
  about(e, s);
  e.detail = json::serialize(json::object{{"reason", reason}});
  return e;
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

journal::reader& service::journal_reader() {
  struct cached {
    std::filesystem::path path;
    std::unique_ptr<journal::reader> rd;
  };
  thread_local cached c;
  const auto p = layout_.journal_db();
  if (!c.rd || c.path != p) {
    c.rd.reset();  // a reader of another journal (tests run several services) goes first
    c.rd = std::make_unique<journal::reader>(std::vector<std::filesystem::path>{p});
    c.path = p;
  }
  return *c.rd;
}

std::optional<user_row> service::lookup_user(const std::string& name) {
  std::lock_guard lock(state_mu_);
  return state_.find_user(name);
}

master_key service::sealing_key() {
  std::lock_guard lock(tunnel_state_mu_);
  if (!master_) master_ = master_key::load_or_create(layout_.keys() / "master.key");
  return *master_;
}

std::optional<token_row> service::lookup_token(const std::string& hash) {
  std::lock_guard lock(state_mu_);
  return state_.find_token(hash);
}

}  // namespace rsgate::gateway
