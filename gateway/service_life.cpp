// The service's life around the requests (service.hpp): the housekeeping pass every second
// (what other processes changed in state.db, lapsed grants, lost tunnels, kept records,
// refusal summaries, pruning), the start-up's restore of the sessions an earlier run kept (and
// the closing of those it left open otherwise), and the shutdown: every live session kept in
// state.db for the next start, or ended.
#include <algorithm>
#include <chrono>
#include <iterator>
#include <thread>

#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <boost/json/value.hpp>

#include "core/log.hpp"
#include "core/timefmt.hpp"
#include "gateway/detail/service_common.hpp"
#include "gateway/service.hpp"
#include "gateway/session_snapshot.hpp"
#include "journal/reader.hpp"

namespace json = boost::json;

namespace rsgate::gateway {

using namespace detail;

namespace {

// Ended sessions stay visible through the API this long (and at most this many); after that
// the journal (PMR lookup, GET /journal) keeps their story.
constexpr micros kEndedRetention = 3600 * kSecond;
constexpr std::size_t kMaxEndedSessions = 1000;

// The grant `gid` of an active session while it is not revoked, else nullptr.
grant* live_grant(session& s, const std::string& gid) {
  if (s.state != session_state::active) return nullptr;
  for (auto& g : s.grants)
    if (g.id == gid && !g.revoked) return &g;
  return nullptr;
}

}  // namespace

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
  try {
    housekeeping_events(now);
  } catch (const std::exception& e) {
    log::warn("housekeeping: cannot check the event streams' credentials: {}", e.what());
  }
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
  if (!housekeeping_state_) {
    housekeeping_state_.emplace(layout_.state_db());
    checked_version_ = -1;  // data_version is comparable on one connection only
  }
  const auto version = housekeeping_state_->data_version();
  if (version != checked_version_) {
    checked_machines_.clear();
    checked_users_.clear();
  }
  std::set<std::string> gone_machines, gone_users;
  for (auto& m : machines) {
    if (checked_machines_.contains(m)) continue;
    auto row = housekeeping_state_->find_machine(m);
    if (!row || row->revoked) gone_machines.insert(m);
  }
  for (auto& u : users) {
    if (checked_users_.contains(u)) continue;
    auto row = housekeeping_state_->find_user(u);
    if (!row || row->disabled) gone_users.insert(u);
  }
  // Only the current ones are remembered: a session that comes back is looked up again.
  checked_version_ = version;
  checked_machines_.clear();
  std::set_difference(machines.begin(), machines.end(), gone_machines.begin(), gone_machines.end(),
                      std::inserter(checked_machines_, checked_machines_.end()));
  checked_users_.clear();
  std::set_difference(users.begin(), users.end(), gone_users.begin(), gone_users.end(),
                      std::inserter(checked_users_, checked_users_.end()));
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
  std::vector<std::string> pruned;
  {
    std::lock_guard lock(mu_);
    for (auto* s : registry_.live_sessions())
      if (!s->tunnel_up && !s->joining && now - s->tunnel_lost_at >= reconnect_grace_) lost.push_back(s->id);
    lapsed = registry_.lapsed_grants(now);
    for (auto& [sid, q] : unrecorded_) backlog.push_back(sid);
    summaries = credential_refusals_.take_summaries(now);
    std::set<std::string> pinned(backlog.begin(), backlog.end());
    pruned = registry_.prune(now, kEndedRetention, kMaxEndedSessions, pinned);
    for (auto it = tickets_.begin(); it != tickets_.end();)
      it = it->second.expires_at <= now ? tickets_.erase(it) : std::next(it);
    for (auto it = receipt_waiters_.begin(); it != receipt_waiters_.end();)  // their tunnels closed
      it = it->second.link.expired() ? receipt_waiters_.erase(it) : std::next(it);
    for (auto it = web_sessions_.begin(); it != web_sessions_.end();)
      it = (it->second.expires_at <= now || it->second.idle_until <= now) ? web_sessions_.erase(it) : std::next(it);
  }
  if (!pruned.empty()) {
    // What state.db holds of a forgotten session is settled (its row deleted): its record
    // goes too, or persisted_ would grow with every session ever ended. One whose row is
    // still to be deleted keeps it; persist_session deletes both then.
    std::lock_guard lock(sessions_state_mu_);
    for (auto& sid : pruned)
      if (auto it = persisted_.find(sid); it != persisted_.end() && it->second.deleted) persisted_.erase(it);
  }
  auto ignore = [](http_response) {};
  for (auto& sid : backlog)
    in_session(sid, ignore, [this, sid](ticket t, const api::reply&) { flush_unrecorded(sid, std::move(t)); }, true);
  for (auto& sid : lost) {
    remove_by_gateway(sid, [this](session& s) -> std::optional<journal::entry> {
      if (s.tunnel_up || s.joining || clock_.now() - s.tunnel_lost_at < reconnect_grace_) return std::nullopt;
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

state_store& service::snapshot_store() {
  if (!sessions_state_) {
    sessions_state_.emplace(layout_.state_db());
    sessions_state_->relax_durability_for_snapshots();
  }
  return *sessions_state_;
}

void service::persist_session(const std::string& sid) {
  // The queue serializes account changes too (key "account:NAME"); they have no snapshot.
  if (sid.starts_with("account:") || sid.starts_with("machine:")) return;
  std::optional<live_session_row> row;
  bool ended = false, pruned = false;
  {
    std::lock_guard lock(mu_);
    auto* s = registry_.find(sid);
    // Not found: pruned, so it ended, perhaps only just (prune keeps kMaxEndedSessions, so of
    // thousands that end at once some leave before this step's turn came). Its row must go
    // all the same, or the next start would find two kept sessions for the machine.
    pruned = s == nullptr;
    ended = pruned || s->state == session_state::ended;
    // A change the journal has not recorded yet (its record is kept for later) must not be
    // restored from a snapshot the journal would seem to confirm: such a snapshot is marked
    // untrusted (journal_seq -1), and the session ends at the next start instead.
    if (!ended)
      row = live_session_row{sid, s->machine, to_snapshot(*s), has_unrecorded(sid) ? -1 : s->journal_seq, clock_.now()};
  }
  std::lock_guard lock(sessions_state_mu_);
  auto known = persisted_.find(sid);
  const bool deleted = known != persisted_.end() && known->second.deleted;
  if (pruned && deleted) persisted_.erase(known);  // settled and forgotten: no record kept
  if (ended && deleted) return;
  if (!ended && known != persisted_.end() && !known->second.deleted && known->second.snapshot == row->snapshot &&
      known->second.seq == row->journal_seq)
    return;  // nothing changed
  try {
    if (ended) {
      // Whether or not a row was ever written (an earlier write may have failed): an ended
      // session must never be restored.
      snapshot_store().delete_live_session(sid);
      if (pruned)
        persisted_.erase(sid);
      else
        persisted_[sid] = {"", 0, true};
    } else {
      snapshot_store().put_live_session(*row);
      persisted_[sid] = {row->snapshot, row->journal_seq};
    }
  } catch (const std::exception& e) {
    // Not fatal for the session now; at the next start a snapshot older than the journal is
    // not trusted, and the session ends there (restore_sessions).
    log::error("state.db: cannot keep the state of session {}: {}", sid, e.what());
    persisted_.erase(sid);
  }
}

service::restored service::restore_sessions() {
  struct open_session {
    std::string machine, pmr;
    std::int64_t last_seq = 0;  // its last session.* entry journaled ok
  };
  std::map<std::string, open_session> open;
  {
    journal::reader rd({layout_.journal_db()});
    auto st = rd.db(0).prepare(
        "SELECT session_id, "
        // `session_id <> ''` in the subqueries lets them use the partial index journal_by_session:
        // without it each is a scan of the whole journal, once per session ever recorded.
        "  (SELECT machine FROM journal m WHERE m.session_id = j.session_id AND m.session_id <> '' AND m.machine <> '' "
        "   ORDER BY seq DESC LIMIT 1), "
        "  (SELECT pmr FROM journal p WHERE p.session_id = j.session_id AND p.session_id <> '' AND p.pmr <> '' "
        "   ORDER BY seq DESC LIMIT 1), "
        "  MAX(CASE WHEN kind LIKE 'session.%' AND outcome = 'ok' THEN seq ELSE 0 END) "
        "FROM journal j WHERE session_id <> '' GROUP BY session_id "
        "HAVING SUM(kind = 'session.end' AND outcome = 'ok') = 0");  // a refused end ends nothing
    while (st.step())
      open[std::string(st.col_text(0))] = {std::string(st.col_text(1)), std::string(st.col_text(2)), st.col_int(3)};
  }
  std::vector<live_session_row> kept;
  {
    std::lock_guard lock(sessions_state_mu_);
    kept = snapshot_store().live_sessions();
  }
  // Rows of sessions the journal shows ended (a crash between the end and the row's delete)
  // go below whatever else they hold; only the others count toward "one kept session per
  // machine".
  std::map<std::string, int> rows_of_machine;
  for (auto& row : kept)
    if (open.contains(row.id)) ++rows_of_machine[row.machine];
  restored out;
  const auto now = clock_.now();
  for (auto& row : kept) {
    std::string why;
    auto s = session_from_snapshot(row.snapshot, why);
    auto it = open.find(row.id);
    // Trusted only when the journal tells the same story: open, and nothing recorded about
    // the session after the snapshot was taken (a grant revoked, say, whose state.db write
    // was lost). Anything else ends: fail closed.
    const bool second = rows_of_machine[row.machine] > 1;
    if (!s || s->id != row.id || it == open.end() || it->second.last_seq != row.journal_seq || second) {
      if (!s) log::error("state.db: the kept state of session {} is unreadable ({}); it ends", row.id, why);
      else if (it == open.end()) log::info("state.db: session {} has ended in the journal; its kept state goes", row.id);
      else if (second) log::error("state.db: machine {} has more than one kept session; {} ends", row.machine, row.id);
      else log::error("state.db: the kept state of session {} is not confirmed by the journal; it ends", row.id);
      std::lock_guard lock(sessions_state_mu_);
      snapshot_store().delete_live_session(row.id);
      continue;
    }
    s->journal_seq = row.journal_seq;
    s->tunnel_up = false;
    s->tunnel_lost_at = now;  // the grace starts again: the agents reconnect to this process
    {
      std::lock_guard lock(sessions_state_mu_);
      persisted_[row.id] = {row.snapshot, row.journal_seq};
    }
    {
      std::lock_guard lock(mu_);
      registry_.restore(std::move(*s));
    }
    open.erase(it);
    ++out.kept;
  }
  // What the journal shows open and state.db did not keep (a crash before its first snapshot,
  // sessions from a version without them): closed in the journal, so none vanishes.
  for (auto& [id, o] : open) {
    journal::entry e;
    e.kind = "session.end";
    e.actor = "gateway";
    e.session_id = id;
    e.machine = o.machine;
    e.pmr = o.pmr;
    e.detail = R"({"reason":"gateway restart"})";
    if (journal_.append_sync(std::move(e)).ok()) ++out.ended;
  }
  return out;
}

std::size_t service::owned_sessions() {
  std::lock_guard lock(mu_);
  std::size_t n = 0;
  for (auto* s : registry_.live_sessions()) n += s->state == session_state::active;
  return n;
}

bool service::has_owner(const std::string& session_id) {
  std::lock_guard lock(mu_);
  auto* s = registry_.find(session_id);
  return s && s->state == session_state::active;
}

void service::drain_steps(std::chrono::milliseconds wait) {
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
    for (auto& e : q) {
      auto r = journal_.append_sync(e);
      note_recorded(e, r);
      if (!r.ok())
        log::error("journal: a record of session {} is lost at shutdown ({}): {} {}", sid, r.message, e.kind, e.detail);
    }
}

void service::keep_all_sessions(std::chrono::milliseconds wait) {
  set_executor({});  // the worker pool is gone: steps continue inline
  drain_steps(wait);
  std::vector<std::string> live;
  {
    std::lock_guard lock(mu_);
    for (auto* s : registry_.live_sessions()) live.push_back(s->id);
  }
  for (auto& sid : live) persist_session(sid);
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
  drain_steps(wait);
}

}  // namespace rsgate::gateway
