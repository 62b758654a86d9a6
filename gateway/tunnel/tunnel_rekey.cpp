// Rekey and re-challenge of an authenticated tunnel (docs/protocol.md §6). Every
// tunnel.rekey_interval the gateway renews the TLS keys both ways (TLS 1.3 KeyUpdate with
// update_requested, sent by the writer just before REKEY), then challenges the agent again with
// CHAP on the live tunnel. The answer is checked like the first one (gateway_handshake) and
// journaled as tunnel.reauth before SUCCESS is sent; a wrong answer, none within the handshake
// time, or a journal that cannot record it ends the tunnel. Channels keep flowing meanwhile:
// neither the KeyUpdate nor the re-challenge stops DATA, WINDOW or anything else.
#include <boost/json/serialize.hpp>

#include "gateway/tunnel/tunnel_connection.hpp"

namespace rsgate::gateway::detail {

std::string tunnel_connection::reauth_detail(json::object d) const {
  const auto k = stream_.key_updates();
  d["trigger"] = "rekey";
  d["mechanism"] = hs_->mechanism();
  d["rekeys"] = rekeys_;
  d["key_update"] = !key_update_failed_;
  d["key_updates_sent"] = k.sent;
  d["key_updates_received"] = k.received;
  return json::serialize(d);
}

// On the strand: KeyUpdate (with the writer's next write), REKEY, then the new CHALLENGE.
// False when nothing was sent.
bool tunnel_connection::start_rekey() {
  if (reauth_journaling_) return false;  // the last answer's SUCCESS is not queued yet: next time
  tunnel::gateway_handshake::step step;
  {
    std::lock_guard lock(ctx_->limiter_mu);
    step = hs_->rechallenge(system_clock::instance().now());
  }
  if (!step.send_challenge) return false;  // not authenticated: nothing to renew
  ++rekeys_;
  rechallenge_id_ = step.send_challenge->id;
  {
    std::lock_guard lock(out_mu_);
    key_update_due_ = true;
  }
  queue(tunnel::frame_type::rekey, tunnel::to_payload(tunnel::rekey{}));
  queue(tunnel::frame_type::challenge, tunnel::to_payload(*step.send_challenge));
  return true;
}

// The tunnel lived tunnel.reauth (docs/protocol.md §6): END `reauthenticate` and the close.
// The session stays: the close gives it its grace (teardown), in which the agent comes back on
// a new connection, authenticated from scratch, and resumes it.
void tunnel_connection::end_life() {
  set_close(fmt::format("tunnel life of {} s reached: the agent re-authenticates", cfg_.tunnel_life_ms / 1000),
            journal::outcome::ok);
  queue(tunnel::frame_type::end, tunnel::to_payload(tunnel::reason_only{std::string(tunnel::kReauthenticate)}));
  mark_closing();
  stream_.expires_after(std::chrono::seconds(2));  // ends the reader's wait; END leaves first
}

asio::awaitable<void> tunnel_connection::rekey_loop() {
  auto self = shared_from_this();
  const auto interval = std::chrono::milliseconds(cfg_.rekey_interval_ms);
  const auto answer_within = std::chrono::milliseconds(cfg_.handshake_timeout_ms);
  const auto life_ends = std::chrono::steady_clock::now() + std::chrono::milliseconds(cfg_.tunnel_life_ms);
  while (!closing_) {
    rekey_timer_.expires_at(std::min(std::chrono::steady_clock::now() + interval, life_ends));
    (void)co_await rekey_timer_.async_wait(use_tuple);
    if (closing_ || ending_) co_return;  // ending: the session is over, no re-challenge
    if (std::chrono::steady_clock::now() >= life_ends) {
      end_life();
      co_return;
    }
    if (!start_rekey()) continue;
    // The answer cancels the timer (on_rechallenge_response); so does the tunnel's end.
    rekey_timer_.expires_after(answer_within);
    (void)co_await rekey_timer_.async_wait(use_tuple);
    if (closing_) co_return;
    if (hs_->current() != tunnel::gateway_handshake::state::challenged) continue;  // answered
    // No answer in time: FAILURE and the close first (an answer read meanwhile finds the
    // tunnel closing), then the journal: a failure for the lock-out, as tunnel.reauth.
    const auto why = fmt::format("the re-challenge was not answered within {} s", answer_within.count() / 1000);
    send_failure(rechallenge_id_, why, "re-challenge not answered");
    co_await abandon_challenge();
    stream_.expires_after(std::chrono::seconds(2));  // ends the reader's wait; FAILURE may leave first
    co_return;
  }
}

// The agent's RESPONSE to a re-challenge. False ends the tunnel.
asio::awaitable<bool> tunnel_connection::on_rechallenge_response(const tunnel::frame& f) {
  // Too late: the deadline has already closed the tunnel (FAILURE is on its way).
  if (closing_) co_return false;
  if (hs_->current() != tunnel::gateway_handshake::state::challenged) {
    protocol_error("unexpected", "RESPONSE without a re-challenge");
    co_return false;
  }
  std::string why;
  auto r = tunnel::parse_response(f.payload, why);
  if (!r) {
    co_await abandon_challenge();  // answered with garbage: not answered
    protocol_error("bad_response", why);
    co_return false;
  }
  tunnel::gateway_handshake::step step;
  {
    std::lock_guard lock(ctx_->limiter_mu);
    step = hs_->on_response(*r, system_clock::instance().now());
  }
  rekey_timer_.cancel();  // the loop waits for the next interval (or sees the close)
  if (!step.auth_ok || !*step.auth_ok) {
    co_await journal_denied(step);
    const auto fl = step.send_failure.value_or(tunnel::failure{r->id, "authentication failed", 0});
    send_failure(fl.id, fl.reason, "re-challenge failed: " + step.reason, fl.retry_after_seconds);
    co_return false;
  }
  // Journal before access: the tunnel goes on only once tunnel.reauth is durable. Until
  // SUCCESS is queued no new CHALLENGE may go out (the agent answers one at a time).
  reauth_journaling_ = true;
  auto rec = co_await async_append(svc_.journal(), entry(std::string("tunnel.reauth"), journal::outcome::ok, reauth_detail({})),
                                   asio::use_awaitable);
  reauth_journaling_ = false;
  if (!rec.ok()) {  // fail closed
    set_close("journal unavailable", journal::outcome::error);
    send_failure(step.send_success->id, "the gateway cannot record this session now", "journal unavailable", 60);
    co_return false;
  }
  step.send_success->session = session_;
  step.send_success->rekey_seconds = static_cast<int>(cfg_.rekey_interval_ms / 1000);
  step.send_success->keepalive_seconds = cfg_.dead_peer_ms / 1000;
  step.send_success->grace_seconds = cfg_.grace_s;
  step.send_success->max_tunnel_seconds = static_cast<int>(cfg_.tunnel_life_ms / 1000);
  queue(tunnel::frame_type::success, tunnel::to_payload(*step.send_success));
  co_return true;
}

}  // namespace rsgate::gateway::detail
