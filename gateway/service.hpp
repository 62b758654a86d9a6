// The gateway's session service behind the REST API (SPEC §4): authentication (password
// login with a cookie + CSRF token, or a bearer token), attach, grants, transfer, channels,
// end, PMR lookup and journal queries, and the tunnel side of sessions. Plain C++ without
// Asio: handlers answer through the api::reply callback, from the journal writer's thread
// when they had to journal first.
//
// Every change to a session is one policy step (policy_queue.hpp): decide, allocate ids,
// journal and apply, while no other step of that session runs — so the journal and the state
// never disagree, whatever runs concurrently. A step that grants access applies it only once
// its entry is durable (journal before access); a step that removes access applies it at once
// and records it in order, retrying while the journal cannot write (fail closed, nothing lost).
// The handlers are split by capability: service_auth.cpp (login, tokens), service_sessions.cpp
// (attach, grants, transfer, end), service_channels.cpp, service_audit.cpp (PMR lookup,
// journal), this class's own file (the tunnel side, housekeeping, start-up and shutdown).
//
// Thread-safe. `mu_` guards the registry, web sessions, tickets and links and is held only
// for in-memory work; state.db has its own connection and lock. Owned by `rsgate serve` for
// the gateway's lifetime.
#pragma once
#include <atomic>
#include <chrono>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <span>
#include <string>
#include <variant>

#include "auth/rate_limit.hpp"
#include "core/clock.hpp"
#include "gateway/channel_link.hpp"
#include "gateway/data_dir.hpp"
#include "gateway/events.hpp"
#include "gateway/http/api.hpp"
#include "gateway/policy_queue.hpp"
#include "gateway/refusal_throttle.hpp"
#include "gateway/sessions.hpp"
#include "gateway/state.hpp"
#include "protocol/gateway_handshake.hpp"
#include "protocol/messages.hpp"
#include "journal/journal.hpp"

namespace rsgate::gateway {

// What the service needs from a customer's live tunnel (implemented by the tunnel
// connection in the network runtime). Thread-safe; the calls only queue frames.
class tunnel_link {
 public:
  virtual ~tunnel_link() = default;
  virtual void notify(const tunnel::notice& n) = 0;
  // END; the tunnel then waits (at most kReceiptWaitSeconds) for deliver_receipt, and closes.
  virtual void end_session(const std::string& reason) = 0;
  // The ended session's RECEIPT payload (docs/protocol.md §4.12), or nullopt when none could be
  // made: sent if the tunnel still waits for it, then the tunnel closes.
  virtual void deliver_receipt(std::optional<bytes> payload) = 0;
  // The RECEIPT of an earlier session of the machine that its agents have not acknowledged
  // (docs/protocol.md §4.12): sent while the tunnel serves its session.
  virtual void deliver_owed_receipt(std::string session_id, bytes payload) = 0;
  // Channels (docs/protocol.md §8). open_channel sends CHANNEL_OPEN and returns the shared
  // channel; the others queue frames for it. All may be called from any thread.
  virtual std::shared_ptr<channel_link> open_channel(const std::string& scope, const std::string& access_type,
                                                     const std::string& actor) = 0;
  // Frames `data` (in DATA frames of at most the frame limit) on the caller's thread.
  virtual void channel_data(std::uint32_t id, std::span<const std::uint8_t> data) = 0;
  virtual void channel_window(std::uint32_t id, std::uint32_t increment) = 0;
  virtual void channel_eof(std::uint32_t id) = 0;
  virtual void channel_close(std::uint32_t id, const std::string& reason) = 0;
};

// A redeemed channel ticket: who may open what, through which tunnel.
struct channel_grant {
  std::string session_id, user, scope, access_type;
  std::shared_ptr<tunnel_link> link;
};

// What profiles enrolled over the API get by default (the configuration's, set at start):
// the agents' gateway addresses and TLS name, the pair's receipt key, and the TOTP issuer.
struct enrollment_defaults {
  std::string gateway;  // "" when the configuration names none an agent could use
  std::string backup;
  std::string server_name = "localhost";
  std::vector<std::string> receipt_keys;
  std::string issuer = "rsgate";  // the gateway's name, shown by authenticator apps
};

struct principal {
  std::string user;
  role user_role = role::representative;
  bool via_cookie = false;
  std::string token_hash{};  // the bearer token's SHA-256, "" for a cookie
  micros expires_at = 0;   // when the token or login session ends (0: never)
  std::string login_hash{};  // the login cookie's SHA-256, "" for a bearer token
};

class service {
 public:
  service(journal::writer& journal, const data_layout& layout, const clock& clk);
  ~service();

  // How long a session waits for its machine's agent after the tunnel dropped
  // (tunnel.grace); then it ends as `tunnel lost`. Set before serving.
  // Also at SIGHUP: sessions waiting for their tunnel then wait the new grace from their loss.
  void set_reconnect_grace(micros grace) {
    std::lock_guard lock(mu_);
    reconnect_grace_ = grace;
  }

  // Where policy steps continue when the one before them finished on another thread (the
  // journal writer's): the API's worker pool. Without one they continue inline (tests).
  void set_executor(policy_queue::executor ex);
  // Runs `f` on that executor (inline without one): work a journal completion must not do on
  // the writer's thread, such as a state.db write.
  void post(std::function<void()> f);

  // Handles every /api/v1/... path except health/readiness/metrics. `path` has the /api/v1
  // prefix removed. Calls `done` exactly once; no exception escapes.
  void handle(const http_request& req, std::string_view path, api::reply done);

  // --- the tunnel side ---
  // The enrolled machine as CHAP needs it (MD5 secret unsealed only when enabled).
  [[nodiscard]] std::optional<tunnel::machine_record> machine_record_for(const std::string& machine);
  // A machine authenticated: which session its tunnel will serve (docs/protocol.md §9),
  // decided under the service's lock: the machine's session when one is live or waiting for
  // its agent (`held`), else a new one. `resume` is the session HELLO asked for ("" for
  // none); `resume_refused` says why that one was not given back. Journal before access: a
  // held session is only marked `joining` (its grace paused, still not connected) until the
  // tunnel has journaled tunnel.reauth and commits; on failure it abandons the join.
  struct tunnel_join {
    std::string session_id;
    bool held = false;
    std::string resume_refused;
  };
  tunnel_join tunnel_claim(const std::string& machine, const std::string& resume = "");
  // The tunnel serves the session from now on (`link` receives notices); returns its id: the
  // claimed one, or a new one when the claimed session ended meanwhile (its owner ended it).
  // A held session with an owner is told again who owns it and who holds grants (NOTICEs).
  std::string tunnel_commit(const tunnel_join& j, const std::string& machine, std::vector<std::string> scopes,
                            std::shared_ptr<tunnel_link> link);
  void tunnel_abandon(const tunnel_join& j);
  // The agent offered a session key: journaled (as its keyed hash) before it is usable;
  // `done` gets the expiry, or nullopt when the journal could not record it.
  void key_offered(const std::string& session_id, std::string_view display_key, micros lifetime,
                   const std::string& source, std::function<void(std::optional<micros>)> done);
  // The customer ended everything (STOP), or the tunnel is gone.
  // done(true) when the stop ended the session: its receipt follows through the link.
  void customer_stopped(const std::string& session_id, const std::string& source, std::function<void(bool)> done);
  void tunnel_closed(const std::string& session_id, const tunnel_link* link);
  // Receipts owed to `machine` (docs/protocol.md §4.12): of its last kOwedReceipts ended
  // sessions (from the journal), those no agent acknowledged, `current` apart; built from the
  // journal on the worker pool and handed to `link` (deliver_owed_receipt), oldest first.
  void send_owed_receipts(const std::string& machine, const std::string& current, std::weak_ptr<tunnel_link> link);
  // An agent of `machine` acknowledged the receipt of `session_id` (RECEIPT_ACK): no longer
  // owed. Written on the worker pool; a failure only logs (the receipt stays owed).
  void receipt_acknowledged(const std::string& machine, const std::string& session_id);

  // --- channel streams ---
  // Redeems a one-time channel token from POST /sessions/{id}/channels: checks again that
  // the caller may open it now, journals channel.open (journal before access) and answers
  // with the tunnel to open it through, or an HTTP error.
  void redeem_channel(const std::string& token, const std::string& source,
                      std::function<void(std::variant<channel_grant, http_response>)> done);
  // The channel is open (the agent accepted): registered, or — when the access went meanwhile —
  // closed at once and false returned; the stream side must then relay nothing. / The channel
  // is gone: registry and journal (channel.close with bytes each way and the duration).
  [[nodiscard]] bool channel_opened(const std::shared_ptr<channel_link>& c);
  void channel_closed(const std::shared_ptr<channel_link>& c, const std::string& source);
  // The customer's decision on a channel to an `ask` scope (c->decision), as a step of the
  // session: `channel.approval` ok (approved: journal before access, `done(true)` only once
  // it is durable, false when it cannot be) or denied (refused, timeout: written like every
  // refusal, kept and retried if the journal fails; done(true)). Submitted before the
  // channel's channel_closed, it is journaled before that.
  // `opening`: false when the channel will not open (the agent refused it, after the
  // customer's decision): then the decision is written like a refusal, also an approval.
  void record_approval(const std::shared_ptr<channel_link>& c, bool opening, std::function<void(bool)> done);

  // --- the other gateway of a pair (docs/operations.md §10) ---
  // What the peer said about a machine: `reached` false (with `why`) when it could not be
  // asked or its answer was not one.
  struct peer_answer {
    bool reached = false;
    bool connected = false;
    std::string why;
  };
  using peer_lookup = std::function<void(const std::string& machine, std::function<void(peer_answer)>)>;
  // Set before the listeners start: the secret both gateways share (only its SHA-256 is kept)
  // and, when this gateway asks, the peer's URL and how to ask it (the network runtime's HTTPS
  // client, gateway/peer_client.cpp).
  void set_peer(std::string_view secret, std::string url, peer_lookup ask);
  // At the end of serving (all threads joined): the lookup's io_context goes; attaches after
  // this do not ask the peer.
  void stop_peer_lookups() { peer_ask_ = {}; }
  // SIGTERM's drain (docs/operations.md §7): attaches are refused (503 `draining`, journaled);
  // what is live goes on. owned_sessions() counts the sessions a representative holds.
  void set_draining() { draining_ = true; }
  [[nodiscard]] std::size_t owned_sessions();
  [[nodiscard]] bool has_owner(const std::string& session_id);

  // --- life ---
  // Called every second, off the I/O threads: ends the sessions of machines revoked and
  // owners disabled meanwhile (other processes), revokes disabled grantees' grants, lapses
  // grants whose time is up, ends sessions whose tunnel did not come back, writes the records
  // the journal could not take before, and forgets sessions that ended long ago.
  void housekeeping();
  // Sessions kept across restarts (docs/protocol.md §9): after every policy step the session's
  // state goes to state.db (live_sessions), and an ended one leaves it. Off by default
  // (unit tests); `rsgate serve` turns it on.
  void keep_sessions_across_restarts(bool on) { keep_sessions_ = on; }
  // At start-up: every session state.db kept, and which the journal shows open with no newer
  // `session.*` entry than the snapshot, waits for its agent for the grace again; every other
  // session the journal shows open gets session.end (reason "gateway restart").
  struct restored {
    std::size_t kept = 0, ended = 0;
  };
  restored restore_sessions();
  // At shutdown, after the network stopped: ends every live session, journaled, in each
  // session's order after the steps still queued (waiting for them, at most `wait`), and
  // writes what the journal could not take before, in order.
  void end_all_sessions(const std::string& reason, std::chrono::milliseconds wait = std::chrono::seconds(5));
  // At shutdown, when sessions are kept across restarts: waits for the steps still queued (at
  // most `wait`), writes what the journal could not take before, and the last state of every
  // live session to state.db. Nothing ends: the next start restores them.
  void keep_all_sessions(std::chrono::milliseconds wait = std::chrono::seconds(5));
  // True when no policy step runs or waits (for shutdown: nothing will call back any more).
  [[nodiscard]] bool idle() const { return policy_.busy_keys() == 0; }

  [[nodiscard]] journal::writer& journal() { return journal_; }
  [[nodiscard]] const journal::hmac_key& hmac() const { return hmac_; }

  // Used by tests: a machine authenticated and offers these scopes.
  std::string open_session(const std::string& machine, std::vector<std::string> scopes);
  void set_session_key(const std::string& session_id, std::string_view display_key, micros expires_at);
  [[nodiscard]] session_registry& registry_for_test() { return registry_; }

 private:
  struct web_session {
    std::string user;
    role user_role;
    std::string csrf;
    micros expires_at;
    micros idle_until;
  };
  using ticket = policy_queue::ticket;
  // A policy step: its ticket, and the answer to give, which is held until the step has
  // settled (policy_queue::ticket::when_settled).
  using step = std::function<void(ticket, const api::reply&)>;

  // --- routing and authentication (service_auth.cpp) ---
  void route(const http_request& req, std::string_view path, const api::reply& done);
  struct api_route {
    std::string_view method;
    std::string_view path;  // under /api/v1, with {…} for a segment
    bool authenticated;     // needs a token or login cookie (else the handler checks on its own)
    bool takes_body;        // else a body is refused (400)
    void (*run)(service&, const principal*, const std::vector<std::string>& segments, const http_request&,
                const api::reply&);
  };
  static const std::vector<api_route>& route_table();

 public:
  // Every (method, path) the service answers, e.g. ("GET", "/api/v1/sessions/{id}").
  [[nodiscard]] static std::vector<std::pair<std::string, std::string>> api_routes();

 private:
  // Who the caller is; or nullopt with the answer in `error`, and in `refused` the journal
  // entry of the refusal when it gets one of its own (refusal_throttle.hpp).
  std::optional<principal> authenticate(const http_request& req, bool state_changing, http_response& error,
                                        std::optional<journal::entry>& refused);
  std::optional<principal> authenticate_bearer(const http_request& req, std::string_view token, http_response& error,
                                               std::optional<journal::entry>& refused);
  std::optional<journal::entry> refuse_credential(const http_request& req, std::string_view method,
                                                  std::string_view reason, std::string_view secret_hmac);
  // Answers `error` once `refused` (from refuse_credential; nullopt when summarized) is in the
  // journal, like every other refusal.
  void answer_refused(std::optional<journal::entry> refused, http_response error, const api::reply& done);
  // A password login: checked (limits, Argon2id, the one-time password rule), then refused
  // (journaled, within the refusal bounds) or accepted (journaled before the cookie).
  struct login_attempt {
    std::string name, password, new_password, totp;
    std::string second_factor;  // "totp" or "recovery_code" once accepted, "" for an account without TOTP
    std::string recovery_hash;  // the recovery code taken, to give back if the login fails after
    std::string source;  // the client's address, or its IPv6 /64
    micros now = 0;
    std::optional<user_row> user;
    std::string why;  // "" when accepted
    bool name_lockout = false, source_lockout = false;
  };
  void login(const http_request& req, const api::reply& done);
  void check_login(login_attempt& a);
  // The second factor of a login whose password was right (docs/security.md, "TOTP"): sets
  // a.why when it is missing, wrong or used already, else a.second_factor.
  void check_second_factor(login_attempt& a);
  void refuse_login(const http_request& req, const login_attempt& a, const api::reply& done);
  void accept_login(const http_request& req, const login_attempt& a, const api::reply& done);
  // A successful login's cookie: the login session is kept and the answer sent.
  void open_web_session(const api::reply& done, const std::string& cookie, const std::string& csrf,
                        const principal& who, micros now);
  // Stores a changed password; false (journaled as an error) when state.db refuses it.
  bool store_password(const std::string& user, const std::string& hash, const std::string& source);
  void logout(const http_request& req, const api::reply& done);
  // Ends every login session of `user` (its password or TOTP was reset).
  void forget_web_sessions(const std::string& user);

  // --- sessions (service_sessions.cpp) ---
  void list_sessions(const principal& p, const http_request& req, const api::reply& done);
  void attach(const principal& p, const http_request& req, const api::reply& done);
  // GET /machines/{m}/where, for the peer gateway only (Authorization: RsgatePeer <secret>).
  void machine_where(const std::string& machine, const http_request& req, const api::reply& done);
  void attach_step(const attach_request& a, journal::entry e, std::string by, const api::reply& done, ticket t);
  void get_session(const principal& p, const std::string& id, const http_request& req, const api::reply& done);
  void add_grant(const principal& p, const std::string& id, const http_request& req, const api::reply& done);
  void revoke_grant(const principal& p, const std::string& id, const std::string& gid, const http_request& req,
                    const api::reply& done);
  void change_grant(const principal& p, const std::string& id, const std::string& gid, const http_request& req,
                    const api::reply& done);
  void transfer(const principal& p, const std::string& id, const http_request& req, const api::reply& done);
  void end_session(const principal& p, const std::string& id, const http_request& req, const api::reply& done);

  // --- the caller's account and tokens (service_accounts.cpp) ---
  void me(const principal& p, const http_request& req, const api::reply& done);
  void list_tokens(const principal& p, const http_request& req, const api::reply& done);
  void revoke_token(const principal& p, const std::string& id_in, const http_request& req, const api::reply& done);

  // --- administration (service_admin.cpp): admin role only ---
 public:
  void set_enrollment_defaults(enrollment_defaults d);

 private:
  std::string issuer();
  // True for an administrator; otherwise answers 403 (journaled as `kind` denied) and false.
  bool admin_only(const principal& p, const http_request& req, std::string_view kind, const api::reply& done);
  void admin_list_users(const principal& p, const http_request& req, const api::reply& done);
  void admin_add_user(const principal& p, const http_request& req, const api::reply& done);
  // action: disable, enable, password (a new one, or a one-time one), totp (a new enrolment)
  void admin_change_user(const principal& p, const std::string& name, const std::string& action,
                         const http_request& req, const api::reply& done);
  void admin_list_machines(const principal& p, const http_request& req, const api::reply& done);
  void admin_enroll_machine(const principal& p, const http_request& req, const api::reply& done);
  void admin_machine_profile(const principal& p, const std::string& machine, const http_request& req,
                             const api::reply& done);
  void admin_revoke_machine(const principal& p, const std::string& machine, const http_request& req,
                            const api::reply& done);
  // POST /tokens: one's own; an administrator's for anyone.
  void create_token(const principal& p, const http_request& req, const api::reply& done);
  struct pending_profile {
    std::string toml;
    micros expires_at = 0;
  };
  std::mutex admin_mu_;
  enrollment_defaults enrollment_;                   // guarded by admin_mu_
  std::map<std::string, pending_profile> profiles_;  // guarded by admin_mu_: enrolled, not downloaded yet

  // --- live events (service_events.cpp, docs/api.md §5.6) ---
 public:
  // The subscriptions (the shutdown ends them all).
  [[nodiscard]] event_hub& events() { return events_; }

 private:
  // GET /events: a subscription starting with `ready` and the caller's current sessions.
  void subscribe_events(const principal& p, const http_request& req, const api::reply& done);
  // With mu_ held: session `s`'s object now (its channels' byte counts read from the
  // channels) to those who may see it.
  void publish_session(session& s);
  // With mu_ held: a machine's tunnel came (`online`) or went, at `at`.
  void publish_machine(const std::string& machine, bool online, micros at);
  // With mu_ held: the open channels' byte counts, from the channels themselves.
  void refresh_channel_bytes(session& s);
  // From housekeeping: byte counts of open channels every pass; every kEventsRecheck, the
  // subscriptions whose credential ended meanwhile (here or in another process) end.
  void housekeeping_events(micros now);
  static constexpr micros kEventsRecheck = 10 * 1'000'000LL;
  event_hub events_;
  micros events_checked_at_ = 0;  // guarded by housekeeping_mu_

  // --- channels (service_channels.cpp) ---
  void open_channel(const principal& p, const std::string& id, const http_request& req, const api::reply& done);

  // --- audit (service_audit.cpp) ---
  void pmr_sessions(const principal& p, const std::string& pmr, const http_request& req, const api::reply& done);
  void journal_query(const principal& p, const http_request& req, const api::reply& done);
  void journal_verify(const principal& p, const http_request& req, const api::reply& done);
  static constexpr std::int64_t kMaxExportEntries = 10'000;
  static constexpr std::size_t kMaxExportBytes = 16u << 20;  // an answer stops growing past this
  void journal_export(const principal& p, const http_request& req, const api::reply& done);

  // --- policy steps (service.cpp) ---
  // Runs `s` as the next policy step of session `id`; answers 429 through `done` when too
  // many steps of that session wait already (`force`: internal records, never refused).
  // The step answers through the reply it is given: held until the step has settled, so a
  // client never sees a change confirmed that a crash at that moment would lose from
  // state.db (the session would end at the next start instead of resuming).
  void in_session(const std::string& id, const api::reply& done, step s, bool force = false);
  // Appends `e` for the step holding `t`; `then` runs with the result, under no lock.
  void record(journal::entry e, ticket t, std::function<void(const journal::append_result&)> then);
  // Records a change that took effect already (a removal of access, a channel that closed):
  // in order after the session's earlier unwritten records, kept and retried by
  // housekeeping while the journal cannot write. `then` runs once it is written or kept.
  void record_done(const std::string& sid, journal::entry e, ticket t, std::function<void()> then = {});
  // A session's `session.*` entry was journaled ok: its seq is what the snapshot reflects.
  void note_recorded(const journal::entry& e, const journal::append_result& r);
  // Receipts (docs/protocol.md §4.12): a session that ended while a tunnel served it waits
  // here until its session.end and the channel.close of every channel it had are durable;
  // then the receipt is built from the journal on a worker and handed to that tunnel.
  void receipt_progress(const std::string& sid, bool end_recorded);
  void send_receipt(const std::string& sid, std::shared_ptr<tunnel_link> link);
  // The signed RECEIPT payload of ended session `sid` from `rd`, or nullopt (logged) when it
  // cannot be made. Shared by the end's receipt and the owed ones.
  std::optional<bytes> receipt_payload(journal::reader& rd, const std::string& sid);
  // What note_recorded reads of an entry (kind, session, outcome), without its detail.
  [[nodiscard]] static journal::entry recorded_key(const journal::entry& e);
  // After each policy step (policy_queue::set_after_step): the session's snapshot to state.db
  // when it changed, or its row deleted once it ended.
  void persist_session(const std::string& sid);
  // Waits (bounded) until no step runs, then writes the kept records synchronously.
  void drain_steps(std::chrono::milliseconds wait);
  // Keeps `e` for later (mu_ held), with effective_at added; bounded per session.
  void keep_record(const std::string& sid, journal::entry e);
  // Writes the session's kept records, oldest first, stopping at the first failure.
  void flush_unrecorded(const std::string& sid, ticket t);
  // True when the session has records the journal could not take yet (then nothing that
  // grants access may proceed: its entry would overtake them). Called with mu_ held.
  [[nodiscard]] bool has_unrecorded(const std::string& sid) const;
  // Appends `e` as a refusal (outcome denied, detail `extra` plus {code, reason}) — for the
  // step holding `t` when there is one — and then answers `answer`.
  using detail_fields = std::vector<std::pair<std::string, std::string>>;
  void deny(journal::entry e, std::string_view code, std::string_view reason, http_response answer,
            const api::reply& done, std::optional<ticket> t = std::nullopt, const detail_fields& extra = {});
  void deny(journal::entry e, const refusal& r, const api::reply& done, std::optional<ticket> t = std::nullopt,
            const detail_fields& extra = {});
  // A removal the gateway makes on its own (housekeeping): a step of session `sid` in which
  // `act`, called with mu_ held, checks its reason again and applies it, returning the record
  // (or nullopt when there is nothing to do any more).
  void remove_by_gateway(const std::string& sid, std::function<std::optional<journal::entry>(session&)> act);
  // With mu_ held: removes `g`'s access now (closing its channels, telling the agent) and
  // returns the record of it, for record_done.
  journal::entry revoke_now(session& s, grant& g, const std::string& actor, const std::string& reason);
  // With mu_ held: ends `s` now (closing its channels; END with `agent_reason` to its tunnel
  // unless empty) and returns the record of it.
  journal::entry end_now(session& s, const std::string& actor, const std::string& reason, std::string agent_reason);

  // --- helpers ---
  // The journal's reader for the calling thread (a worker): opening one (a SQLite connection,
  // its schema, the column list) costs more than a PMR lookup itself, so each thread keeps the
  // one of the journal it read last. Only for requests; the reference is the thread's own.
  journal::reader& journal_reader();
  journal::entry base_entry(std::string kind, const principal& p, const http_request& req) const;
  std::optional<user_row> lookup_user(const std::string& name);
  std::optional<token_row> lookup_token(const std::string& hash);
  master_key sealing_key();  // keys/master.key, loaded once (under tunnel_state_mu_)
  std::string new_session_id();
  void notify(const std::string& session_id, tunnel::notice n);  // called with mu_ held
  // Closes the channels (by serial) through the tunnels they run in; called with mu_ held.
  void close_channels(const std::vector<channel_serial>& serials, const std::string& reason);
  void housekeeping_accounts();
  void housekeeping_time(micros now);

  journal::writer& journal_;
  data_layout layout_;
  const clock& clock_;
  micros reconnect_grace_ = tunnel::kReconnectGraceSeconds * 1'000'000LL;  // guarded by mu_
  journal::hmac_key hmac_;
  std::optional<master_key> master_;  // loaded once, when a machine first needs MD5
  policy_queue policy_;

  std::mutex state_mu_;  // guards state_: state.db reads never run under mu_
  state_store state_;
  std::mutex tunnel_state_mu_;  // the tunnel side's own connection (machine records), so that a
  state_store tunnel_state_;    // slow API write to state.db never stalls a tunnel's handshake
  std::mutex executor_mu_;
  policy_queue::executor executor_;  // guarded by executor_mu_ (the same as policy_'s)
  std::atomic<bool> keep_sessions_{false};
  std::atomic<bool> draining_{false};
  std::mutex sessions_state_mu_;  // the snapshots' own state.db connection, opened when first used
  std::optional<state_store> sessions_state_;
  state_store& snapshot_store();  // sessions_state_, opened when first used; under sessions_state_mu_
  struct persisted {
    std::string snapshot;
    std::int64_t seq = 0;
    bool deleted = false;  // the session ended and its row is gone
  };
  std::map<std::string, persisted> persisted_;  // guarded by sessions_state_mu_: what state.db holds
  std::mutex housekeeping_mu_;  // one housekeeping pass at a time (it has its own connection)
  std::optional<state_store> housekeeping_state_;
  // What the last housekeeping pass found enrolled and enabled, and state.db's data_version
  // then: while nothing committed to state.db since, only newcomers are looked up, so a pass
  // costs the same with 10,000 live sessions as with ten (guarded by housekeeping_mu_).
  std::int64_t checked_version_ = -1;
  std::set<std::string> checked_machines_, checked_users_;

  // The pair (set_peer, before serving; read-only after).
  std::string peer_secret_hash_;  // SHA-256 of the shared secret, hex; "" = no peer configured
  std::string peer_url_;
  peer_lookup peer_ask_;

  mutable std::mutex mu_;  // guards everything below
  session_registry registry_;
  std::map<std::string, std::deque<journal::entry>> unrecorded_;  // by session id, oldest first
  std::map<std::string, web_session> web_sessions_;  // by SHA-256 of the cookie value
  auth::failure_limiter login_user_limiter_;
  auth::failure_limiter login_source_limiter_;
  refusal_throttle credential_refusals_;  // journal entries for refused credentials, per address
  struct channel_ticket {
    std::string session_id, user, scope, access_type;
    micros expires_at;
  };
  std::map<std::string, channel_ticket> tickets_;  // by SHA-256 of the one-time token
  std::map<std::string, std::weak_ptr<tunnel_link>> links_;  // by session id
  struct receipt_waiter {
    std::weak_ptr<tunnel_link> link;
    bool end_recorded = false;
  };
  std::map<std::string, receipt_waiter> receipt_waiters_;  // by session id: ended, receipt not sent
  std::map<channel_serial, std::weak_ptr<channel_link>> channel_links_;  // open channels
  channel_serial next_channel_serial_ = 0;
};

}  // namespace rsgate::gateway
