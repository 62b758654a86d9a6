// The gateway's side of a tunnel's authentication (docs/protocol.md §4.1–4.5, §5): HELLO in,
// CHALLENGE out, RESPONSE in, SUCCESS or FAILURE out. A pure state machine: no I/O, no
// journal, no clock of its own. The driver (the tunnel coroutine) feeds it parsed messages
// with the time, sends what it returns, and journals `tunnel.auth` with the returned outcome
// *before* it sends SUCCESS (journal before access).
//
// One object per tunnel, owned by that tunnel's coroutine; never shared between threads.
// The failure limiter is shared by all tunnels and is passed in already serialised.
#pragma once
#include <functional>
#include <optional>
#include <string>
#include <variant>

#include "auth/rate_limit.hpp"
#include "auth/scram.hpp"
#include "core/clock.hpp"
#include "protocol/messages.hpp"

namespace rsgate::tunnel {

// What the gateway knows of an enrolled machine (state.db). The MD5 secret is present only
// for machines enabled for legacy MD5-CHAP, decrypted just for this handshake.
struct machine_record {
  std::string machine;  // TTTT-MMM*SSSSSSS
  auth::scram::verifier verifier;
  bool md5_enabled = false;
  std::string md5_secret;
  bool revoked = false;
};

using machine_lookup = std::function<std::optional<machine_record>(const std::string& machine)>;
using random_fill = std::function<void(std::span<std::uint8_t>)>;

class gateway_handshake {
 public:
  enum class state { await_hello, challenged, authenticated, failed };

  struct step {
    std::optional<challenge> send_challenge;
    std::optional<success> send_success;
    std::optional<failure> send_failure;  // then close
    // For the journal: set once authentication is decided (denied or ok).
    std::optional<bool> auth_ok;
    bool lockout_started = false;
    std::string reason;  // for the journal's detail when denied
  };

  // `decoy_salt` gives the salt an unknown machine is challenged with: the same for the same
  // name every time (a keyed hash), as a real machine's salt is, so that asking twice does
  // not reveal which machines are enrolled. Defaults to random (tests).
  gateway_handshake(bytes exporter, machine_lookup lookup, auth::failure_limiter& limiter,
                    random_fill rng, std::function<bytes(const std::string&)> decoy_salt = {});

  [[nodiscard]] step on_hello(const hello& h, micros now);
  [[nodiscard]] step on_response(const response& r, micros now);
  // The connection ended (closed, timed out, protocol error) without the answer to a
  // CHALLENGE: a failure for the lock-out, like a wrong answer. Outside `challenged`, nothing.
  [[nodiscard]] step on_abandon(micros now);
  // A re-challenge on an authenticated tunnel (rekey, docs/protocol.md §6). Its answer is
  // checked without the lock-out's permission (a lock-out others caused by guessing does not
  // end a live tunnel) and its success does not clear the failures; a wrong answer counts.
  [[nodiscard]] step rechallenge(micros now);

  [[nodiscard]] state current() const { return state_; }
  [[nodiscard]] const std::string& machine() const { return machine_; }
  [[nodiscard]] const std::string& mechanism() const { return mechanism_; }
  [[nodiscard]] const hello& hello_message() const { return hello_; }
  // After HELLO: the machine is enrolled and not revoked (for the driver's journal policy
  // only; the answer to the agent never depends on it).
  [[nodiscard]] bool known() const { return known_; }
  // The session id SUCCESS names; set by the driver before the response is processed.
  void set_session(std::string id) { session_ = std::move(id); }

 private:
  step fail(std::string reason, micros now, bool count_failure);
  challenge make_challenge();

  bytes exporter_;
  machine_lookup lookup_;
  auth::failure_limiter& limiter_;
  random_fill rng_;
  std::function<bytes(const std::string&)> decoy_salt_;
  state state_ = state::await_hello;
  hello hello_;
  std::string machine_;
  std::optional<machine_record> record_;
  std::string mechanism_;
  bool known_ = false;
  challenge pending_;
  int next_id_ = 0;
  bool rechallenge_ = false;  // the pending challenge is a re-challenge of a live tunnel
  std::string session_;
};

}  // namespace rsgate::tunnel
