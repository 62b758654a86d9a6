// Authentication of a tunnel (docs/protocol.md §9): HELLO, CHAP (the logic is
// gateway_handshake's, the limits before authentication tunnel::admission's), and, once the
// machine's secret is proven, one live tunnel per machine: a newcomer claims the machine, probes
// the live tunnel, and is refused or replaces it. tunnel.auth is journaled before SUCCESS is
// sent (journal before access); before the secret is proven, entries are written only within
// the source's journal budget.
#include <boost/json/serialize.hpp>

#include "core/timefmt.hpp"
#include "gateway/tunnel/tunnel_connection.hpp"

namespace rsgate::gateway::detail {
namespace {

// The right to decide who serves `machine`, held by a tunnel that passed CHAP until it has
// been refused or installed; released by the destructor, whatever way the decision ends.
class machine_claim {
 public:
  machine_claim(shared_ctx& ctx, std::string machine) : ctx_(ctx), machine_(std::move(machine)) {}
  ~machine_claim() {
    if (!held_) return;
    {
      shared_ctx::machines_lock lock(ctx_);
      auto it = ctx_.machines.find(machine_);
      if (it == ctx_.machines.end()) return;
      it->second.deciding = false;
      if (it->second.live.expired()) ctx_.machines.erase(it);
    }
    ctx_.machines_changed.notify_all();  // a newcomer waiting for this machine looks again
  }
  machine_claim(const machine_claim&) = delete;
  machine_claim& operator=(const machine_claim&) = delete;

  bool try_take() {
    shared_ctx::machines_lock lock(ctx_);
    auto& s = ctx_.machines[machine_];
    if (s.deciding) return false;
    s.deciding = held_ = true;
    return true;
  }
  [[nodiscard]] bool held() const { return held_; }
  [[nodiscard]] std::shared_ptr<tunnel_connection> live() const {
    shared_ctx::machines_lock lock(ctx_);
    auto it = ctx_.machines.find(machine_);
    return it == ctx_.machines.end() ? nullptr : it->second.live.lock();
  }
  void install(std::weak_ptr<tunnel_connection> c) {
    shared_ctx::machines_lock lock(ctx_);
    ctx_.machines[machine_].live = std::move(c);
  }
  // NOTICE tunnel_refused is rate-limited per machine: refused newcomers cannot flood it.
  bool may_notify(micros now) {
    shared_ctx::machines_lock lock(ctx_);
    auto& s = ctx_.machines[machine_];
    if (now - s.notice_window >= tunnel::kRefusedNoticeWindowSeconds * 1'000'000LL) {
      s.notice_window = now;
      s.notices = 0;
    }
    return ++s.notices <= tunnel::kRefusedNoticesPerWindow;
  }

 private:
  shared_ctx& ctx_;
  std::string machine_;
  bool held_ = false;
};

}  // namespace

bool tunnel_connection::quiet() {
  if (secret_proven_) return false;
  if (!quiet_) quiet_ = !ctx_->adm.journal_individually(source_, system_clock::instance().now());
  return *quiet_;
}

asio::awaitable<void> tunnel_connection::journal_pre(journal::entry e) {
  if (quiet()) co_return;
  (void)co_await async_append(svc_.journal(), std::move(e), asio::use_awaitable);
}

std::string tunnel_connection::connect_detail() const {
  // The scope list (up to 64 names) is recorded once the machine has authenticated, with
  // tunnel.auth: before that it is only a claim, and would cost the journal 5 KB a try.
  const auto& h = hs_->hello_message();
  return json::serialize(json::object{{"agent", h.agent}, {"scopes_offered", h.scopes.size()}, {"version", h.version}});
}

// A connection journaled only in a summary so far proved the machine's secret: from now on
// it is journaled entry by entry, starting with the tunnel.connect it skipped.
asio::awaitable<void> tunnel_connection::journal_connect_late() {
  if (connect_journaled_) co_return;
  connect_journaled_ = true;
  (void)co_await async_append(svc_.journal(), entry(std::string("tunnel.connect"), journal::outcome::ok, connect_detail()),
                              asio::use_awaitable);
}

asio::awaitable<bool> tunnel_connection::on_hello_frame(const tunnel::frame& f) {
  std::string why;
  auto h = tunnel::parse_hello(f.payload, why);
  if (!h) {
    auto e = entry(std::string("tunnel.connect"), journal::outcome::error,
                   json::serialize(json::object{{"reason", "invalid HELLO: " + why}}));
    co_await journal_pre(std::move(e));
    protocol_error("bad_hello", why);
    co_return false;
  }
  machine_ = h->machine;
  const auto now = system_clock::instance().now();
  if (!ctx_->adm.on_hello(source_, now)) {
    static constexpr std::string_view kTooMany = "too many HELLOs from this address";
    auto e = entry(std::string("tunnel.connect"), journal::outcome::denied,
                   json::serialize(json::object{{"reason", kTooMany}, {"agent", h->agent}}));
    co_await journal_pre(std::move(e));
    summary_reason_ = kTooMany;
    send_failure(0, fmt::format("too many connection attempts from this address; retry in {} s", tunnel::kSourceWindowSeconds),
                 std::string(kTooMany));
    co_return false;
  }
  tunnel::gateway_handshake::step step;
  {
    std::lock_guard lock(ctx_->limiter_mu);
    step = hs_->on_hello(*h, now);
  }
  if (!quiet()) {
    connect_journaled_ = true;
    (void)co_await async_append(svc_.journal(), entry(std::string("tunnel.connect"), journal::outcome::ok, connect_detail()),
                                asio::use_awaitable);
  }
  if (step.send_challenge) {
    queue(tunnel::frame_type::challenge, tunnel::to_payload(*step.send_challenge));
    co_return true;
  }
  co_return co_await on_chap_denied(std::move(step));
}

asio::awaitable<bool> tunnel_connection::authenticate_step(const tunnel::frame& f) {
  using state = tunnel::gateway_handshake::state;
  if (f.header.type == tunnel::frame_type::hello && hs_->current() == state::await_hello)
    co_return co_await on_hello_frame(f);
  if (f.header.type != tunnel::frame_type::response || hs_->current() != state::challenged) {
    protocol_error("unexpected", "unexpected " + std::string(tunnel::name_of(f.header.type)) + " before authentication");
    co_return false;
  }
  std::string why;
  auto r = tunnel::parse_response(f.payload, why);
  if (!r) {
    co_await abandon_challenge();  // a challenge answered with garbage is not answered
    protocol_error("bad_response", why);
    co_return false;
  }
  tunnel::gateway_handshake::step step;
  {
    std::lock_guard lock(ctx_->limiter_mu);
    step = hs_->on_response(*r, system_clock::instance().now());
  }
  if (step.auth_ok && *step.auth_ok) co_return co_await on_chap_ok(std::move(step));
  co_return co_await on_chap_denied(std::move(step));
}

// A CHAP failure: journaled (and a lock-out it started). A lock-out of an enrolled machine is
// always journaled; the rest of an unauthenticated connection only within its source's budget.
asio::awaitable<void> tunnel_connection::journal_denied(tunnel::gateway_handshake::step step) {
  summary_reason_ = step.reason;
  // A re-challenge of an authenticated tunnel (docs/protocol.md §6) is tunnel.reauth.
  auto e = authenticated_ ? entry(std::string("tunnel.reauth"), journal::outcome::denied,
                                  reauth_detail(json::object{{"reason", step.reason}}))
                          : entry(std::string("tunnel.auth"), journal::outcome::denied,
                                  json::serialize(json::object{{"reason", step.reason}, {"mechanism", hs_->mechanism()}}));
  co_await journal_pre(std::move(e));
  if (!step.lockout_started) co_return;
  auto lock_entry = entry(std::string("tunnel.auth"), journal::outcome::denied,
                          std::string(R"({"lockout":true,"reason":"too many failed authentications"})"));
  if (hs_->known())
    (void)co_await async_append(svc_.journal(), std::move(lock_entry), asio::use_awaitable);
  else
    co_await journal_pre(std::move(lock_entry));
}

// Denied: journal, answer FAILURE, close.
asio::awaitable<bool> tunnel_connection::on_chap_denied(tunnel::gateway_handshake::step step) {
  co_await journal_denied(step);
  const auto f = step.send_failure.value_or(tunnel::failure{0, "authentication failed", 0});
  send_failure(f.id, f.reason, "authentication failed", f.retry_after_seconds);
  co_return false;
}

// The connection ends while a CHALLENGE waits for its answer: a failure for the lock-out.
asio::awaitable<void> tunnel_connection::abandon_challenge() {
  if (!hs_ || hs_->current() != tunnel::gateway_handshake::state::challenged) co_return;
  tunnel::gateway_handshake::step step;
  {
    std::lock_guard lock(ctx_->limiter_mu);
    step = hs_->on_abandon(system_clock::instance().now());
  }
  co_await journal_denied(std::move(step));
}

tunnel::notice tunnel_connection::refused_notice() const {
  tunnel::notice n;
  n.event = "tunnel_refused";
  n.ts = format_rfc3339(system_clock::instance().now());
  n.actor = remote_;
  n.reason =
      "another agent authenticated with this machine's secret and was refused, because this tunnel is live; "
      "if you did not start it, someone else holds this machine's profile";
  return n;
}

// Refused after a correct CHAP answer (not a failure for the lock-out): journaled before the
// answer, always (the secret was proven), with the tunnel.connect it may have skipped.
asio::awaitable<bool> tunnel_connection::refuse_after_chap(int id, std::string reason, json::object detail,
                                                           std::string answer) {
  co_await journal_connect_late();
  detail["reason"] = reason;
  detail["mechanism"] = hs_->mechanism();
  (void)co_await async_append(svc_.journal(), entry(std::string("tunnel.auth"), journal::outcome::denied, json::serialize(detail)),
                              asio::use_awaitable);
  send_failure(id, std::move(answer), "refused: " + reason);
  co_return false;
}

// Asks `live` for a sign of life (docs/protocol.md §9.1): a PING, then up to
// kLivenessProbeSeconds for any frame from its agent.
asio::awaitable<liveness> tunnel_connection::probe(std::shared_ptr<tunnel_connection> live) {
  const auto before = live->frames_in();
  live->send_probe();
  const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(tunnel::kLivenessProbeSeconds);
  co_await wait_for_change({&live->changed(), nullptr},
                           [&live, before] { return live->closing() || live->frames_in() != before; }, until);
  live->end_probe();
  if (live->closing()) co_return liveness::gone;
  if (live->frames_in() != before) co_return liveness::alive;
  co_return liveness::silent;
}

// Until `old` has journaled its tunnel.close (bounded): the journal then tells the old
// tunnel's end before the new one's start.
asio::awaitable<void> tunnel_connection::wait_finished(std::shared_ptr<tunnel_connection> old) {
  const auto until = std::chrono::steady_clock::now() + kReplaceWait;
  co_await wait_for_change({&old->changed(), nullptr}, [&old] { return old->finished(); }, until);
}

asio::awaitable<bool> tunnel_connection::journal_auth_ok(int id, std::string replaced) {
  co_await journal_connect_late();
  json::array scopes;
  for (auto& s : hs_->hello_message().scopes) scopes.emplace_back(s.name);
  json::array ask;
  for (auto& s : hs_->hello_message().scopes)
    if (s.ask) ask.emplace_back(s.name);
  json::object d{{"mechanism", hs_->mechanism()}, {"scopes", std::move(scopes)}};
  if (!ask.empty()) {  // the customer approves each channel to these (docs/protocol.md §8.1)
    d["ask"] = std::move(ask);
    d["approval_seconds"] = hs_->hello_message().approval_seconds;
  }
  if (!replaced.empty()) d["replaced"] = replaced;
  // Journal before access: SUCCESS is sent only once tunnel.auth is durable.
  auto rec = co_await async_append(svc_.journal(), entry(std::string("tunnel.auth"), journal::outcome::ok, json::serialize(d)),
                                   asio::use_awaitable);
  if (rec.ok()) co_return true;
  refuse_unrecorded(id);
  co_return false;
}

void tunnel_connection::refuse_unrecorded(int id) {
  tunnel::failure f;
  f.id = id;
  f.reason = "the gateway cannot record this session now";
  f.retry_after_seconds = 60;
  queue(tunnel::frame_type::failure, tunnel::to_payload(f));
  set_close("journal unavailable", journal::outcome::error);
  mark_closing();
}

// The tunnel joined a session the machine already had (docs/protocol.md §9): `tunnel.reauth`
// with trigger `resume` (HELLO named it) or `reconnect` (it did not), durable before SUCCESS;
// and a `resume` that could not be honoured is recorded as refused, with why.
asio::awaitable<bool> tunnel_connection::journal_join(int id, const service::tunnel_join& j) {
  const auto& asked = hs_->hello_message().resume;
  if (asked.empty() && !j.held) co_return true;  // a new session: tunnel.auth tells it
  json::object d{{"mechanism", hs_->mechanism()}};
  auto outcome = journal::outcome::ok;
  if (!j.resume_refused.empty()) {
    d["trigger"] = "resume";
    d["resume"] = asked;
    d["reason"] = j.resume_refused;
    outcome = journal::outcome::denied;
  } else {
    d["trigger"] = asked.empty() ? "reconnect" : "resume";
  }
  auto rec = co_await async_append(svc_.journal(), entry(std::string("tunnel.reauth"), outcome, json::serialize(d)),
                                   asio::use_awaitable);
  if (rec.ok()) co_return true;
  refuse_unrecorded(id);  // the close gives the session back to its grace (teardown)
  co_return false;
}

// CHAP succeeded. One live tunnel per machine (docs/protocol.md §9.1), decided by one
// newcomer at a time: with no live tunnel, this one serves the machine's session; with a live
// one that answers a probe, this one is refused; with a silent one, this one replaces it.
asio::awaitable<bool> tunnel_connection::on_chap_ok(tunnel::gateway_handshake::step step) {
  secret_proven_ = true;
  const int id = step.send_success->id;
  stream_.expires_after(std::chrono::milliseconds(cfg_.handshake_timeout_ms));  // room for the probe
  machine_claim claim(*ctx_, machine_);
  // Woken when another newcomer releases the machine, or when this tunnel starts closing.
  const auto until = std::chrono::steady_clock::now() + kClaimWait;
  co_await wait_for_change({&ctx_->machines_changed, &changed_},
                           [&claim, this] { return claim.try_take() || closing_; }, until);
  if (!claim.held())
    co_return co_await refuse_after_chap(id, std::string("concurrent"), {},
                                         std::string("another tunnel of this machine is being set up; retry"));
  stream_.expires_after(std::chrono::milliseconds(cfg_.handshake_timeout_ms));
  std::string replaced;
  if (auto live = claim.live()) {
    auto state = liveness::gone;
    if (!live->closing()) state = co_await probe(live);
    if (state == liveness::alive) {
      json::object detail{{"live_source", live->remote()}};
      co_await refuse_after_chap(id, std::string("duplicate"), std::move(detail),
                                 std::string("this machine already has a live tunnel (from ") + live->remote() +
                                     "); stop that agent first");
      if (claim.may_notify(system_clock::instance().now())) live->notify(refused_notice());
      co_return false;
    }
    if (state == liveness::silent) {
      replaced = live->remote();
      live->replace_by(remote_);
    }
    co_await wait_finished(live);
  }
  if (!ctx_->adm.on_authenticated(source_))
    co_return co_await refuse_after_chap(id, std::string("tunnel limit"), {},
                                                   std::string("the gateway has reached its tunnel limit; retry later"));
  counted_authenticated_ = true;
  std::vector<std::string> scopes;
  for (auto& s : hs_->hello_message().scopes) {
    scopes.push_back(s.name);
    if (s.ask) ask_scopes_.insert(s.name);  // read by open_channel once tunnel_commit published us
  }
  approval_seconds_ = hs_->hello_message().approval_seconds;
  receipts_ = hs_->hello_message().receipts;
  // Journal before access (docs/protocol.md §9): the session is decided (a kept one only
  // reserved), tunnel.auth and tunnel.reauth, which name it, are made durable, and only then
  // does this tunnel serve it. Whatever way this ends before the commit, the reservation goes.
  struct reservation {
    service& svc;
    service::tunnel_join join;
    bool committed = false;
    ~reservation() {
      if (!committed) svc.tunnel_abandon(join);
    }
  } r{svc_, svc_.tunnel_claim(machine_, hs_->hello_message().resume)};
  session_ = r.join.session_id;  // for the entries
  bool recorded = co_await journal_auth_ok(id, replaced);
  if (recorded) recorded = co_await journal_join(id, r.join);
  // A gateway that stops meanwhile (close_for_restart) sends END restart to authenticated
  // tunnels only: this one is not served, so its agent sees its connection go and comes back.
  if (!recorded || closing_) {
    session_.clear();  // never served: its close leaves the session's grace as it was
    co_return false;
  }
  session_ = svc_.tunnel_commit(r.join, machine_, scopes, shared_from_this());
  r.committed = true;
  claim.install(weak_from_this());
  step.send_success->session = session_;
  step.send_success->rekey_seconds = static_cast<int>(cfg_.rekey_interval_ms / 1000);
  step.send_success->keepalive_seconds = cfg_.dead_peer_ms / 1000;
  step.send_success->grace_seconds = cfg_.grace_s;
  step.send_success->max_tunnel_seconds = static_cast<int>(cfg_.tunnel_life_ms / 1000);
  authenticated_ = true;
  queue(tunnel::frame_type::success, tunnel::to_payload(*step.send_success));
  release_held();
  // The receipts of the machine's sessions that ended while no agent of it could take them.
  if (receipts_) svc_.send_owed_receipts(machine_, session_, weak_from_this());
  stream_.expires_after(std::chrono::milliseconds(cfg_.dead_peer_ms));
  asio::co_spawn(stream_.get_executor(), rekey_loop(), [self = shared_from_this()](std::exception_ptr e) {
    if (!e) return;
    log_end("tunnel rekey " + self->remote_, e);
    self->set_close("internal error in the rekey", journal::outcome::error);
    self->mark_closing();
    self->stream_.close();  // no tunnel lives on without its rekeys
  });
  co_return true;
}

}  // namespace rsgate::gateway::detail
