// The caller's own account over the API (service.hpp): GET /me, and the bearer tokens one
// holds (an administrator: anyone's), listed and revoked. A revocation is a step of its own
// serialized with the other changes of that account (the policy queue, key "account:NAME"):
// decided, journaled (admin.user token_revoke) and stored as one step, so two concurrent
// revocations of one token give one record and one refusal.
#include <boost/json/serialize.hpp>
#include <boost/json/value.hpp>

#include "core/log.hpp"
#include "core/timefmt.hpp"
#include "gateway/accounts.hpp"
#include "gateway/detail/service_common.hpp"
#include "gateway/http/request_input.hpp"
#include "gateway/service.hpp"

namespace json = boost::json;

namespace rsgate::gateway {

using namespace detail;

namespace {

json::value time_or_null(micros t) { return t ? json::value(format_rfc3339(t)) : json::value(nullptr); }

std::string state_of(const token_row& t, micros now) {
  return t.revoked ? "revoked" : (t.expires_at && t.expires_at <= now) ? "expired" : "active";
}

}  // namespace

void service::me(const principal& p, const http_request& req, const api::reply& done) {
  query_params(req.target, {});
  std::optional<totp_row> totp;
  {
    std::lock_guard lock(state_mu_);
    totp = state_.find_totp(p.user);
  }
  // A console that was reloaded needs its login's CSRF token again; only same-origin script
  // can read this answer (no CORS), and a bearer token needs none.
  json::value csrf = nullptr;
  if (!p.login_hash.empty()) {
    std::lock_guard lock(mu_);
    if (auto it = web_sessions_.find(p.login_hash); it != web_sessions_.end()) csrf = json::value(it->second.csrf);
  }
  done(ok_json(200, json::object{{"user", p.user},
                                 {"role", to_string(p.user_role)},
                                 {"auth", p.via_cookie ? "cookie" : "token"},
                                 {"token", p.token_hash.empty() ? json::value(nullptr) : json::value(token_id(p.token_hash))},
                                 {"expires_at", time_or_null(p.expires_at)},
                                 {"totp", totp.has_value()},
                                 {"totp_required", role_needs_totp(to_string(p.user_role))},
                                 {"recovery_codes_left", totp ? totp->recovery_codes : 0},
                                 {"csrf_token", csrf}}));
}

void service::list_tokens(const principal& p, const http_request& req, const api::reply& done) {
  query_params q(req.target, {"user"});
  std::string user = p.user;
  if (auto u = user_param(q, "user")) {
    if (*u != p.user && p.user_role != role::admin)
      return done(json_error(403, "forbidden", "only an administrator lists another account's tokens"));
    user = *u;
  } else if (p.user_role == role::admin) {
    user.clear();  // every account's
  }
  std::vector<token_row> rows;
  {
    std::lock_guard lock(state_mu_);
    rows = state_.tokens(user);
  }
  const auto now = clock_.now();
  json::array out;
  for (auto& t : rows)
    out.emplace_back(json::object{{"id", token_id(t.token_hash)},       {"user", t.user},
                                  {"created_at", format_rfc3339(t.created_at)}, {"expires_at", time_or_null(t.expires_at)},
                                  {"state", state_of(t, now)},            {"current", t.token_hash == p.token_hash}});
  done(ok_json(200, json::object{{"tokens", std::move(out)}}));
}

void service::revoke_token(const principal& p, const std::string& id_in, const http_request& req,
                           const api::reply& done) {
  query_params(req.target, {});
  if (!is_token_id(id_in)) return done(json_error(404, "not_found", "no such token"));
  std::optional<token_row> found;
  {
    std::lock_guard lock(state_mu_);
    found = state_.find_token_by_id(id_in);
  }
  const auto id = found ? token_id(found->token_hash) : id_in;  // the id as the gateway writes it
  // Another account's token is invisible to whoever may not revoke it.
  if (!found || (found->user != p.user && p.user_role != role::admin))
    return done(json_error(404, "not_found", "no such token"));
  const auto owner = found->user;
  in_session("account:" + owner, done, [this, p, id, req, owner](ticket t, const api::reply& reply) {
    auto e = base_entry("admin.user", p, req);
    e.subject = owner;
    std::optional<token_row> now_row;
    {
      std::lock_guard lock(state_mu_);
      now_row = state_.find_token_by_id(id);
    }
    if (!now_row) return reply(json_error(404, "not_found", "no such token"));
    e.detail = json::serialize(json::object{{"action", "token_revoke"}, {"user", owner}, {"token", id}});
    if (now_row->revoked)
      return deny(std::move(e), "conflict", "the token is revoked already",
                  json_error(409, "conflict", "the token is revoked already"), reply, std::move(t),
                  {{"action", "token_revoke"}, {"user", owner}, {"token", id}});
    const auto hash = now_row->token_hash;
    auto failure = e;
    record(std::move(e), std::move(t), [this, hash, id, reply, failure](const journal::append_result& r) mutable {
      if (!r.ok()) return reply(failed_record(r));
      try {
        std::lock_guard lock(state_mu_);
        (void)state_.revoke_token(hash);
      } catch (const std::exception& ex) {
        // The journal says revoked: say at once that it was not, and refuse.
        log::error("cannot revoke token {}: {}", id, ex.what());
        failure.result = journal::outcome::error;
        failure.detail = json::serialize(json::object{
            {"action", "token_revoke"}, {"token", id}, {"reason", "the revocation could not be stored"}});
        journal_.append(std::move(failure), [](const journal::append_result&) {});
        return reply(json_error(503, "state_unavailable", "the revocation could not be stored; try again"));
      }
      events_.close_token(hash, kEventsRevoked);
      reply(ok_json(200, json::object{{"id", id}, {"state", "revoked"}}));
    });
  });
}

}  // namespace rsgate::gateway
