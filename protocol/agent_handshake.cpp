// See handshake.hpp.
#include "protocol/agent_handshake.hpp"

#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <sodium.h>

#include <algorithm>
#include <stdexcept>

#include "auth/chap_md5.hpp"

namespace rsgate::agent {

std::string make_client_nonce() {
  if (sodium_init() < 0) throw std::runtime_error("libsodium failed to initialise");
  bytes b(18);
  randombytes_buf(b.data(), b.size());
  return to_base64(b);
}

std::optional<bytes> export_channel_binding(SSL* ssl) {
  bytes out(tunnel::kExporterBytes);
  if (!ssl || SSL_export_keying_material(ssl, out.data(), out.size(), tunnel::kExporterLabel.data(),
                                         tunnel::kExporterLabel.size(), nullptr, 0, 0) != 1) {
    ERR_clear_error();
    return std::nullopt;
  }
  return out;
}

agent_handshake::agent_handshake(identity id, bytes exporter, std::string client_nonce)
    : id_(std::move(id)), exporter_(std::move(exporter)), client_nonce_(std::move(client_nonce)) {}

tunnel::hello agent_handshake::make_hello(const std::string& resume) const {
  tunnel::hello h;
  h.agent = id_.agent;
  h.machine = id_.machine;
  h.mechanisms = id_.mechanisms;
  h.client_nonce = client_nonce_;
  h.scopes = id_.scopes;
  const bool asks = std::any_of(h.scopes.begin(), h.scopes.end(), [](auto& o) { return o.ask; });
  h.approval_seconds = asks ? id_.approval_seconds : 0;
  h.resume = resume;
  h.receipts = id_.receipts;
  return h;
}

std::optional<tunnel::response> agent_handshake::on_challenge(const tunnel::challenge& c,
                                                              std::string& why) {
  if (std::find(id_.mechanisms.begin(), id_.mechanisms.end(), c.mechanism) == id_.mechanisms.end()) {
    why = "the gateway asked for a mechanism this agent did not offer";
    return std::nullopt;
  }
  tunnel::response r;
  r.id = c.id;
  if (c.mechanism == tunnel::kMechanismScram) {
    if (!c.nonce.starts_with(client_nonce_) || c.nonce.size() < client_nonce_.size() + 16) {
      why = "the challenge's nonce does not extend this agent's nonce";
      return std::nullopt;
    }
    auto salted = auth::scram::salted_password(id_.secret, c.salt, c.iterations);
    auto am = tunnel::scram_auth_message(id_.machine, client_nonce_, c, exporter_);
    auto cp = auth::scram::client_proof(salted, am);
    OPENSSL_cleanse(salted.data(), salted.size());
    r.proof.assign(cp.proof.begin(), cp.proof.end());
    expected_signature_ = cp.expected_server_signature;
  } else {
    auto d = auth::chap_md5_response(static_cast<std::uint8_t>(c.id), id_.secret, c.value);
    r.proof.assign(d.begin(), d.end());
  }
  answered_ = c;
  return r;
}

bool agent_handshake::on_success(const tunnel::success& s, std::string& why) {
  if (!answered_ || s.id != answered_->id) {
    why = "SUCCESS for a challenge this agent did not answer";
    return false;
  }
  if (answered_->mechanism == tunnel::kMechanismScram) {
    if (s.server_signature.size() != expected_signature_.size() ||
        CRYPTO_memcmp(s.server_signature.data(), expected_signature_.data(), expected_signature_.size()) != 0) {
      why = "the gateway's server signature is wrong: it does not know this machine's verifier";
      return false;
    }
  }
  answered_.reset();
  return true;
}

}  // namespace rsgate::agent
