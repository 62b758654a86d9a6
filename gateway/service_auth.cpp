// The service's front door (service.hpp): the router, who the caller is (a bearer token or a
// login cookie with its CSRF token), password login and logout. Every refused credential is
// journaled — a wrong password or token, a locked name or address — through a per-address
// throttle (refusal_throttle.hpp) so unauthenticated clients cannot grow the journal without
// bound; names that are not valid user names are journaled escaped, never dropped.
#include <fmt/format.h>

#include <boost/json/serialize.hpp>
#include <boost/json/value.hpp>

#include "auth/formats.hpp"
#include "auth/password.hpp"
#include "auth/session_key.hpp"
#include "auth/totp.hpp"
#include "gateway/accounts.hpp"
#include "core/log.hpp"
#include "core/timefmt.hpp"
#include "gateway/detail/service_common.hpp"
#include "gateway/http/request_input.hpp"
#include "gateway/service.hpp"

namespace json = boost::json;

namespace rsgate::gateway {

using namespace detail;

namespace {

constexpr micros kWebSessionLife = 8 * 3600 * kSecond;
constexpr micros kWebSessionIdle = 30 * 60 * kSecond;
constexpr std::size_t kMaxWebSessions = 10'000;
constexpr std::string_view kCookie = "rsgate_session";

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

// Endpoints without a body refuse one (it would be ignored, and ignoring input is how
// misspelled restrictions widened access before).
void no_body(const http_request& req) {
  if (!req.body.empty()) throw bad_input("this endpoint takes no request body");
}


}  // namespace

// Every path the service answers under /api/v1, in matching order (the first route whose
// method and path match runs). `{…}` matches one path segment, handed to the handler. The
// table is also what tests check docs/api/openapi.yaml against (api_routes).
const std::vector<service::api_route>& service::route_table() {
  using seg_t = std::vector<std::string>;
  static const std::vector<api_route> table = {
      // Without an account: login, logout, and the peer gateway with the pair's secret.
      {"POST", "/login", false, true, [](service& s, const principal*, const seg_t&, const http_request& r, const api::reply& d) { s.login(r, d); }},
      {"POST", "/logout", false, true, [](service& s, const principal*, const seg_t&, const http_request& r, const api::reply& d) { s.logout(r, d); }},
      {"GET", "/machines/{m}/where", false, false, [](service& s, const principal*, const seg_t& g, const http_request& r, const api::reply& d) { s.machine_where(g[1], r, d); }},
      // The caller and its tokens.
      {"GET", "/events", true, false, [](service& s, const principal* p, const seg_t&, const http_request& r, const api::reply& d) { s.subscribe_events(*p, r, d); }},
      {"GET", "/me", true, false, [](service& s, const principal* p, const seg_t&, const http_request& r, const api::reply& d) { s.me(*p, r, d); }},
      {"GET", "/tokens", true, false, [](service& s, const principal* p, const seg_t&, const http_request& r, const api::reply& d) { s.list_tokens(*p, r, d); }},
      {"POST", "/tokens", true, true, [](service& s, const principal* p, const seg_t&, const http_request& r, const api::reply& d) { s.create_token(*p, r, d); }},
      {"DELETE", "/tokens/{id}", true, false, [](service& s, const principal* p, const seg_t& g, const http_request& r, const api::reply& d) { s.revoke_token(*p, g[1], r, d); }},
      // Administration.
      {"GET", "/users", true, false, [](service& s, const principal* p, const seg_t&, const http_request& r, const api::reply& d) { s.admin_list_users(*p, r, d); }},
      {"POST", "/users", true, true, [](service& s, const principal* p, const seg_t&, const http_request& r, const api::reply& d) { s.admin_add_user(*p, r, d); }},
      {"POST", "/users/{name}/disable", true, false, [](service& s, const principal* p, const seg_t& g, const http_request& r, const api::reply& d) { s.admin_change_user(*p, g[1], "disable", r, d); }},
      {"POST", "/users/{name}/enable", true, false, [](service& s, const principal* p, const seg_t& g, const http_request& r, const api::reply& d) { s.admin_change_user(*p, g[1], "enable", r, d); }},
      {"POST", "/users/{name}/password", true, true, [](service& s, const principal* p, const seg_t& g, const http_request& r, const api::reply& d) { s.admin_change_user(*p, g[1], "password", r, d); }},
      {"POST", "/users/{name}/totp", true, false, [](service& s, const principal* p, const seg_t& g, const http_request& r, const api::reply& d) { s.admin_change_user(*p, g[1], "totp", r, d); }},
      {"GET", "/machines", true, false, [](service& s, const principal* p, const seg_t&, const http_request& r, const api::reply& d) { s.admin_list_machines(*p, r, d); }},
      {"POST", "/machines", true, true, [](service& s, const principal* p, const seg_t&, const http_request& r, const api::reply& d) { s.admin_enroll_machine(*p, r, d); }},
      {"GET", "/machines/{m}/profile", true, false, [](service& s, const principal* p, const seg_t& g, const http_request& r, const api::reply& d) { s.admin_machine_profile(*p, g[1], r, d); }},
      {"DELETE", "/machines/{m}", true, false, [](service& s, const principal* p, const seg_t& g, const http_request& r, const api::reply& d) { s.admin_revoke_machine(*p, g[1], r, d); }},
      // Sessions ("attach" before "{id}").
      {"GET", "/sessions", true, false, [](service& s, const principal* p, const seg_t&, const http_request& r, const api::reply& d) { s.list_sessions(*p, r, d); }},
      {"POST", "/sessions/attach", true, true, [](service& s, const principal* p, const seg_t&, const http_request& r, const api::reply& d) { s.attach(*p, r, d); }},
      {"GET", "/sessions/{id}", true, false, [](service& s, const principal* p, const seg_t& g, const http_request& r, const api::reply& d) { s.get_session(*p, g[1], r, d); }},
      {"DELETE", "/sessions/{id}", true, false, [](service& s, const principal* p, const seg_t& g, const http_request& r, const api::reply& d) { s.end_session(*p, g[1], r, d); }},
      {"POST", "/sessions/{id}/grants", true, true, [](service& s, const principal* p, const seg_t& g, const http_request& r, const api::reply& d) { s.add_grant(*p, g[1], r, d); }},
      {"PATCH", "/sessions/{id}/grants/{gid}", true, true, [](service& s, const principal* p, const seg_t& g, const http_request& r, const api::reply& d) { s.change_grant(*p, g[1], g[3], r, d); }},
      {"DELETE", "/sessions/{id}/grants/{gid}", true, false, [](service& s, const principal* p, const seg_t& g, const http_request& r, const api::reply& d) { s.revoke_grant(*p, g[1], g[3], r, d); }},
      {"POST", "/sessions/{id}/transfer", true, true, [](service& s, const principal* p, const seg_t& g, const http_request& r, const api::reply& d) { s.transfer(*p, g[1], r, d); }},
      {"POST", "/sessions/{id}/channels", true, true, [](service& s, const principal* p, const seg_t& g, const http_request& r, const api::reply& d) { s.open_channel(*p, g[1], r, d); }},
      // Audit.
      {"GET", "/pmrs/{pmr}/sessions", true, false, [](service& s, const principal* p, const seg_t& g, const http_request& r, const api::reply& d) { s.pmr_sessions(*p, g[1], r, d); }},
      {"GET", "/journal", true, false, [](service& s, const principal* p, const seg_t&, const http_request& r, const api::reply& d) { s.journal_query(*p, r, d); }},
      {"GET", "/journal/export", true, false, [](service& s, const principal* p, const seg_t&, const http_request& r, const api::reply& d) { s.journal_export(*p, r, d); }},
      {"GET", "/journal/verify", true, false, [](service& s, const principal* p, const seg_t&, const http_request& r, const api::reply& d) { s.journal_verify(*p, r, d); }},
  };
  return table;
}

std::vector<std::pair<std::string, std::string>> service::api_routes() {
  std::vector<std::pair<std::string, std::string>> out;
  for (auto& r : route_table()) out.emplace_back(r.method, "/api/v1" + std::string(r.path));
  return out;
}

namespace {

// Does `path` (a route's template, "/sessions/{id}") match these decoded segments?
bool matches(std::string_view path, const std::vector<std::string>& seg) {
  std::size_t i = 0;
  path.remove_prefix(1);
  while (!path.empty()) {
    auto slash = path.find('/');
    auto part = path.substr(0, slash);
    if (i >= seg.size() || (!part.starts_with('{') && seg[i] != part)) return false;
    ++i;
    if (slash == std::string_view::npos) break;
    path.remove_prefix(slash + 1);
  }
  return i == seg.size();
}

}  // namespace

void service::route(const http_request& req, std::string_view path, const api::reply& done) {
  auto seg = path_segments(path);
  const api_route* found = nullptr;
  std::string allowed;
  for (auto& r : route_table()) {
    if (!matches(r.path, seg)) continue;
    if (r.method == req.method && !found) found = &r;
    if (allowed.find(r.method) == std::string::npos) allowed += (allowed.empty() ? "" : ", ") + std::string(r.method);
  }
  // Routes for the caller's account first authenticate (an unknown path answers 401 to
  // whoever is not signed in, as before, and 404 or 405 only to those who are).
  std::optional<principal> p;
  if (!found || found->authenticated) {
    const bool changing = req.method != "GET" && req.method != "HEAD";
    http_response err;
    std::optional<journal::entry> refused;
    p = authenticate(req, changing, err, refused);
    if (!p) return answer_refused(std::move(refused), std::move(err), done);
  }
  if (!found) {
    if (allowed.empty()) return done(json_error(404, "not_found", "no such endpoint"));
    auto r = json_error(405, "method_not_allowed", fmt::format("this endpoint takes {}", allowed));
    r.headers.emplace_back("Allow", allowed);
    return done(std::move(r));
  }
  if (!found->takes_body) no_body(req);
  found->run(*this, p ? &*p : nullptr, seg, req, done);
}

void service::answer_refused(std::optional<journal::entry> refused, http_response error, const api::reply& done) {
  if (!refused) return done(std::move(error));
  journal_.append(std::move(*refused), [done, error](const journal::append_result&) { done(error); });
}

std::optional<journal::entry> service::refuse_credential(const http_request& req, std::string_view method,
                                                        std::string_view reason, std::string_view secret_hmac) {
  {
    std::lock_guard lock(mu_);
    if (!credential_refusals_.admit(source_group(address_of(req.remote)), clock_.now())) return std::nullopt;  // summarized
  }
  journal::entry e;
  e.kind = "user.login";
  e.source = journal::escape_for_journal(req.remote);
  e.result = journal::outcome::denied;
  e.secret_hmac = std::string(secret_hmac);
  e.detail = json::serialize(json::object{{"method", method}, {"reason", reason}});
  return e;
}

std::optional<principal> service::authenticate_bearer(const http_request& req, std::string_view tok,
                                                      http_response& error, std::optional<journal::entry>& refused) {
  auto now = clock_.now();
  auto row = lookup_token(token_hash(tok));
  std::string why;
  if (!row) why = "unknown_token";
  else if (row->revoked) why = "revoked_token";
  else if (row->expires_at && row->expires_at <= now) why = "expired_token";
  std::optional<user_row> u;
  if (why.empty()) {
    u = lookup_user(row->user);
    if (!u || u->disabled) why = "disabled_account";
  }
  if (!why.empty()) {
    // The token's keyed hash lets an auditor holding a leaked token find its every use.
    refused = refuse_credential(req, "bearer", why, hmac_.hash_of(tok));
    error = json_error(401, "unauthorized",
                       why == "disabled_account" ? "the token's account is disabled"
                                                 : "the bearer token is unknown, revoked or expired");
    return std::nullopt;
  }
  if (u->must_change) {
    refused = refuse_credential(req, "bearer", "password_change_required", hmac_.hash_of(tok));
    error = json_error(403, "password_change_required",
                       "the account's one-time password must be changed first (POST /api/v1/login)");
    return std::nullopt;
  }
  return principal{u->name, parse_role(u->role).value_or(role::developer), false, row->token_hash, row->expires_at};
}

std::optional<principal> service::authenticate(const http_request& req, bool state_changing, http_response& error,
                                               std::optional<journal::entry>& refused) {
  auto bearer = req.header("Authorization");
  if (bearer.starts_with("Bearer ")) return authenticate_bearer(req, std::string_view(bearer).substr(7), error, refused);
  auto cookie = cookie_value(req);
  if (cookie.empty()) {
    error = json_error(401, "unauthorized", "log in (POST /api/v1/login) or send Authorization: Bearer <token>");
    return std::nullopt;
  }
  auto now = clock_.now();
  web_session ws;
  {
    std::lock_guard lock(mu_);
    auto it = web_sessions_.find(token_hash(cookie));
    if (it == web_sessions_.end() || it->second.expires_at <= now || it->second.idle_until <= now) {
      if (it != web_sessions_.end()) web_sessions_.erase(it);
      error = json_error(401, "unauthorized", "the login session has expired; log in again");
      return std::nullopt;
    }
    ws = it->second;
  }
  if (state_changing && !auth::equal_constant_time(req.header("X-CSRF-Token"), ws.csrf)) {
    refused = refuse_credential(req, "cookie", "csrf", "");
    error = json_error(403, "csrf", "missing or wrong X-CSRF-Token header");
    return std::nullopt;
  }
  auto u = lookup_user(ws.user);
  std::lock_guard lock(mu_);
  auto it = web_sessions_.find(token_hash(cookie));
  if (!u || u->disabled) {
    if (it != web_sessions_.end()) web_sessions_.erase(it);
    error = json_error(401, "unauthorized", "the account is disabled");
    return std::nullopt;
  }
  if (it != web_sessions_.end()) it->second.idle_until = now + kWebSessionIdle;
  return principal{ws.user, ws.user_role, true, "", ws.expires_at, token_hash(cookie)};
}

void service::login(const http_request& req, const api::reply& done) {
  query_params(req.target, {});
  auto body = body_object(req, {"user", "password", "totp", "new_password"});
  login_attempt a;
  a.name = str_field(body, "user", true, 64);
  a.password = str_field(body, "password", true, 1024);
  a.new_password = str_field(body, "new_password", false, 1024);
  a.totp = str_field(body, "totp", false, 32);
  a.now = clock_.now();
  a.source = source_group(address_of(req.remote));  // an IPv6 /64 is one source
  check_login(a);
  if (a.why.empty()) accept_login(req, a, done);
  else refuse_login(req, a, done);
}

void service::check_login(login_attempt& a) {
  {
    std::lock_guard lock(mu_);
    if (!login_user_limiter_.allowed(a.name, a.now) || !login_source_limiter_.allowed(a.source, a.now)) {
      a.why = "rate_limited";
      return;
    }
  }
  if (auth::is_valid_user_name(a.name)) a.user = lookup_user(a.name);
  // Argon2id takes ~0.1 s: never under a lock. An unknown user is checked against a fixed
  // hash so timing does not tell which accounts exist.
  static const std::string dummy = auth::hash_password("dummy password for timing");
  bool ok = auth::verify_password(a.user ? a.user->password_hash : dummy, a.password) && a.user && !a.user->disabled;
  if (!ok) {
    a.why = "bad_credentials";
    std::lock_guard lock(mu_);
    a.name_lockout = login_user_limiter_.record_failure(a.name, a.now);
    a.source_lockout = login_source_limiter_.record_failure(a.source, a.now);
  } else if (a.user->must_change && a.new_password.empty()) {
    a.why = "password_change_required";
  } else if (!a.new_password.empty() && (a.new_password.size() < 12 || a.new_password == a.password)) {
    a.why = "weak_new_password";
  } else {
    // Last, so that a refusal the caller can mend (a password to change) does not use up the code.
    check_second_factor(a);
  }
}

void service::check_second_factor(login_attempt& a) {
  std::optional<totp_row> enrolled;
  try {
    {
      std::lock_guard lock(state_mu_);
      enrolled = state_.find_totp(a.name);
    }
    if (!enrolled) {
      // A representative or administrator signs in with TOTP (SPEC §4): one not enrolled yet
      // (a data directory from before TOTP) is refused until an administrator enrols it.
      if (role_needs_totp(a.user->role)) a.why = "totp_not_enrolled";
      return;
    }
    bool accepted = false;
    if (auth::is_totp_code(a.totp)) {
      auto secret = sealing_key().open(enrolled->secret_sealed);
      if (!secret) throw std::runtime_error("the TOTP secret of " + a.name + " cannot be unsealed");
      auto matched = auth::totp_match(*secret, a.totp, a.now, enrolled->last_step);
      std::lock_guard lock(state_mu_);
      // Compare-and-set: of two logins with one code, only one moves the step forward.
      accepted = matched && state_.use_totp_step(a.name, *matched);
      if (accepted) a.second_factor = "totp";
    } else if (auto code = auth::normalize_session_key(a.totp)) {
      const auto hash = hmac_.hash_of(*code);
      std::lock_guard lock(state_mu_);
      accepted = state_.use_recovery_code(a.name, hash);
      if (accepted) {
        a.second_factor = "recovery_code";
        a.recovery_hash = hash;
      }
    }
    if (accepted) return;
  } catch (const std::exception& e) {
    log::error("login of {}: the second factor cannot be checked: {}", a.name, e.what());
    a.why = "state_unavailable";
    return;
  }
  a.why = a.totp.empty() ? "totp_required" : "wrong_totp";
  // A wrong or missing code counts like a wrong password: the same lock-out bounds guessing.
  std::lock_guard lock(mu_);
  a.name_lockout = login_user_limiter_.record_failure(a.name, a.now);
  a.source_lockout = login_source_limiter_.record_failure(a.source, a.now);
}

void service::refuse_login(const http_request& req, const login_attempt& a, const api::reply& done) {
  const auto& why = a.why;
  struct answer_of {
    std::string_view why;
    int status;
    const char* message;
  };
  static constexpr answer_of answers[] = {
      {"rate_limited", 429, "too many failed logins; try again later"},
      {"bad_credentials", 401, "invalid user name or password"},
      {"totp_required", 401,
       "this account signs in with a TOTP code too: send \"totp\", the 6 digits its authenticator app shows "
       "(or one of its recovery codes)"},
      {"wrong_totp", 401, "the TOTP code is wrong or was used already; wait for the next one"},
      {"totp_not_enrolled", 403,
       "this account has no TOTP yet; an administrator enrols it (rsgate user totp-reset NAME)"},
      {"password_change_required", 403, "this password must be changed: send new_password too"},
      {"state_unavailable", 503, "the account store cannot be written; try again later"},
      {"weak_new_password", 400, "the new password must be at least 12 characters and differ from the old"},
  };
  const answer_of* found = &answers[std::size(answers) - 1];
  for (auto& x : answers)
    if (x.why == why) found = &x;
  auto answer = json_error(found->status, why, found->message);
  if (why == "rate_limited") answer.headers.emplace_back("Retry-After", std::to_string(15 * 60));
  bool journal_it = true;
  if (why == "rate_limited" || why == "bad_credentials" || why == "wrong_totp" || why == "totp_required") {
    std::lock_guard lock(mu_);
    journal_it = credential_refusals_.admit(a.source, a.now);
  }
  // Lock-outs are always journaled: there is at most one per name or source per period.
  std::vector<journal::entry> entries;
  auto e = base_entry("user.login", principal{a.name}, req);
  e.result = journal::outcome::denied;
  json::object d{{"method", "password"}, {"reason", why}};
  if (!auth::is_valid_user_name(a.name)) d["name_escaped"] = true;  // actor shows it escaped
  e.detail = json::serialize(d);
  if (journal_it) entries.push_back(e);
  for (auto [locked, what] : {std::pair{a.name_lockout, "user name"}, std::pair{a.source_lockout, "address"}}) {
    if (!locked) continue;
    auto l = e;
    l.kind = "user.lockout";
    if (std::string_view(what) == "address") l.actor.clear();
    l.detail = json::serialize(json::object{{"locked", what}, {"reason", "too many failed logins"}, {"minutes", 15}});
    entries.push_back(std::move(l));
  }
  if (entries.empty()) return done(answer);
  auto pending = std::make_shared<std::atomic<int>>(static_cast<int>(entries.size()));
  for (auto& en : entries)
    journal_.append(std::move(en), [pending, done, answer](const journal::append_result&) {
      if (--*pending == 0) done(answer);
    });
}

void service::accept_login(const http_request& req, const login_attempt& a, const api::reply& done) {
  principal who{a.user->name, parse_role(a.user->role).value_or(role::developer), false};
  auto cookie = auth::random_token();
  auto csrf = auth::random_token();
  auto e = base_entry("user.login", who, req);
  e.secret_hmac = hmac_.hash_of(cookie);
  e.detail = json::serialize(
      json::object{{"method", "password"}, {"role", a.user->role}, {"password_changed", !a.new_password.empty()},
                   {"second_factor", a.second_factor.empty() ? json::value(nullptr) : json::value(a.second_factor)}});
  std::string new_hash = a.new_password.empty() ? "" : auth::hash_password(a.new_password);
  auto source = e.source;
  auto now = a.now;
  auto recovery = a.recovery_hash;
  journal_.append(std::move(e), [this, done, cookie, csrf, who, new_hash, now, source,
                                 recovery](const journal::append_result& r) {
    if (!r.ok()) {
      // No login without its record; a recovery code it took is given back (a TOTP code is
      // not: the next one comes within 30 s).
      if (!recovery.empty()) post([this, who, recovery] {
          try {
            std::lock_guard lock(state_mu_);
            state_.restore_recovery_code(who.user, recovery);
          } catch (const std::exception& ex) {
            log::error("cannot give back a recovery code of {}: {}", who.user, ex.what());
          }
        });
      return done(journal_unavailable());
    }
    // The rest writes state.db (a password change) and must not hold up the journal's thread.
    post([this, done, cookie, csrf, who, new_hash, now, source] {
      if (!new_hash.empty() && !store_password(who.user, new_hash, source))
        return done(json_error(500, "internal", "the new password could not be stored; log in again later"));
      open_web_session(done, cookie, csrf, who, now);
    });
  });
}

void service::open_web_session(const api::reply& done, const std::string& cookie, const std::string& csrf,
                               const principal& who, micros now) {
  {
    std::lock_guard lock(mu_);
    if (web_sessions_.size() >= kMaxWebSessions) {
      for (auto it = web_sessions_.begin(); it != web_sessions_.end();)
        it = it->second.idle_until <= now ? web_sessions_.erase(it) : std::next(it);
    }
    if (web_sessions_.size() >= kMaxWebSessions) return done(json_error(503, "busy", "too many login sessions"));
    web_sessions_[token_hash(cookie)] = {who.user, who.user_role, csrf, now + kWebSessionLife, now + kWebSessionIdle};
    login_user_limiter_.record_success(who.user);
  }
  auto resp = ok_json(200, json::object{{"user", who.user}, {"role", to_string(who.user_role)}, {"csrf_token", csrf},
                                        {"expires_at", format_rfc3339(now + kWebSessionLife)}});
  resp.headers.emplace_back("Set-Cookie", fmt::format("{}={}; HttpOnly; Secure; SameSite=Strict; Path=/; Max-Age={}",
                                                      kCookie, cookie, kWebSessionLife / kSecond));
  done(std::move(resp));
}

bool service::store_password(const std::string& user, const std::string& hash, const std::string& source) {
  try {
    std::lock_guard lock(state_mu_);
    state_.set_password(user, hash, false);
    return true;
  } catch (const std::exception& ex) {
    // The login's entry says the password was changed: say at once that it was not, so the
    // journal never tells of a change that did not happen. No cookie is issued.
    log::error("cannot store the new password of {}: {}", user, ex.what());
    journal::entry e;
    e.kind = "user.login";
    e.actor = user;
    e.source = source;
    e.result = journal::outcome::error;
    e.detail = json::serialize(json::object{{"method", "password"}, {"reason", "the new password could not be stored"}});
    journal_.append(std::move(e), [](const journal::append_result&) {});
    return false;
  }
}

void service::forget_web_sessions(const std::string& user) {
  std::lock_guard lock(mu_);
  for (auto it = web_sessions_.begin(); it != web_sessions_.end();) {
    if (it->second.user != user) {
      ++it;
      continue;
    }
    events_.close_login(it->first, kEventsLoggedOut);
    it = web_sessions_.erase(it);
  }
}

void service::logout(const http_request& req, const api::reply& done) {
  query_params(req.target, {});
  if (!req.body.empty()) (void)body_object(req, {});
  auto cookie = cookie_value(req);
  std::string user;
  {
    std::lock_guard lock(mu_);
    auto it = web_sessions_.find(token_hash(cookie));
    if (it != web_sessions_.end()) {
      user = it->second.user;
      events_.close_login(it->first, kEventsLoggedOut);
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

}  // namespace rsgate::gateway
