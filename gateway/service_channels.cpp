// Channels through the API (service.hpp, docs/api.md §5.5): a one-time token for the channel
// stream, its redemption — where the permission is checked again and channel.open is
// journaled before the agent is asked (journal before access) — and the channel's end,
// recorded with its bytes and duration. Redemption and the record of the end are policy steps
// of the session, so they are ordered with the grants and revocations that decide them.
#include <fmt/format.h>

#include <boost/json/serialize.hpp>
#include <boost/json/value.hpp>

#include "auth/password.hpp"
#include "gateway/detail/service_common.hpp"
#include "gateway/http/request_input.hpp"
#include "gateway/service.hpp"

namespace json = boost::json;

namespace rsgate::gateway {

using namespace detail;

namespace {

constexpr micros kTicketLife = 60 * kSecond;
constexpr std::size_t kMaxTickets = 10'000;

}  // namespace

void service::open_channel(const principal& p, const std::string& id, const http_request& req, const api::reply& done) {
  query_params(req.target, {});
  auto body = body_object(req, {"scope", "access_type"});
  auto scope = str_field(body, "scope", true, 64);
  auto type = str_field(body, "access_type", true, 32);
  if (!tunnel::is_scope_name(scope)) throw bad_input("malformed scope name");
  if (!tunnel::is_access_type(type)) throw bad_input(fmt::format("unknown access type '{}'", type));
  in_session(id, done, [this, p, id, req, scope, type](ticket t, const api::reply& reply) {
    auto e = base_entry("channel.open", p, req);
    std::string token;
    std::optional<refusal> r;
    {
      std::lock_guard lock(mu_);
      auto* s = registry_.find(id);
      if (!s) return reply(json_error(404, "not_found", "no such session"));
      about(e, *s);
      e.scope = scope;
      e.access_type = type;
      auto now = clock_.now();
      r = registry_.check_channel(*s, p.user, scope, type, now);
      if (!r) {
        for (auto it = tickets_.begin(); it != tickets_.end();)
          it = it->second.expires_at <= now ? tickets_.erase(it) : std::next(it);
        if (tickets_.size() >= kMaxTickets) r = refusal{429, "rate_limited", "too many pending channel tokens"};
      }
      if (!r) {
        // The channel itself is journaled (channel.open) when its stream connects, before the
        // agent is asked to open it; the ticket only lets that stream find its session.
        token = auth::random_token();
        tickets_[token_hash(token)] = {id, p.user, scope, type, now + kTicketLife};
      }
    }
    if (r) return deny(std::move(e), *r, reply, std::move(t));
    reply(ok_json(201, json::object{{"token", token}, {"expires_in", kTicketLife / kSecond},
                                   {"stream", "/api/v1/channels/stream"}}));
  });
}

void service::redeem_channel(const std::string& token, const std::string& source,
                             std::function<void(std::variant<channel_grant, http_response>)> done_in) {
  using answer = std::variant<channel_grant, http_response>;
  auto done = once_or<answer>(std::move(done_in),
                              json_error(500, "internal", "the gateway failed to handle this request"));
  channel_ticket tk;
  {
    std::lock_guard lock(mu_);
    auto it = tickets_.find(token_hash(token));
    if (it == tickets_.end() || it->second.expires_at <= clock_.now()) {
      if (it != tickets_.end()) tickets_.erase(it);
      return done(json_error(401, "unauthorized", "unknown or expired channel token"));
    }
    tk = it->second;
    tickets_.erase(it);  // one use
  }
  auto reply = [done](http_response r) { done(std::move(r)); };
  in_session(tk.session_id, reply, [this, tk, source, reply, done](ticket t, const api::reply&) {
    journal::entry e;
    channel_grant g;
    std::optional<refusal> refused;
    {
      std::lock_guard lock(mu_);
      auto* s = registry_.find(tk.session_id);
      if (!s) return done(json_error(404, "not_found", "no such session"));
      e.kind = "channel.open";
      e.actor = tk.user;
      e.source = journal::escape_for_journal(source);
      about(e, *s);
      e.scope = tk.scope;
      e.access_type = tk.access_type;
      // The grant may have been revoked, or the session ended, since the token was issued.
      refused = registry_.check_channel(*s, tk.user, tk.scope, tk.access_type, clock_.now());
      auto l = links_.find(s->id);
      auto link = l == links_.end() ? nullptr : l->second.lock();
      if (!refused && !link) {
        // Between a dropped tunnel and its reconnection (or the end of the grace period): a
        // refusal like the others, so it is journaled like them.
        refused = refusal{409, "tunnel_down", "the customer's tunnel is not connected"};
      }
      if (!refused && has_unrecorded(s->id)) return done(journal_unavailable());
      if (!refused) g = {s->id, tk.user, tk.scope, tk.access_type, link};
    }
    if (refused && refused->code == "tunnel_down")
      return deny(std::move(e), refused->code, refused->message, json_error(409, "conflict", refused->message), reply,
                  std::move(t));
    if (refused) return deny(std::move(e), *refused, reply, std::move(t));
    record(std::move(e), std::move(t), [g, done](const journal::append_result& r) {
      if (r.ok()) return done(g);
      done(r.ec == journal::errc::invalid_entry ? json_error(500, "internal", "the journal entry could not be built")
                                                : journal_unavailable());
    });
  });
}

bool service::channel_opened(const std::shared_ptr<channel_link>& c) {
  std::string refused;
  {
    std::lock_guard lock(mu_);
    auto* s = registry_.find(c->session_id);
    // The grant may have been revoked (or the session ended) while the agent was connecting:
    // such a channel is closed at once instead of being registered.
    if (!s) refused = "the session is gone";
    else if (registry_.check_channel(*s, c->user, c->scope, c->access_type, clock_.now())) refused = "access revoked";
    if (refused.empty()) {
      c->serial = ++next_channel_serial_;
      channel_links_[c->serial] = c;
      channel_info ci;
      ci.serial = c->serial;
      ci.id = c->id;
      ci.user = c->user;
      ci.scope = c->scope;
      ci.access_type = c->access_type;
      ci.opened_at = c->opened_at;
      registry_.commit_channel(*s, std::move(ci));
      publish_session(*s);
      return true;
    }
  }
  c->close_for(refused);
  if (auto t = c->tunnel.lock()) t->channel_close(c->id, refused);
  return false;
}

void service::record_approval(const std::shared_ptr<channel_link>& c, bool opening, std::function<void(bool)> done_in) {
  auto done = once_or<bool>(std::move(done_in), false);
  journal::entry e;
  e.kind = "channel.approval";
  e.actor = "customer";  // decided at the agent: no address of the vendor's side
  e.session_id = c->session_id;
  e.scope = c->scope;
  e.access_type = c->access_type;
  bool approved = false;
  {
    std::lock_guard cl(c->mu);
    approved = c->decision == "approved";
    json::object d{{"channel", c->id}, {"decision", c->decision}, {"requested_by", c->user},
                   {"approval_seconds", c->answer_seconds - tunnel::kHandshakeTimeoutSeconds}};
    if (!c->decided_by.empty()) d["by"] = c->decided_by;
    if (!approved)
      d["reason"] = c->decision == "timeout" ? "the customer did not decide in time" : "refused by the customer";
    else if (!opening)
      d["reason"] = "approved, but the channel did not open: " + c->reason.substr(0, 200);
    e.detail = json::serialize(d);
  }
  if (!approved) e.result = journal::outcome::denied;
  auto sid = c->session_id;
  auto failed = [done](http_response) { done(false); };
  in_session(sid, failed, [this, sid, e, approved, opening, done](ticket t, const api::reply&) mutable {
    {
      std::lock_guard lock(mu_);
      if (auto* s = registry_.find(sid)) about(e, *s);
      // Access waits for every earlier record of the session (journal before access).
      if (approved && opening && has_unrecorded(sid)) return done(false);
    }
    if (!approved || !opening) {  // no access follows: written in order like every refusal
      record_done(sid, std::move(e), std::move(t));
      return done(true);
    }
    record(std::move(e), std::move(t), [done](const journal::append_result& r) { done(r.ok()); });
  }, true);
}

void service::channel_closed(const std::shared_ptr<channel_link>& c, const std::string& source) {
  journal::entry e;
  e.kind = "channel.close";
  e.actor = c->user;
  e.source = journal::escape_for_journal(source);
  e.session_id = c->session_id;
  e.scope = c->scope;
  e.access_type = c->access_type;
  {
    std::lock_guard cl(c->mu);
    e.detail = json::serialize(json::object{{"channel", c->id}, {"bytes_to_agent", c->bytes_to_agent},
                                            {"bytes_from_agent", c->bytes_from_agent},
                                            {"duration_ms", (clock_.now() - c->opened_at) / 1000},
                                            {"reason", c->reason}});
  }
  auto ignore = [](http_response) {};
  auto sid = c->session_id;
  auto serial = c->serial;  // 0: it was never registered
  in_session(sid, ignore, [this, sid, serial, e](ticket t, const api::reply&) mutable {
    {
      std::lock_guard lock(mu_);
      channel_links_.erase(serial);
      if (auto* s = registry_.find(sid)) {
        if (serial) (void)registry_.close_channel(*s, serial);
        about(e, *s);
      }
    }
    record_done(sid, std::move(e), std::move(t));
  }, true);
}

}  // namespace rsgate::gateway
