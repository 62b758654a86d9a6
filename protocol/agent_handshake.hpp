// The agent's side of a tunnel's authentication (docs/protocol.md §5): builds HELLO, answers
// CHALLENGEs, and checks the gateway's SCRAM server signature before trusting SUCCESS.
// Pure: no I/O. One object per tunnel connection (the exporter differs per connection).
#pragma once
#include <optional>
#include <string>

#include "auth/scram.hpp"
#include "protocol/messages.hpp"

using SSL = struct ssl_st;

namespace rsgate::agent {

struct identity {
  std::string machine;  // TTTT-MMM*SSSSSSS
  std::string secret;   // the CHAP secret from the profile
  std::vector<std::string> mechanisms = {"scram-sha-256"};
  std::vector<tunnel::scope_offer> scopes;
  int approval_seconds = 0;  // HELLO's, when a scope asks (docs/protocol.md §8.1)
  bool receipts = false;     // HELLO's: stores and acknowledges receipts (docs/protocol.md §4.12)
  std::string agent = "rsgate-agent/0.1.0";
};

class agent_handshake {
 public:
  agent_handshake(identity id, bytes exporter, std::string client_nonce);

  [[nodiscard]] tunnel::hello make_hello(const std::string& resume = "") const;
  // The RESPONSE, or nullopt with `why` when the challenge must not be answered (a nonce
  // that does not extend ours, a mechanism we did not offer, absurd parameters).
  [[nodiscard]] std::optional<tunnel::response> on_challenge(const tunnel::challenge& c, std::string& why);
  // True when SUCCESS proves the gateway knows the machine's verifier (SCRAM) and answers
  // the challenge we responded to.
  [[nodiscard]] bool on_success(const tunnel::success& s, std::string& why);

 private:
  identity id_;
  bytes exporter_;
  std::string client_nonce_;
  std::optional<tunnel::challenge> answered_;
  auth::scram::key expected_signature_{};
};

// The connection's RFC 9266 tls-exporter value (docs/protocol.md §1), or nullopt when OpenSSL
// cannot derive it: the caller must then not authenticate (never a zero or partial binding).
[[nodiscard]] std::optional<bytes> export_channel_binding(SSL* ssl);

// A fresh client nonce: 18 random bytes, base64 (24 characters).
[[nodiscard]] std::string make_client_nonce();

}  // namespace rsgate::agent
