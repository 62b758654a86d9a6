// Sessions through the API (service.hpp, docs/api.md §5): list, attach by key or machine,
// read one with its journal timeline, grant, revoke, transfer, end. Each change is one policy
// step of its session: attach, grant and transfer apply only once their entry is durable;
// revoke and end apply at once and are recorded in order (record_done).
#include <fmt/format.h>

#include <algorithm>
#include <cstdint>

#include <boost/json/serialize.hpp>
#include <boost/json/value.hpp>

#include "auth/formats.hpp"
#include "auth/password.hpp"
#include "auth/session_key.hpp"
#include "core/log.hpp"
#include "core/timefmt.hpp"
#include "gateway/detail/service_common.hpp"
#include "gateway/http/request_input.hpp"
#include "gateway/service.hpp"

namespace json = boost::json;

namespace rsgate::gateway {

using namespace detail;

namespace {

constexpr std::int64_t kMaxGrantSeconds = 7 * 86400;

// A grant's "scopes" and "access_types" (restriction_field), each name checked. `items` is
// empty when all are meant.
restriction scopes_field(const json::object& body) {
  auto r = restriction_field(body, "scopes", tunnel::kMaxScopes);
  for (auto& sc : r.items)
    if (!tunnel::is_scope_name(sc)) throw bad_input("malformed scope name in \"scopes\"");
  return r;
}
restriction access_types_field(const json::object& body) {
  auto r = restriction_field(body, "access_types", 16);
  for (auto& t : r.items)
    if (!tunnel::is_access_type(t)) throw bad_input(fmt::format("unknown access type '{}'", t));
  return r;
}

http_response session_gone() {
  return json_error(409, "ended", "the session is gone");
}

std::string user_field(const json::object& body, std::string_view key) {
  auto name = str_field(body, key, true, 64);
  if (!auth::is_valid_user_name(name)) throw bad_input(fmt::format("\"{}\" is not a valid user name", key));
  return name;
}

json::array names(const std::set<std::string>& items) {
  json::array a;
  if (items.empty()) a.emplace_back("*");
  for (auto& x : items) a.emplace_back(x);
  return a;
}

}  // namespace

// GET /sessions: the caller's sessions (owned or granted), filtered, sorted by creation time
// (newest first unless sort=created_at) and the id, a page at a time. The cursor is the last
// answer's last (created_at, id): the next page starts strictly after it, so sessions that
// come or go between pages never shift the pages (keyset pagination).
void service::list_sessions(const principal& p, const http_request& req, const api::reply& done) {
  if (!req.body.empty()) throw bad_input("this endpoint takes no request body");
  query_params q(req.target, {"state", "machine", "pmr", "owner", "sort", "limit", "cursor"});
  auto state = q.get("state");
  if (state && *state != "waiting" && *state != "active" && *state != "ended")
    throw bad_input("state must be waiting, active or ended");
  auto machine = q.get("machine");
  if (machine) {
    if (!auth::is_valid_machine(*machine)) throw bad_input(std::string(auth::kMachineForm));
    machine = auth::normalize_machine(*machine);
  }
  auto pmr = q.get("pmr");
  if (pmr) {
    if (!auth::is_valid_pmr(*pmr)) throw bad_input(std::string(auth::kPmrForm));
    pmr = auth::normalize_pmr(*pmr);
  }
  const auto owner = user_param(q, "owner");
  const auto sort = q.get("sort").value_or("-created_at");
  if (sort != "created_at" && sort != "-created_at") throw bad_input("sort must be created_at or -created_at");
  const bool newest_first = sort == "-created_at";
  const auto limit = q.whole("limit", 1, 200).value_or(50);
  // The cursor: "<created_at micros>.<session id>", as next_cursor gave it.
  std::optional<std::pair<micros, std::string>> after;
  if (auto c = q.get("cursor")) {
    auto dot = c->find('.');
    auto ts = dot == std::string::npos ? std::nullopt : parse_whole(std::string_view(*c).substr(0, dot), 0, INT64_MAX);
    if (!ts || c->size() - dot - 1 < 1 || c->size() - dot - 1 > 64) throw bad_input("cursor: use next_cursor as given");
    after = std::pair{*ts, c->substr(dot + 1)};
  }
  std::vector<const session*> rows;
  std::lock_guard lock(mu_);
  for (auto* s : registry_.visible_to(p.user, clock_.now())) {
    if (state && to_string(s->state) != *state) continue;
    if (machine && s->machine != *machine) continue;
    if (pmr && std::find(s->pmrs.begin(), s->pmrs.end(), *pmr) == s->pmrs.end()) continue;
    if (owner && s->owner != *owner) continue;
    const auto key = std::pair{s->created_at, s->id};
    if (after && (newest_first ? !(key < *after) : !(*after < key))) continue;
    rows.push_back(s);
  }
  auto order = [newest_first](const session* a, const session* b) {
    auto ka = std::pair{a->created_at, a->id}, kb = std::pair{b->created_at, b->id};
    return newest_first ? kb < ka : ka < kb;
  };
  const auto n = std::min<std::size_t>(rows.size(), static_cast<std::size_t>(limit));
  std::partial_sort(rows.begin(), rows.begin() + static_cast<long>(n), rows.end(), order);
  json::array out;
  for (std::size_t i = 0; i < n; ++i) out.emplace_back(session_json(*rows[i]));
  json::value next = nullptr;
  if (rows.size() > n) next = fmt::format("{}.{}", rows[n - 1]->created_at, rows[n - 1]->id);
  done(ok_json(200, json::object{{"sessions", std::move(out)}, {"next_cursor", next}}));
}

void service::attach(const principal& p, const http_request& req, const api::reply& done) {
  query_params(req.target, {});
  auto body = body_object(req, {"session_key", "machine", "pmr"});
  auto key = str_field(body, "session_key", false, 64);
  auto machine = str_field(body, "machine", false, 32);
  auto pmr = str_field(body, "pmr", true, 32);
  if (key.empty() == machine.empty()) throw bad_input("give either \"session_key\" or \"machine\", not both");
  if (!auth::is_valid_pmr(pmr)) throw bad_input(std::string(auth::kPmrForm));
  attach_request a;
  a.user = p.user;
  a.user_role = p.user_role;
  a.source = source_group(address_of(req.remote));  // an IPv6 /64 is one source
  a.pmr = auth::normalize_pmr(pmr);
  if (!key.empty()) {
    auto canonical = auth::normalize_session_key(key);
    if (!canonical) throw bad_input("a session key looks like XXXX-XXXX-XXXX-C (12 symbols and a check symbol)");
    a.key_hmac = hmac_.hash_of(*canonical);
  } else {
    if (!auth::is_valid_machine(machine)) throw bad_input(std::string(auth::kMachineForm));
    a.machine = auth::normalize_machine(machine);
  }
  auto e = base_entry("session.attach", p, req);
  e.pmr = a.pmr;
  e.machine = a.machine;
  e.secret_hmac = a.key_hmac;
  std::string by = key.empty() ? "machine" : "key";
  if (draining_)  // the gateway stops: a new owner would be handed over with its agent soon
    return deny(std::move(e),
                refusal{503, "draining",
                        "this gateway is stopping; attach on the other gateway of the pair once the agent is there"},
                done, std::nullopt, {{"by", by}});
  std::optional<refusal> refused;
  std::string sid;
  {
    // Which session? Decided again inside its step, where nothing else can change it.
    std::lock_guard lock(mu_);
    auto now = clock_.now();
    auto v = registry_.check_attach(a, now);
    auto* target = a.key_hmac.empty() ? registry_.find_live_for_machine(a.machine) : registry_.find_live_by_key(a.key_hmac);
    if (auto* r = std::get_if<refusal>(&v)) {
      refused = *r;
      if (r->code == "bad_key" || r->code == "key_expired") registry_.record_bad_key(a, now);
      if (target) {  // the refusal belongs to that session's story (its timeline, its PMRs)
        e.session_id = target->id;
        e.machine = target->machine;
      }
      if (r->code == "locked" && target && a.key_hmac.empty()) {
        tunnel::notice n;
        n.event = "attach_refused";
        n.actor = a.user;
        n.pmr = a.pmr;
        n.reason = "the session is locked";
        notify(target->id, n);
      }
    } else {
      sid = std::get<session*>(v)->id;
    }
  }
  if (refused && refused->code == "not_found" && a.key_hmac.empty() && peer_ask_) {
    // Not here: perhaps at the other gateway of the pair, which is asked (bounded in time);
    // the representative is told where the machine is, and the journal what the peer said.
    return peer_ask_(a.machine, [this, e, r = *refused, by, machine = a.machine, url = peer_url_,
                                 done](peer_answer ans) mutable {
      detail_fields extra{{"by", by}, {"peer", url}};
      if (ans.reached && ans.connected) {
        extra.emplace_back("peer_answer", "connected");
        refusal there{409, "elsewhere",
                      fmt::format("machine {} is connected to the other gateway of this pair, {}: attach there", machine,
                                  url)};
        return deny(std::move(e), there, done, std::nullopt, extra);
      }
      extra.emplace_back("peer_answer", ans.reached ? "not connected" : "unreachable: " + ans.why);
      deny(std::move(e), r, done, std::nullopt, extra);
    });
  }
  if (refused) return deny(std::move(e), *refused, done, std::nullopt, {{"by", by}});
  in_session(sid, done, [this, a, e, by](ticket t, const api::reply& reply) { attach_step(a, e, by, reply, std::move(t)); });
}

void service::set_peer(std::string_view secret, std::string url, peer_lookup ask) {
  peer_secret_hash_ = secret.empty() ? std::string() : token_hash(secret);
  peer_url_ = std::move(url);
  peer_ask_ = std::move(ask);
}

void service::machine_where(const std::string& machine_in, const http_request& req, const api::reply& done) {
  if (peer_secret_hash_.empty()) return done(json_error(404, "not_found", "no such endpoint"));
  auto credential = req.header("Authorization");
  if (!credential.starts_with("RsgatePeer ") ||
      !auth::equal_constant_time(token_hash(std::string_view(credential).substr(11)), peer_secret_hash_)) {
    return answer_refused(
        refuse_credential(req, "peer", credential.empty() ? "missing_credential" : "wrong_peer_secret", ""),
        json_error(401, "unauthorized", "this endpoint answers the other gateway of the pair only"), done);
  }
  query_params(req.target, {});
  if (!auth::is_valid_machine(machine_in)) throw bad_input(std::string(auth::kMachineForm));
  auto machine = auth::normalize_machine(machine_in);
  bool connected = false;
  {
    std::lock_guard lock(mu_);
    if (auto* s = registry_.find_live_for_machine(machine)) connected = s->tunnel_up;
  }
  // The peer's question is journaled like an auditor's, before it is answered.
  journal::entry e;
  e.kind = "audit.query";
  e.actor = "peer";
  e.source = journal::escape_for_journal(req.remote);
  e.machine = machine;
  e.detail = json::serialize(json::object{{"endpoint", "machines/where"}, {"connected", connected}});
  journal_.append(std::move(e), [done, machine, connected](const journal::append_result& r) {
    if (!r.ok()) return done(journal_unavailable());
    done(ok_json(200, json::object{{"machine", machine}, {"connected", connected}}));
  });
}

void service::attach_step(const attach_request& a, journal::entry e, std::string by, const api::reply& done, ticket t) {
  std::string sid;
  std::optional<refusal> refused;
  {
    std::lock_guard lock(mu_);
    auto v = registry_.check_attach(a, clock_.now());
    if (auto* r = std::get_if<refusal>(&v)) {
      refused = *r;
    } else {
      auto* s = std::get<session*>(v);
      if (has_unrecorded(s->id)) return done(journal_unavailable());
      sid = s->id;
      e.session_id = s->id;
      e.machine = s->machine;
    }
  }
  if (refused) return deny(std::move(e), *refused, done, std::move(t), {{"by", by}});
  e.detail = json::serialize(json::object{{"by", by}});
  record(std::move(e), std::move(t), [this, sid, a, done](const journal::append_result& r) {
    if (!r.ok()) return done(failed_record(r));
    std::lock_guard lock(mu_);
    auto* s = registry_.find(sid);
    if (!s) return done(session_gone());
    registry_.commit_attach(*s, a, r.ts);
    tunnel::notice n;
    n.event = "attach";
    n.actor = a.user;
    n.pmr = a.pmr;
    notify(s->id, n);
    done(ok_json(201, session_json(*s)));
  });
}

void service::get_session(const principal& p, const std::string& id, const http_request& req, const api::reply& done) {
  query_params(req.target, {});
  json::object o;
  bool audit = false;
  {
    std::lock_guard lock(mu_);
    auto* s = registry_.find(id);
    bool allowed = s && (s->owner == p.user || p.user_role == role::auditor);
    if (s && !allowed)
      for (auto& g : s->grants) allowed = allowed || g.user == p.user;
    if (!allowed) return done(json_error(404, "not_found", "no such session visible to you"));
    o = session_json(*s);
    audit = p.user_role == role::auditor && s->owner != p.user;
  }
  // The timeline comes from the journal, the record of what happened.
  auto& rd = journal_reader();
  journal::filter f;
  f.session_id = id;
  f.limit = 1000;
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
  journal_.append(std::move(e), [answer, done](const journal::append_result& r) {
    done(r.ok() ? answer : failed_record(r));
  });
}

void service::add_grant(const principal& p, const std::string& id, const http_request& req, const api::reply& done) {
  query_params(req.target, {});
  auto body = body_object(req, {"user", "scopes", "access_types", "expires_in"});
  auto grantee = user_field(body, "user");
  auto scopes = scopes_field(body);
  auto types = access_types_field(body);
  const std::optional<micros> lifetime = duration_field(body, "expires_in", kMaxGrantSeconds, "2h", "7d");
  auto u = lookup_user(grantee);
  in_session(id, done, [this, p, id, req, grantee, scopes, types, lifetime, u](ticket t, const api::reply& reply) {
    auto e = base_entry("session.grant", p, req);
    std::variant<grant, refusal> v = refusal{404, "not_found", fmt::format("no active user '{}'", grantee)};
    {
      std::lock_guard lock(mu_);
      auto* s = registry_.find(id);
      if (!s) return reply(json_error(404, "not_found", "no such session"));
      about(e, *s);
      if (has_unrecorded(id)) return reply(journal_unavailable());
      auto now = clock_.now();
      if (u && !u->disabled)
        v = registry_.check_grant(*s, p.user, grantee, parse_role(u->role).value_or(role::admin), scopes.items,
                                  types.items, lifetime ? now + *lifetime : 0, now);
    }
    if (auto* r = std::get_if<refusal>(&v)) return deny(std::move(e), *r, reply, std::move(t), {{"user", grantee}});
    auto g = std::get<grant>(v);
    e.detail = json::serialize(json::object{
        {"grant", g.id}, {"user", g.user}, {"scopes", names(g.scopes)}, {"access_types", names(g.access_types)},
        {"expires_at", g.expires_at ? json::value(format_rfc3339(g.expires_at)) : json::value(nullptr)}});
    record(std::move(e), std::move(t), [this, id, g, reply](const journal::append_result& r) {
      if (!r.ok()) return reply(failed_record(r));
      std::lock_guard lock(mu_);
      auto* s = registry_.find(id);
      if (!s) return reply(session_gone());
      registry_.commit_grant(*s, g);
      notify(s->id, grant_notice(g));
      reply(ok_json(201, session_json(*s)));
    });
  });
}

// PATCH /sessions/{id}/grants/{gid}: the owner extends or shortens a live grant, or changes
// its scopes or access types. Journaled (session.grant with "change": true) before the new
// terms take effect, like a grant; channels the new terms no longer cover close at once.
void service::change_grant(const principal& p, const std::string& id, const std::string& gid,
                           const http_request& req, const api::reply& done) {
  query_params(req.target, {});
  auto body = body_object(req, {"scopes", "access_types", "expires_in"});
  if (body.empty()) throw bad_input("give at least one of \"scopes\", \"access_types\", \"expires_in\"");
  // Each list, when given, replaces the grant's (empty: all).
  std::optional<std::set<std::string>> scopes, types;
  if (body.contains("scopes")) scopes = scopes_field(body).items;
  if (body.contains("access_types")) types = access_types_field(body).items;
  const std::optional<micros> lifetime = duration_field(body, "expires_in", kMaxGrantSeconds, "2h", "7d");
  if (gid.size() > 16) return done(json_error(404, "not_found", "no such grant"));
  in_session(id, done, [this, p, id, gid, req, scopes, types, lifetime](ticket t, const api::reply& reply) {
    auto e = base_entry("session.grant", p, req);
    std::variant<grant, refusal> v = refusal{404, "not_found", "no such session"};
    {
      std::lock_guard lock(mu_);
      auto* s = registry_.find(id);
      if (!s) return reply(json_error(404, "not_found", "no such session"));
      about(e, *s);
      if (has_unrecorded(id)) return reply(journal_unavailable());
      const auto now = clock_.now();
      v = registry_.check_change_grant(*s, p.user, gid, scopes, types,
                                       lifetime ? std::optional<micros>(now + *lifetime) : std::nullopt, now);
    }
    if (auto* r = std::get_if<refusal>(&v))
      return deny(std::move(e), *r, reply, std::move(t), {{"grant", gid}, {"action", "change"}});
    auto g = std::get<grant>(v);
    e.detail = json::serialize(json::object{
        {"grant", g.id}, {"user", g.user}, {"scopes", names(g.scopes)}, {"access_types", names(g.access_types)},
        {"expires_at", g.expires_at ? json::value(format_rfc3339(g.expires_at)) : json::value(nullptr)},
        {"change", true}, {"action", "change"}});
    record(std::move(e), std::move(t), [this, id, g, reply](const journal::append_result& r) {
      if (!r.ok()) return reply(failed_record(r));
      std::lock_guard lock(mu_);
      auto* s = registry_.find(id);
      if (!s) return reply(session_gone());
      close_channels(registry_.commit_change_grant(*s, g), "the grant no longer covers it");
      notify(s->id, grant_notice(g));
      reply(ok_json(200, session_json(*s)));
    });
  });
}

void service::revoke_grant(const principal& p, const std::string& id, const std::string& gid,
                           const http_request& req, const api::reply& done) {
  query_params(req.target, {});
  if (gid.size() > 16) return done(json_error(404, "not_found", "no such grant"));  // ids are G1, G2, …
  in_session(id, done, [this, p, id, gid, req](ticket t, const api::reply& reply) {
    auto e = base_entry("session.revoke", p, req);
    json::object answer;
    std::optional<refusal> refused;
    {
      // Revoking removes access: at once, even if the journal cannot write (fail closed);
      // the record follows in order.
      std::lock_guard lock(mu_);
      auto* s = registry_.find(id);
      if (!s) return reply(json_error(404, "not_found", "no such session"));
      about(e, *s);
      auto v = registry_.check_revoke(*s, p.user, gid);
      if (auto* r = std::get_if<refusal>(&v)) {
        refused = *r;
      } else {
        auto rec = revoke_now(*s, *std::get<grant*>(v), p.user, "owner");
        rec.source = e.source;
        e = std::move(rec);
        answer = session_json(*s);
      }
    }
    if (refused) return deny(std::move(e), *refused, reply, std::move(t), {{"grant", gid}});
    record_done(id, std::move(e), std::move(t), [reply, answer] { reply(ok_json(200, answer)); });
  });
}

void service::transfer(const principal& p, const std::string& id, const http_request& req, const api::reply& done) {
  query_params(req.target, {});
  auto body = body_object(req, {"user"});
  auto to = user_field(body, "user");
  auto u = lookup_user(to);
  in_session(id, done, [this, p, id, req, to, u](ticket t, const api::reply& reply) {
    auto e = base_entry("session.transfer", p, req);
    std::optional<refusal> refused;
    {
      std::lock_guard lock(mu_);
      auto* s = registry_.find(id);
      if (!s) return reply(json_error(404, "not_found", "no such session"));
      about(e, *s);
      if (has_unrecorded(id)) return reply(journal_unavailable());
      if (!u || u->disabled) refused = refusal{404, "not_found", fmt::format("no active user '{}'", to)};
      else refused = registry_.check_transfer(*s, p.user, to, parse_role(u->role).value_or(role::admin));
    }
    if (refused) return deny(std::move(e), *refused, reply, std::move(t), {{"to", to}});
    e.detail = json::serialize(json::object{{"from", p.user}, {"to", to}});
    record(std::move(e), std::move(t), [this, id, to, from = p.user, reply](const journal::append_result& r) {
      if (!r.ok()) return reply(failed_record(r));
      std::lock_guard lock(mu_);
      auto* s = registry_.find(id);
      if (!s) return reply(session_gone());
      close_channels(registry_.commit_transfer(*s, to), "ownership handed over");
      tunnel::notice n;
      n.event = "transfer";
      n.actor = from;
      n.user = to;
      notify(id, n);
      reply(ok_json(200, session_json(*s)));
    });
  });
}

void service::end_session(const principal& p, const std::string& id, const http_request& req, const api::reply& done) {
  query_params(req.target, {});
  in_session(id, done, [this, p, id, req](ticket t, const api::reply& reply) {
    auto e = base_entry("session.end", p, req);
    json::object answer;
    std::optional<refusal> refused;
    {
      // Ending removes access: at once, recorded in order.
      std::lock_guard lock(mu_);
      auto* s = registry_.find(id);
      if (!s) return reply(json_error(404, "not_found", "no such session"));
      about(e, *s);
      refused = registry_.check_owner(*s, p.user);
      if (!refused) {
        auto rec = end_now(*s, p.user, "owner", fmt::format("ended by its owner, {}", p.user));
        rec.source = e.source;
        e = std::move(rec);
        answer = session_json(*s);
      }
    }
    if (refused) return deny(std::move(e), *refused, reply, std::move(t));
    record_done(id, std::move(e), std::move(t), [reply, answer] { reply(ok_json(200, answer)); });
  });
}

}  // namespace rsgate::gateway
