// The tunnel side of sessions (service.hpp): what CHAP needs to know of a machine, the session
// a machine's tunnel serves, the session key the agent offers (a policy step: journaled before
// it can be used), the customer's stop (a removing step) and a tunnel that went away.
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <boost/json/value.hpp>

#include "core/log.hpp"
#include "core/timefmt.hpp"
#include "gateway/detail/service_common.hpp"
#include "gateway/service.hpp"
#include "auth/session_key.hpp"

namespace json = boost::json;

namespace rsgate::gateway {

using namespace detail;

std::optional<tunnel::machine_record> service::machine_record_for(const std::string& machine) {
  std::optional<machine_row> row;
  {
    std::lock_guard lock(tunnel_state_mu_);
    row = tunnel_state_.find_machine(machine);
  }
  if (row && row->md5_enabled) (void)sealing_key();
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

service::tunnel_join service::tunnel_claim(const std::string& machine, const std::string& resume) {
  std::lock_guard lock(mu_);
  tunnel_join j;
  if (auto* live_s = registry_.find_live_for_machine(machine)) {
    j.session_id = live_s->id;
    j.held = true;
    live_s->joining = true;
  } else {
    j.session_id = new_session_id();
  }
  if (!resume.empty() && resume != j.session_id) {
    // Only this machine's own sessions are named in the answer: another machine's id is as
    // unknown as one that never existed.
    auto* asked = registry_.find(resume);
    j.resume_refused = asked && asked->machine == machine && asked->state == session_state::ended
                           ? "the session has ended"
                           : "no such session of this machine";
  }
  return j;
}

void service::tunnel_abandon(const tunnel_join& j) {
  if (!j.held) return;
  std::lock_guard lock(mu_);
  if (auto* s = registry_.find(j.session_id)) s->joining = false;  // its grace goes on
}

std::string service::tunnel_commit(const tunnel_join& j, const std::string& machine, std::vector<std::string> scopes,
                                   std::shared_ptr<tunnel_link> link) {
  std::lock_guard lock(mu_);
  auto now = clock_.now();
  std::string id = j.session_id;
  if (j.held) {
    auto* s = registry_.find(id);
    if (s) s->joining = false;
    if (!s || s->state == session_state::ended) id = new_session_id();  // ended while we journaled
  }
  auto& s = registry_.open_for_machine(id, machine, std::move(scopes), now);
  links_[s.id] = link;
  publish_machine(machine, true, now);
  publish_session(s);
  if (s.state == session_state::active) {
    // A returning tunnel: the agent's picture of owner and grants may be stale (NOTICEs are
    // not kept while no tunnel serves the session), so it is told again.
    tunnel::notice n;
    n.event = "attach";
    n.actor = s.owner;
    n.pmr = s.pmr;
    notify(s.id, n);
    for (auto& g : s.grants)
      if (!g.revoked && (g.expires_at == 0 || g.expires_at > now)) notify(s.id, grant_notice(g));
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
  in_session(session_id, ignore, [this, session_id, hmac, lifetime, source, done](ticket t, const api::reply&) {
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

void service::customer_stopped(const std::string& session_id, const std::string& source, std::function<void(bool)> done) {
  auto finish = once_or<int>([done](int ended) { done(ended != 0); }, 0);
  auto ignore = [](http_response) {};
  in_session(session_id, ignore, [this, session_id, source, finish](ticket t, const api::reply&) {
    journal::entry e;
    {
      // Ending removes access: at once, recorded in order.
      std::lock_guard lock(mu_);
      auto* s = registry_.find(session_id);
      if (!s || s->state == session_state::ended) return finish(0);
      e = end_now(*s, "customer", "customer", "");
    }
    e.source = source;
    record_done(session_id, std::move(e), std::move(t), [finish] { finish(1); });
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
    publish_session(*s);
  }
  if (auto* s = registry_.find(session_id)) publish_machine(s->machine, false, clock_.now());
}

}  // namespace rsgate::gateway
