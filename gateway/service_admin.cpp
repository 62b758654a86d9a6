// Administration over the API (SPEC §4; admin role only, and never access to customer
// sessions): accounts, enrolled machines and their agent profiles. Each change is what the
// `rsgate user|machine` commands do, journaled the same way (`admin.user`, `admin.machine`,
// actor the administrator, source the client) before it takes effect, and serialized per
// account or machine in the policy queue (keys "account:NAME", "machine:M"), so concurrent
// requests cannot both decide on the same state. Refusals are journaled too.
#include <fmt/format.h>

#include <boost/json/serialize.hpp>
#include <boost/json/value.hpp>

#include "auth/formats.hpp"
#include "auth/password.hpp"
#include "core/files.hpp"
#include "core/log.hpp"
#include "core/timefmt.hpp"
#include "gateway/accounts.hpp"
#include "gateway/config.hpp"
#include "gateway/detail/service_common.hpp"
#include "gateway/enroll.hpp"
#include "gateway/http/request_input.hpp"
#include "gateway/service.hpp"
#include "journal/reader.hpp"

namespace json = boost::json;

namespace rsgate::gateway {

using namespace detail;

namespace {

constexpr micros kProfileLife = 15 * 60 * kSecond;  // a profile waits this long for its one download
constexpr std::size_t kMaxPendingProfiles = 1'000;

json::value time_or_null(micros t) { return t ? json::value(format_rfc3339(t)) : json::value(nullptr); }

json::object enrolment_json(const totp_enrolment& e) {
  json::array codes;
  for (auto& c : e.recovery_codes) codes.emplace_back(c);
  return {{"uri", e.uri}, {"qr_svg", qr_svg(e.uri)}, {"recovery_codes", std::move(codes)}};
}

}  // namespace

void service::set_enrollment_defaults(enrollment_defaults d) {
  std::lock_guard lock(admin_mu_);
  enrollment_ = std::move(d);
}

std::string service::issuer() {
  std::lock_guard lock(admin_mu_);
  return enrollment_.issuer;
}

bool service::admin_only(const principal& p, const http_request& req, std::string_view kind, const api::reply& done) {
  if (p.user_role == role::admin) return true;
  auto e = base_entry(std::string(kind), p, req);
  deny(std::move(e), "forbidden", "administration is for administrators",
       json_error(403, "forbidden", "administration is for administrators"), done, std::nullopt,
       {{"endpoint", req.method + " " + req.target.substr(0, req.target.find('?')).substr(0, 128)}});
  return false;
}

// --- accounts ---

void service::admin_list_users(const principal& p, const http_request& req, const api::reply& done) {
  query_params(req.target, {});
  if (!admin_only(p, req, "admin.user", done)) return;
  std::vector<std::pair<user_row, std::optional<totp_row>>> rows;
  {
    std::lock_guard lock(state_mu_);
    for (auto& u : state_.users()) {
      auto totp = state_.find_totp(u.name);
      rows.emplace_back(u, std::move(totp));
    }
  }
  json::array out;
  for (auto& [u, totp] : rows) {
    out.emplace_back(json::object{{"user", u.name},
                                  {"role", u.role},
                                  {"disabled", u.disabled},
                                  {"must_change_password", u.must_change},
                                  {"totp", totp.has_value()},
                                  {"recovery_codes_left", totp ? totp->recovery_codes : 0},
                                  {"created_at", format_rfc3339(u.created_at)}});
  }
  done(ok_json(200, json::object{{"users", std::move(out)}}));
}

void service::admin_add_user(const principal& p, const http_request& req, const api::reply& done) {
  query_params(req.target, {});
  if (!admin_only(p, req, "admin.user", done)) return;
  auto body = body_object(req, {"user", "role", "password"});
  auto name = str_field(body, "user", true, 64);
  auto role_name = str_field(body, "role", true, 32);
  auto password = str_field(body, "password", false, 1024);
  if (!auth::is_valid_user_name(name))
    throw bad_input("\"user\": 1-64 of A-Z a-z 0-9 . _ @ -, starting with a letter or digit");
  if (!is_role(role_name)) throw bad_input("\"role\" must be representative, developer, auditor or admin");
  if (body.contains("password") && password.size() < 12) throw bad_input("\"password\" must be at least 12 characters");
  in_session("account:" + name, done, [this, p, req, name, role_name, password](ticket t, const api::reply& reply) {
    auto e = base_entry("admin.user", p, req);
    e.subject = name;
    detail_fields what{{"action", "add"}, {"user", name}, {"role", role_name}};
    if (lookup_user(name))
      return deny(std::move(e), "conflict", "the user exists already",
                  json_error(409, "conflict", fmt::format("user '{}' exists already", name)), reply, std::move(t), what);
    e.detail = json::serialize(json::object{{"action", "add"}, {"user", name}, {"role", role_name}});
    record(std::move(e), std::move(t), [this, name, role_name, password, reply](const journal::append_result& r) {
      if (!r.ok()) return reply(failed_record(r));
      const bool one_time = password.empty();
      const auto pw = one_time ? auth::random_secret(100) : password;
      json::object answer{{"user", name}, {"role", role_name}, {"must_change_password", one_time}};
      try {
        const user_row row{name, role_name, auth::hash_password(pw), one_time, false, r.ts};
        if (role_needs_totp(role_name)) {
          // The account and its enrolment are stored together, or neither is.
          auto enrolment = prepare_totp(layout_, name, issuer());
          std::lock_guard lock(state_mu_);
          state_.add_user_with_totp(row, enrolment.secret_sealed, enrolment.code_hashes);
          answer["totp"] = enrolment_json(enrolment.shown);
        } else {
          std::lock_guard lock(state_mu_);
          state_.add_user(row);
        }
      } catch (const std::exception& ex) {
        log::error("cannot store the new account {}: {}", name, ex.what());
        return reply(json_error(503, "state_unavailable", "the account could not be stored; try again"));
      }
      if (one_time) answer["one_time_password"] = pw;
      reply(ok_json(201, answer));
    });
  });
}

void service::admin_change_user(const principal& p, const std::string& name, const std::string& action,
                                const http_request& req, const api::reply& done) {
  query_params(req.target, {});
  if (!admin_only(p, req, "admin.user", done)) return;
  std::string password;
  if (action == "password" && !req.body.empty()) {
    auto body = body_object(req, {"password"});
    password = str_field(body, "password", false, 1024);
    if (body.contains("password") && password.size() < 12)
      throw bad_input("\"password\" must be at least 12 characters");
  } else if (!req.body.empty()) {
    (void)body_object(req, {});
  }
  if (!auth::is_valid_user_name(name)) return done(json_error(404, "not_found", "no such user"));
  // The CLI's names: disable, enable, passwd, totp-reset.
  const std::string recorded = action == "password" ? "passwd" : action == "totp" ? "totp-reset" : action;
  in_session("account:" + name, done, [this, p, req, name, action, recorded, password](ticket t, const api::reply& reply) {
    auto e = base_entry("admin.user", p, req);
    e.subject = name;
    detail_fields what{{"action", recorded}, {"user", name}};
    auto u = lookup_user(name);
    std::optional<std::pair<int, std::string>> refused;
    if (!u) refused = {404, fmt::format("no user '{}'", name)};
    else if (action == "enable" && !u->disabled) refused = {409, fmt::format("user '{}' is not disabled", name)};
    else if (action == "disable" && u->disabled) refused = {409, fmt::format("user '{}' is disabled already", name)};
    else if (action == "disable" && name == p.user) refused = {409, "an administrator cannot disable their own account"};
    if (refused)
      return deny(std::move(e), refused->first == 404 ? "not_found" : "conflict", refused->second,
                  json_error(refused->first, refused->first == 404 ? "not_found" : "conflict", refused->second), reply,
                  std::move(t), what);
    e.detail = json::serialize(json::object{{"action", recorded}, {"user", name}});
    record(std::move(e), std::move(t), [this, name, action, password, reply](const journal::append_result& r) {
      if (!r.ok()) return reply(failed_record(r));
      json::object answer{{"user", name}};
      try {
        std::lock_guard lock(state_mu_);
        if (action == "disable" || action == "enable") {
          (void)state_.set_disabled(name, action == "disable");
          answer["disabled"] = action == "disable";
          if (action == "disable") events_.close_user(name, kEventsDisabled);
        } else if (action == "password") {
          const bool one_time = password.empty();
          const auto pw = one_time ? auth::random_secret(100) : password;
          (void)state_.set_password(name, auth::hash_password(pw), one_time);
          answer["must_change_password"] = one_time;
          if (one_time) answer["one_time_password"] = pw;
        } else {
          answer["totp"] = enrolment_json(enrol_totp(state_, layout_, name, issuer(), r.ts));
        }
        // A reset credential must not leave its old login sessions open.
        if (action == "password" || action == "totp") forget_web_sessions(name);
      } catch (const std::exception& ex) {
        log::error("cannot store the change of account {}: {}", name, ex.what());
        return reply(json_error(503, "state_unavailable", "the change could not be stored; try again"));
      }
      reply(ok_json(200, answer));
    });
  });
}

// --- machines ---

void service::admin_list_machines(const principal& p, const http_request& req, const api::reply& done) {
  query_params(req.target, {});
  if (!admin_only(p, req, "admin.machine", done)) return;
  std::vector<machine_row> rows;
  {
    std::lock_guard lock(state_mu_);
    rows = state_.machines();
  }
  // Online: a live session whose tunnel is up. Since when: the machine's last tunnel entry
  // (its authentication, or its close), found through the journal's machine index.
  auto& rd = journal_reader();
  auto last = rd.db(0).prepare(
      "SELECT ts FROM journal WHERE machine = ?1 AND kind IN ('tunnel.auth', 'tunnel.reauth', 'tunnel.close') "
      "AND outcome = 'ok' ORDER BY seq DESC LIMIT 1");
  json::array out;
  for (auto& m : rows) {
    bool online = false;
    {
      std::lock_guard lock(mu_);
      if (auto* s = registry_.find_live_for_machine(m.machine)) online = s->tunnel_up;
    }
    last.reset();
    last.bind(1, m.machine);
    const micros since = last.step() ? last.col_int(0) : 0;
    out.emplace_back(json::object{{"machine", m.machine},        {"revoked", m.revoked},
                                  {"md5", m.md5_enabled},        {"enrolled_at", format_rfc3339(m.enrolled_at)},
                                  {"revoked_at", time_or_null(m.revoked_at)}, {"online", online},
                                  {"since", time_or_null(since)}});
  }
  done(ok_json(200, json::object{{"machines", std::move(out)}}));
}

void service::admin_enroll_machine(const principal& p, const http_request& req, const api::reply& done) {
  query_params(req.target, {});
  if (!admin_only(p, req, "admin.machine", done)) return;
  auto body = body_object(req, {"type", "model", "serial", "scopes", "gateway", "backup", "server_name", "md5", "replace"});
  agent::profile prof;
  prof.type = auth::normalize_machine(str_field(body, "type", true, 8));
  prof.model = auth::normalize_machine(str_field(body, "model", true, 8));
  prof.serial = auth::normalize_machine(str_field(body, "serial", true, 16));
  if (!auth::is_valid_machine(prof.machine())) throw bad_input(std::string(auth::kMachineForm));
  for (auto& s : string_list_field(body, "scopes", true, 64, 256)) {
    try {
      prof.scopes.push_back(agent::parse_scope_mapping(s));
    } catch (const std::invalid_argument& e) {
      throw bad_input(fmt::format("\"scopes\": {}", e.what()));
    }
  }
  enrollment_defaults d;
  {
    std::lock_guard lock(admin_mu_);
    d = enrollment_;
  }
  prof.primary = str_field(body, "gateway", false, 300);
  if (prof.primary.empty()) prof.primary = d.gateway;
  if (prof.primary.empty())
    throw bad_input("\"gateway\" is required: this gateway has no public tunnel address configured (tunnel.public_address)");
  prof.backup = body.contains("backup") ? str_field(body, "backup", false, 300) : d.backup;
  for (auto* a : {&prof.primary, &prof.backup})
    if (!a->empty() && !is_valid_agent_address(*a)) throw bad_input("a gateway address is HOST:PORT, e.g. gw1.example.com:4433");
  prof.server_name = body.contains("server_name") ? str_field(body, "server_name", false, 253) : d.server_name;
  const bool md5 = bool_field(body, "md5", false), replace = bool_field(body, "replace", false);
  const auto machine = prof.machine();
  in_session("machine:" + machine, done, [this, p, req, prof, md5, replace, machine, d](ticket t, const api::reply& reply) mutable {
    auto e = base_entry("admin.machine", p, req);
    e.machine = machine;
    bool existed = false;
    {
      std::lock_guard lock(state_mu_);
      existed = state_.find_machine(machine).has_value();
    }
    if (existed && !replace)
      return deny(std::move(e), "conflict", "the machine is enrolled already",
                  json_error(409, "conflict", fmt::format("machine {} is enrolled already (\"replace\": true enrolls it "
                                                          "again with a new secret)", machine)),
                  reply, std::move(t), {{"action", "enroll"}});
    try {
      prof.ca_pem = read_file(layout_.ca_cert(), 1 << 20);
    } catch (const std::exception& ex) {
      log::error("enrollment of {}: {}", machine, ex.what());
      return reply(json_error(503, "state_unavailable", "the gateway's CA certificate cannot be read for the profile"));
    }
    enroll_options how{.md5 = md5, .replace = replace, .actor = p.user, .source = e.source, .receipt_keys = d.receipt_keys};
    std::string toml;
    try {
      // Its own state.db connection: enroll_machine journals (append_sync) before it stores,
      // and no request should wait for that on state_mu_.
      state_store st(layout_.state_db());
      toml = agent::to_toml(enroll_machine(layout_, journal_, st, std::move(prof), how));
    } catch (const enrollment_refused& ex) {
      return reply(json_error(503, "journal_unavailable", ex.what()));
    } catch (const std::exception& ex) {
      log::error("enrollment of {}: {}", machine, ex.what());
      return reply(json_error(503, "state_unavailable", "the enrollment could not be stored; try again"));
    }
    const auto now = clock_.now();
    {
      std::lock_guard lock(admin_mu_);
      for (auto it = profiles_.begin(); it != profiles_.end();)
        it = it->second.expires_at <= now ? profiles_.erase(it) : std::next(it);
      if (profiles_.size() >= kMaxPendingProfiles && !profiles_.contains(machine)) profiles_.erase(profiles_.begin());
      profiles_[machine] = {toml, now + kProfileLife};
    }
    reply(ok_json(201, json::object{{"machine", machine},
                                    {"replaced", existed},
                                    {"profile", fmt::format("/api/v1/machines/{}/profile", machine)},
                                    {"profile_expires_at", format_rfc3339(now + kProfileLife)}}));
  });
}

void service::admin_machine_profile(const principal& p, const std::string& machine_in, const http_request& req,
                                    const api::reply& done) {
  query_params(req.target, {});
  if (!admin_only(p, req, "admin.machine", done)) return;
  const auto machine = auth::normalize_machine(machine_in);
  std::optional<pending_profile> found;
  {
    std::lock_guard lock(admin_mu_);
    auto it = profiles_.find(machine);
    if (it != profiles_.end()) {
      if (it->second.expires_at > clock_.now()) found = it->second;
      profiles_.erase(it);  // once: the profile holds the machine's secret
    }
  }
  auto e = base_entry("admin.machine", p, req);
  if (auth::is_valid_machine(machine)) e.machine = machine;
  if (!found)
    return deny(std::move(e), "not_found", "no profile waits for download",
                json_error(404, "not_found",
                           "no agent profile waits for this machine: it was downloaded already, or 15 minutes passed, or "
                           "the machine was not enrolled here; enroll it again with \"replace\": true"),
                done, std::nullopt, {{"action", "profile_download"}});
  e.detail = R"({"action":"profile_download"})";
  auto kept = *found;
  journal_.append(std::move(e), [this, done, kept, machine](const journal::append_result& r) {
    if (!r.ok()) {
      // Not sent: it waits for the next try again (unless a new enrollment replaced it).
      std::lock_guard lock(admin_mu_);
      profiles_.try_emplace(machine, kept);
      return done(failed_record(r));
    }
    const auto& toml = kept.toml;
    http_response resp;
    resp.content_type = "application/toml";
    resp.body = toml;
    std::string file = machine;
    for (auto& c : file)
      if (c == '*') c = '_';
    resp.headers.emplace_back("Content-Disposition", "attachment; filename=\"" + file + ".toml\"");
    done(std::move(resp));
  });
}

void service::admin_revoke_machine(const principal& p, const std::string& machine_in, const http_request& req,
                                   const api::reply& done) {
  query_params(req.target, {});
  if (!admin_only(p, req, "admin.machine", done)) return;
  const auto machine = auth::normalize_machine(machine_in);
  if (!auth::is_valid_machine(machine)) return done(json_error(404, "not_found", "no such machine"));
  in_session("machine:" + machine, done, [this, p, req, machine](ticket t, const api::reply& reply) {
    auto e = base_entry("admin.machine", p, req);
    e.machine = machine;
    std::optional<machine_row> m;
    {
      std::lock_guard lock(state_mu_);
      m = state_.find_machine(machine);
    }
    if (!m || m->revoked) {
      const int status = m ? 409 : 404;
      const auto why = m ? fmt::format("machine {} is revoked already", machine) : fmt::format("machine {} is not enrolled", machine);
      return deny(std::move(e), status == 404 ? "not_found" : "conflict", why,
                  json_error(status, status == 404 ? "not_found" : "conflict", why), reply, std::move(t),
                  {{"action", "revoke"}});
    }
    e.detail = R"({"action":"revoke"})";
    record(std::move(e), std::move(t), [this, machine, reply](const journal::append_result& r) {
      if (!r.ok()) return reply(failed_record(r));
      try {
        std::lock_guard lock(state_mu_);
        (void)state_.revoke_machine(machine, r.ts);
      } catch (const std::exception& ex) {
        log::error("cannot revoke machine {}: {}", machine, ex.what());
        return reply(json_error(503, "state_unavailable", "the revocation could not be stored; try again"));
      }
      // The housekeeping ends its live session within a second, as after `rsgate machine revoke`.
      reply(ok_json(200, json::object{{"machine", machine}, {"revoked", true}}));
    });
  });
}

// --- tokens for others ---

void service::create_token(const principal& p, const http_request& req, const api::reply& done) {
  query_params(req.target, {});
  auto body = body_object(req, {"user", "expires_in"});
  auto user = body.contains("user") ? str_field(body, "user", true, 64) : p.user;
  // A token acts as its account without TOTP: over the API only for oneself, and only from a
  // console login (password and TOTP), so that neither an administrator nor a token (a
  // leaked one included) can mint lasting access for anyone. `rsgate token create` on the
  // gateway host makes tokens for others.
  if (user != p.user || !p.via_cookie) {
    auto e = base_entry("admin.user", p, req);
    e.subject = auth::is_valid_user_name(user) ? user : "";
    const auto why = user != p.user ? "a token for another account is made on the gateway host (rsgate token create)"
                                    : "tokens are made from a console login (password and TOTP), not with a token";
    return deny(std::move(e), "forbidden", why, json_error(403, "forbidden", why), done, std::nullopt,
                {{"action", "token_create"}});
  }
  const micros life = duration_field(body, "expires_in", 366 * 86400, "12h", "366d").value_or(30 * 86400 * kSecond);
  in_session("account:" + user, done, [this, p, req, user, life](ticket t, const api::reply& reply) {
    auto e = base_entry("admin.user", p, req);
    e.subject = user;
    auto u = lookup_user(user);
    if (!u || u->disabled)
      return deny(std::move(e), "not_found", "no active user",
                  json_error(404, "not_found", fmt::format("no active user '{}'", user)), reply, std::move(t),
                  {{"action", "token_create"}, {"user", user}});
    auto token = new_token();
    const auto now = clock_.now();
    e.secret_hmac = hmac_.hash_of(token);
    e.detail = json::serialize(json::object{{"action", "token_create"}, {"user", user},
                                            {"expires_at", format_rfc3339(now + life)},
                                            {"token", token_id(token_hash(token))}});
    record(std::move(e), std::move(t), [this, user, token, now, life, reply](const journal::append_result& r) {
      if (!r.ok()) return reply(failed_record(r));
      try {
        std::lock_guard lock(state_mu_);
        state_.add_token({token_hash(token), user, now, now + life, false});
      } catch (const std::exception& ex) {
        log::error("cannot store a token of {}: {}", user, ex.what());
        return reply(json_error(503, "state_unavailable", "the token could not be stored; try again"));
      }
      reply(ok_json(201, json::object{{"id", token_id(token_hash(token))}, {"user", user}, {"token", token},
                                      {"expires_at", format_rfc3339(now + life)}}));
    });
  });
}

}  // namespace rsgate::gateway
