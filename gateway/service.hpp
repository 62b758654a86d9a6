// The gateway's session service behind the REST API (SPEC §4): authentication (password
// login with a cookie + CSRF token, or a bearer token), attach, grants, transfer, channels,
// end, PMR lookup and journal queries. Plain C++ without Asio: handlers answer through the
// api::reply callback, from the journal writer's thread when they had to journal first.
//
// Thread-safe: one mutex guards the registry and the web sessions; it is never held while
// waiting for the journal. Owned by `rsgate serve` for the gateway's lifetime.
#pragma once
#include <map>
#include <variant>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>

#include "auth/rate_limit.hpp"
#include "core/clock.hpp"
#include "gateway/channel_link.hpp"
#include "gateway/data_dir.hpp"
#include "gateway/http/api.hpp"
#include "gateway/sessions.hpp"
#include "gateway/state.hpp"
#include "gateway/tunnel/handshake.hpp"
#include "gateway/tunnel/messages.hpp"
#include "journal/journal.hpp"

namespace rsgate::gateway {

// What the service needs from a customer's live tunnel (implemented by the tunnel
// connection in the network runtime). Thread-safe; the calls only queue frames.
class tunnel_link {
 public:
  virtual ~tunnel_link() = default;
  virtual void notify(const tunnel::notice& n) = 0;
  virtual void end_session(const std::string& reason) = 0;  // END, then close the tunnel
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

struct principal {
  std::string user;
  role user_role = role::representative;
  bool via_cookie = false;
};

class service {
 public:
  service(journal::writer& journal, const data_layout& layout, const clock& clk);

  // Handles every /api/v1/... path except health/readiness/metrics. `path` has the /api/v1
  // prefix removed. Calls `done` exactly once.
  void handle(const http_request& req, std::string_view path, api::reply done);

  // --- the tunnel side ---
  // The enrolled machine as CHAP needs it (MD5 secret unsealed only when enabled).
  [[nodiscard]] std::optional<tunnel::machine_record> machine_record_for(const std::string& machine);
  // A machine authenticated: its (new or resumed) session id; `link` receives notices.
  std::string tunnel_authenticated(const std::string& machine, std::vector<std::string> scopes,
                                   std::shared_ptr<tunnel_link> link);
  // The agent offered a session key: journaled (as its keyed hash) before it is usable;
  // `done` gets the expiry, or nullopt when the journal could not record it.
  void key_offered(const std::string& session_id, std::string_view display_key, micros lifetime,
                   const std::string& source, std::function<void(std::optional<micros>)> done);
  // The customer ended everything (STOP), or the tunnel is gone.
  void customer_stopped(const std::string& session_id, const std::string& source, std::function<void()> done);
  void tunnel_closed(const std::string& session_id, const tunnel_link* link);

  // --- channel streams ---
  // Redeems a one-time channel token from POST /sessions/{id}/channels: checks again that
  // the caller may open it now, journals channel.open (journal before access) and answers
  // with the tunnel to open it through, or an HTTP error.
  void redeem_channel(const std::string& token, const std::string& source,
                      std::function<void(std::variant<channel_grant, http_response>)> done);
  // The channel is open (the agent accepted) / gone: registry and journal (channel.close
  // with bytes each way and the duration).
  void channel_opened(const std::shared_ptr<channel_link>& c);
  void channel_closed(const std::shared_ptr<channel_link>& c, const std::string& source);
  // Called every few seconds by the runtime: ends the sessions of machines revoked meanwhile
  // (`rsgate machine revoke` runs in another process) and lapses grants whose time is up.
  void housekeeping();
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

  std::optional<principal> authenticate(const http_request& req, bool state_changing,
                                        http_response& error);
  void login(const http_request& req, api::reply done);
  void logout(const http_request& req, api::reply done);
  void list_sessions(const principal& p, const http_request& req, api::reply done);
  void attach(const principal& p, const http_request& req, api::reply done);
  void get_session(const principal& p, const std::string& id, const http_request& req, api::reply done);
  void add_grant(const principal& p, const std::string& id, const http_request& req, api::reply done);
  void revoke_grant(const principal& p, const std::string& id, const std::string& gid, const http_request& req,
                    api::reply done);
  void transfer(const principal& p, const std::string& id, const http_request& req, api::reply done);
  void open_channel(const principal& p, const std::string& id, const http_request& req, api::reply done);
  void end_session(const principal& p, const std::string& id, const http_request& req, api::reply done);
  void pmr_sessions(const principal& p, const std::string& pmr, const http_request& req, api::reply done);
  void journal_query(const principal& p, const http_request& req, api::reply done);
  void journal_verify(const principal& p, const http_request& req, api::reply done);

  // Appends `e`; on success runs `then` (under no lock) and it replies; on failure replies 503.
  void journal_then(journal::entry e, api::reply done, std::function<void(const journal::append_result&)> then);
  journal::entry base_entry(std::string kind, const principal& p, const http_request& req) const;
  // Journals a refused request as denied, then answers with the refusal.
  void deny(journal::entry e, const refusal& r, api::reply done);
  // The same with the journal's detail code and the HTTP answer chosen apart.
  void deny(journal::entry e, std::string_view code, std::string_view reason, http_response answer, api::reply done);
  std::optional<user_row> lookup_user(const std::string& name);
  std::string new_session_id();

  journal::writer& journal_;
  data_layout layout_;
  const clock& clock_;
  journal::hmac_key hmac_;

  std::mutex mu_;  // guards everything below
  session_registry registry_;
  state_store state_;
  std::map<std::string, web_session> web_sessions_;  // by SHA-256 of the cookie value
  auth::failure_limiter login_user_limiter_;
  auth::failure_limiter login_source_limiter_;
  struct channel_ticket {
    std::string session_id, user, scope, access_type;
    micros expires_at;
  };
  std::map<std::string, channel_ticket> tickets_;  // by SHA-256 of the one-time token
  std::map<std::string, std::weak_ptr<tunnel_link>> links_;  // by session id
  void notify(const std::string& session_id, tunnel::notice n);  // called with mu_ held
  void close_channels(const std::string& session_id, const std::vector<std::uint32_t>& ids,
                      const std::string& reason);  // called with mu_ held
};

}  // namespace rsgate::gateway
