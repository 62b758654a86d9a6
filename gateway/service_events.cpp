// Live events (service.hpp; docs/api.md §5.6): GET /events subscribes the caller, and the
// service publishes each session's object after every policy step of that session (the
// after-step hook, so an event never shows a change before it is kept), when its tunnel comes
// or goes, and its channels' byte counts every housekeeping pass. event_hub decides who gets
// what; this file decides what a session looks like now and whose credential still holds.
#include <algorithm>
#include <boost/json/serialize.hpp>

#include "core/timefmt.hpp"
#include "gateway/detail/service_common.hpp"
#include "gateway/http/request_input.hpp"
#include "gateway/service.hpp"

namespace json = boost::json;

namespace rsgate::gateway {

using namespace detail;

void service::subscribe_events(const principal& p, const http_request& req, const api::reply& done) {
  query_params(req.target, {});
  std::vector<std::string> initial;
  initial.push_back(event_hub::frame(
      "ready", json::serialize(json::object{{"user", p.user},
                                            {"role", to_string(p.user_role)},
                                            {"keepalive_seconds", event_hub::kKeepaliveSeconds}})));
  std::shared_ptr<event_subscription> sub;
  {
    // Under the lock every publish holds: no change falls between this state and the first
    // event after it.
    std::lock_guard lock(mu_);
    auto visible = registry_.visible_to(p.user, clock_.now());
    std::sort(visible.begin(), visible.end(), [](const session* a, const session* b) {
      return a->created_at != b->created_at ? a->created_at > b->created_at : a->id > b->id;
    });
    if (visible.size() > event_hub::kMaxInitialSessions) visible.resize(event_hub::kMaxInitialSessions);
    std::reverse(visible.begin(), visible.end());  // oldest first, as they happened
    for (auto* v : visible) {
      auto* s = registry_.find(v->id);
      refresh_channel_bytes(*s);
      initial.push_back(event_hub::frame("session", json::serialize(session_json(*s))));
    }
    sub = events_.subscribe({p.user, p.user_role, p.login_hash, p.token_hash, p.expires_at}, initial);
  }
  if (!sub)
    return done(json_error(429, "too_many_streams",
                           "too many event streams are open (8 per account, 1000 in all); close one"));
  http_response r;
  r.content_type = "text/event-stream; charset=utf-8";
  r.events = std::move(sub);
  done(std::move(r));
}

void service::refresh_channel_bytes(session& s) {
  for (auto& [serial, c] : s.channels) {
    auto it = channel_links_.find(serial);
    auto link = it == channel_links_.end() ? nullptr : it->second.lock();
    if (!link) continue;
    std::lock_guard cl(link->mu);
    c.bytes_to_agent = link->bytes_to_agent;
    c.bytes_from_agent = link->bytes_from_agent;
  }
}

void service::publish_session(session& s) {
  refresh_channel_bytes(s);
  events_.publish_session(s.id, json::serialize(session_json(s)), session_registry::audience(s, clock_.now()),
                          s.state == session_state::ended);
}

void service::publish_machine(const std::string& machine, bool online, micros at) {
  events_.publish_machine(
      json::serialize(json::object{{"machine", machine}, {"online", online}, {"since", format_rfc3339(at)}}));
}

void service::housekeeping_events(micros now) {
  if (events_.subscriptions() == 0) return;
  {
    std::lock_guard lock(mu_);
    for (auto* s : registry_.live_sessions())
      if (!s->channels.empty()) publish_session(*s);  // sent only when a count moved
  }
  if (now - events_checked_at_ < kEventsRecheck) return;
  events_checked_at_ = now;
  // Logouts, revocations and disabling through this gateway end their streams at once; this
  // finds what ended otherwise: expiry, idleness, and changes by rsgate's CLI (state.db).
  std::map<std::string, bool> enabled;  // by user, looked up once a pass
  events_.close_if([&](const event_subscription::owner& o) -> std::string_view {
    if (o.expires_at && o.expires_at <= now) return kEventsExpired;
    if (!o.login_hash.empty()) {
      std::lock_guard lock(mu_);
      auto it = web_sessions_.find(o.login_hash);
      if (it == web_sessions_.end()) return kEventsLoggedOut;
      if (it->second.expires_at <= now || it->second.idle_until <= now) return kEventsExpired;
    } else {
      auto t = lookup_token(o.token_hash);
      if (!t || t->revoked) return kEventsRevoked;
    }
    auto [it, fresh] = enabled.try_emplace(o.user, false);
    if (fresh) {
      auto u = lookup_user(o.user);
      it->second = u && !u->disabled;
    }
    return it->second ? std::string_view() : kEventsDisabled;
  });
}

}  // namespace rsgate::gateway
