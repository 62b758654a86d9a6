// Remote support sessions (SPEC §2.4–2.7): who owns a machine's session, who holds grants,
// which channels are open — and every decision about them. Pure and single-threaded: the
// gateway keeps one registry on one strand; nothing here does I/O or reads a clock.
//
// Journal before access: an access-granting change is decided here (`check_*`), journaled by
// the caller, and only then applied (`commit_*`); if the journal fails, nothing changed. The
// caller runs each session's decide-journal-commit steps one at a time (policy_queue.hpp), so
// nothing can change a session between its check and its commit. Ended sessions are kept a
// while for the API (`prune`), then forgotten: the journal keeps their story.
#pragma once
#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <variant>
#include <vector>

#include "auth/rate_limit.hpp"
#include "core/clock.hpp"

namespace rsgate::gateway {

enum class role { representative, developer, auditor, admin };
[[nodiscard]] std::optional<role> parse_role(std::string_view s);
[[nodiscard]] std::string_view to_string(role r);

enum class session_state { waiting, active, ended };
[[nodiscard]] std::string_view to_string(session_state s);

struct grant {
  std::string id;                        // "G1", "G2", … within the session
  std::string user;
  std::set<std::string> scopes;          // empty: every offered scope
  std::set<std::string> access_types;    // empty: every access type
  micros expires_at = 0;                 // 0: until revoked or the session ends
  std::string granted_by;
  micros granted_at = 0;
  bool revoked = false;
};

// A channel is known by its serial, unique in the gateway's life; `id` is its number in the
// tunnel it runs in, which a later tunnel of the same session numbers again from 1.
using channel_serial = std::uint64_t;

struct channel_info {
  channel_serial serial = 0;
  std::uint32_t id = 0;
  std::string user;
  std::string grant_id;  // the grant it was opened under; "" for the owner
  std::string scope;
  std::string access_type;
  micros opened_at = 0;
  std::int64_t bytes_to_agent = 0;
  std::int64_t bytes_from_agent = 0;
};

struct session {
  std::string id;
  std::string machine;
  std::vector<std::string> scopes;  // offered by the customer
  session_state state = session_state::waiting;
  std::string key_hmac;   // keyed hash of the current session key ("" when none)
  micros key_expires_at = 0;
  bool key_used = false;  // single use: consumed by the first attach
  std::string owner;
  std::string pmr;                   // the PMR the current owner attached with
  std::vector<std::string> pmrs;     // every PMR ever linked to this session
  std::vector<grant> grants;
  std::map<channel_serial, channel_info> channels;
  micros created_at = 0;
  micros ended_at = 0;
  std::string end_reason;
  bool tunnel_up = true;        // the customer's tunnel is connected
  micros tunnel_lost_at = 0;    // when it dropped (the session survives a grace period)
  bool joining = false;         // a returning tunnel's tunnel.reauth is being journaled: grace paused
  int next_grant = 1;
  std::int64_t journal_seq = 0;  // seq of its last `session.*` entry journaled ok (state.db snapshots)
};

// Why something was refused, as the HTTP API reports it (SPEC §4).
struct refusal {
  int status = 403;     // 400, 403, 404, 409, 429
  std::string code;     // "locked", "forbidden", "not_found", "rate_limited", "bad_key", …
  std::string message;
};

struct attach_request {
  std::string user;
  role user_role = role::representative;
  std::string source;          // client address, for the per-source limit
  std::string key_hmac;        // set when attaching by key
  std::string machine;         // set when attaching by machine
  std::string pmr;             // validated and normalised by the caller
};

struct limits_policy {
  auth::limit_policy per_user{5, 15LL * 60 * 1'000'000, 15LL * 60 * 1'000'000, 100'000};
  auth::limit_policy per_source{10, 15LL * 60 * 1'000'000, 15LL * 60 * 1'000'000, 100'000};
  auth::limit_policy global{50, 60LL * 1'000'000, 60LL * 1'000'000, 1};
};

class session_registry {
 public:
  explicit session_registry(limits_policy p = {});

  // A tunnel authenticated: the machine's waiting (or resumed) session.
  // A session kept across a restart (service::restore_sessions), its tunnel not back yet.
  session& restore(session s);
  session& open_for_machine(const std::string& id, const std::string& machine,
                            std::vector<std::string> scopes, micros now);
  [[nodiscard]] session* find(const std::string& id);
  [[nodiscard]] session* find_live_for_machine(const std::string& machine);
  // The live session whose current session key has this keyed hash.
  [[nodiscard]] session* find_live_by_key(const std::string& key_hmac);
  // The sessions `user` may see (GET /sessions): owned, or with a live grant of theirs; once a
  // session ended, every grantee's.
  [[nodiscard]] std::vector<const session*> visible_to(const std::string& user, micros now) const;
  // Who may see `s` by that rule (its live events' audience).
  [[nodiscard]] static std::set<std::string> audience(const session& s, micros now);
  [[nodiscard]] std::vector<session*> live_sessions();

  void set_key(session& s, std::string key_hmac, micros expires_at);

  // Attach: decide (the session the request names, or why not), (caller journals), commit.
  [[nodiscard]] std::variant<session*, refusal> check_attach(const attach_request& r, micros now);
  void commit_attach(session& s, const attach_request& r, micros now);
  // Records a wrong key against the limits (the caller journals it as denied).
  void record_bad_key(const attach_request& r, micros now);

  [[nodiscard]] std::optional<refusal> check_owner(const session& s, const std::string& user) const;
  [[nodiscard]] std::variant<grant, refusal> check_grant(const session& s, const std::string& owner,
                                                         const std::string& grantee, role grantee_role,
                                                         std::set<std::string> scopes,
                                                         std::set<std::string> access_types,
                                                         micros expires_at, micros now) const;
  grant& commit_grant(session& s, grant g);
  // Changes a live grant's terms (owner only): its scopes, access types (empty set: all) or
  // expiry, each only when given; the grant as it would be, or why not.
  [[nodiscard]] std::variant<grant, refusal> check_change_grant(
      const session& s, const std::string& owner, const std::string& grant_id,
      const std::optional<std::set<std::string>>& scopes, const std::optional<std::set<std::string>>& access_types,
      std::optional<micros> expires_at, micros now) const;
  // Applies the change; returns the grantee's open channels its new terms no longer cover,
  // which the caller closes at once.
  std::vector<channel_serial> commit_change_grant(session& s, const grant& changed);
  // Revoke: returns the grantee's open channel ids, which the caller closes at once.
  [[nodiscard]] std::variant<grant*, refusal> check_revoke(session& s, const std::string& owner,
                                                           const std::string& grant_id);
  std::vector<channel_serial> commit_revoke(session& s, grant& g);
  [[nodiscard]] std::optional<refusal> check_transfer(const session& s, const std::string& owner,
                                                      const std::string& to, role to_role) const;
  // Hands ownership over; returns the previous owner's channels, which close.
  std::vector<channel_serial> commit_transfer(session& s, const std::string& to);
  // Ends the session: returns every open channel id.
  std::vector<channel_serial> end(session& s, std::string reason, micros now);

  // May `user` open a channel to `scope` with `access_type` now? (owner or a live grant)
  [[nodiscard]] std::optional<refusal> check_channel(const session& s, const std::string& user,
                                                     const std::string& scope,
                                                     const std::string& access_type, micros now) const;
  void commit_channel(session& s, channel_info c);
  std::optional<channel_info> close_channel(session& s, channel_serial serial);
  // Live grants whose expiry passed, as (session id, grant id); the caller revokes each in a
  // step of its session.
  [[nodiscard]] std::vector<std::pair<std::string, std::string>> lapsed_grants(micros now) const;
  // Forgets ended sessions that ended more than `keep` ago, and the oldest ended ones beyond
  // `max_ended`, except those listed in `pinned` (their records are not all written yet).
  // Returns the ids forgotten.
  std::vector<std::string> prune(micros now, micros keep, std::size_t max_ended, const std::set<std::string>& pinned);
  [[nodiscard]] std::size_t size() const { return sessions_.size(); }

 private:
  limits_policy policy_;
  auth::failure_limiter per_user_;
  auth::failure_limiter per_source_;
  auth::failure_limiter global_;
  std::map<std::string, session> sessions_;
  // The live sessions by machine and by session key's keyed hash: an establishment or an
  // attach by key costs the same however many sessions the registry holds (issue 9, scale).
  std::map<std::string, std::string> live_by_machine_;
  std::map<std::string, std::string> live_by_key_;
  void index_key(const session& s);
  void unindex(const session& s);
};

}  // namespace rsgate::gateway
