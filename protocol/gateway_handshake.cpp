// See handshake.hpp. Unknown and revoked machines are refused exactly like a wrong secret
// (same reason text, same failure count), so the answer does not reveal which machines exist;
// likewise the challenge's mechanism depends on the HELLO alone, so it does not reveal which
// machines may use MD5.
#include "protocol/gateway_handshake.hpp"

#include <algorithm>

#include "auth/chap_md5.hpp"

namespace rsgate::tunnel {
namespace {
constexpr std::string_view kDenied = "authentication failed";
constexpr std::size_t kServerNonceBytes = 24;
}  // namespace

gateway_handshake::gateway_handshake(bytes exporter, machine_lookup lookup,
                                     auth::failure_limiter& limiter, random_fill rng,
                                     std::function<bytes(const std::string&)> decoy_salt)
    : exporter_(std::move(exporter)), lookup_(std::move(lookup)), limiter_(limiter), rng_(std::move(rng)),
      decoy_salt_(std::move(decoy_salt)) {
  bytes first(1);
  rng_(first);
  next_id_ = first[0];
}

gateway_handshake::step gateway_handshake::fail(std::string reason, micros now, bool count_failure) {
  step s;
  s.auth_ok = false;
  s.reason = reason;
  failure f;
  f.id = pending_.id;
  f.reason = std::string(kDenied);
  if (count_failure && !machine_.empty()) s.lockout_started = limiter_.record_failure(machine_, now);
  if (!machine_.empty()) {
    auto until = limiter_.locked_until(machine_, now);
    if (until > now) f.retry_after_seconds = (until - now + 999'999) / 1'000'000;
  }
  s.send_failure = f;
  state_ = state::failed;
  return s;
}

challenge gateway_handshake::make_challenge() {
  challenge c;
  c.id = next_id_;
  next_id_ = (next_id_ + 1) & 0xff;
  c.mechanism = mechanism_;
  if (mechanism_ == kMechanismScram) {
    bytes server_part(kServerNonceBytes);
    rng_(server_part);
    c.nonce = hello_.client_nonce + to_base64(server_part);
    c.salt = record_->verifier.salt;
    c.iterations = record_->verifier.iterations;
  } else {
    c.value.resize(16);
    rng_(c.value);
  }
  pending_ = c;
  return c;
}

gateway_handshake::step gateway_handshake::on_hello(const hello& h, micros now) {
  if (state_ != state::await_hello) return fail("HELLO out of order", now, false);
  hello_ = h;
  machine_ = h.machine;
  if (!limiter_.allowed(machine_, now)) return fail("machine is locked out", now, false);
  record_ = lookup_(machine_);
  // The mechanism depends on what the agent offers only, never on the machine: SCRAM
  // whenever it is offered, MD5 only when it is all the agent can do. An MD5 challenge for a
  // machine that may not use MD5 (or does not exist) is a decoy, refused after the response.
  // Choosing by the machine's settings would tell anyone which machines have MD5 enabled.
  known_ = record_ && !record_->revoked;
  const bool scram = std::find(h.mechanisms.begin(), h.mechanisms.end(), kMechanismScram) != h.mechanisms.end();
  const bool md5 = std::find(h.mechanisms.begin(), h.mechanisms.end(), kMechanismMd5) != h.mechanisms.end();
  mechanism_ = scram ? std::string(kMechanismScram) : md5 ? std::string(kMechanismMd5) : std::string();
  if (mechanism_.empty()) return fail("no mechanism offered that the gateway knows", now, true);
  if (!known_) {
    machine_record decoy;
    decoy.machine = machine_;
    if (decoy_salt_) {
      decoy.verifier.salt = decoy_salt_(machine_);
    } else {
      decoy.verifier.salt = bytes(16);
      rng_(decoy.verifier.salt);
    }
    decoy.verifier.iterations = auth::scram::kDefaultIterations;
    decoy.revoked = true;
    record_ = decoy;
  }
  step s;
  s.send_challenge = make_challenge();
  state_ = state::challenged;
  return s;
}

gateway_handshake::step gateway_handshake::on_abandon(micros now) {
  if (state_ != state::challenged) return {};
  return fail("abandoned challenge", now, true);
}

gateway_handshake::step gateway_handshake::rechallenge(micros now) {
  if (state_ != state::authenticated) return fail("re-challenge before authentication", now, false);
  step s;
  s.send_challenge = make_challenge();
  state_ = state::challenged;
  rechallenge_ = true;
  return s;
}

gateway_handshake::step gateway_handshake::on_response(const response& r, micros now) {
  if (state_ != state::challenged) return fail("RESPONSE out of order", now, false);
  if (r.id != pending_.id) return fail("RESPONSE names another challenge", now, true);
  // A re-challenge is answered on the live tunnel, which proved the secret already: a
  // lock-out that others caused by guessing (a name is enough) must not end it, nor does its
  // success clear their failures. Its own wrong answers still count.
  if (!rechallenge_ && !limiter_.allowed(machine_, now)) return fail("machine is locked out", now, false);
  bool ok = false;
  step s;
  if (mechanism_ == kMechanismScram) {
    if (r.proof.size() == 32) {
      auth::scram::key proof{};
      std::copy(r.proof.begin(), r.proof.end(), proof.begin());
      auto am = scram_auth_message(machine_, hello_.client_nonce, pending_, exporter_);
      ok = auth::scram::verify_proof(record_->verifier, am, proof) && !record_->revoked;
      if (ok) {
        auto sig = auth::scram::server_signature(record_->verifier, am);
        s.send_success = success{};
        s.send_success->server_signature.assign(sig.begin(), sig.end());
      }
    }
  } else {
    ok = !record_->revoked && record_->md5_enabled &&
         auth::chap_md5_verify(static_cast<std::uint8_t>(pending_.id), record_->md5_secret,
                               pending_.value, r.proof);
    if (ok) s.send_success = success{};
  }
  if (!ok) {
    const char* why = record_->revoked                                            ? "unknown or revoked machine"
                      : mechanism_ == kMechanismMd5 && !record_->md5_enabled ? "md5 not enabled for this machine"
                                                                                  : "wrong response";
    return fail(why, now, true);
  }
  if (!rechallenge_) limiter_.record_success(machine_);
  s.send_success->id = pending_.id;
  s.send_success->session = session_;
  s.auth_ok = true;
  state_ = state::authenticated;
  pending_ = {};  // a challenge is answered once
  return s;
}

}  // namespace rsgate::tunnel
