// SCRAM-SHA-256 computations (RFC 5802 §3, RFC 7677) used by the tunnel's CHAP exchange
// (SPEC §2.3, docs/protocol.md). Pure functions over bytes: the message flow and channel
// binding live in the protocol layer; this file only derives keys, proofs and signatures.
// The gateway stores a verifier (salt, iterations, StoredKey, ServerKey), never the secret.
#pragma once
#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "core/encoding.hpp"

namespace rsgate::auth::scram {

using key = std::array<std::uint8_t, 32>;

struct verifier {
  bytes salt;
  std::uint32_t iterations = 0;
  key stored_key{};
  key server_key{};
  // "SCRAM-SHA-256$<iterations>:<salt b64>$<StoredKey b64>:<ServerKey b64>" (RFC 5803 style).
  [[nodiscard]] std::string encode() const;
  [[nodiscard]] static std::optional<verifier> decode(std::string_view text);
};

inline constexpr std::uint32_t kDefaultIterations = 4096;
inline constexpr std::uint32_t kMinIterations = 4096;
inline constexpr std::uint32_t kMaxIterations = 1'000'000;

[[nodiscard]] key salted_password(std::string_view secret, std::span<const std::uint8_t> salt,
                                  std::uint32_t iterations);
[[nodiscard]] verifier make_verifier(std::string_view secret, bytes salt, std::uint32_t iterations);

struct client_result {
  key proof{};
  key expected_server_signature{};
};
// The client's side: proof for `auth_message`, and the server signature it must then receive.
[[nodiscard]] client_result client_proof(const key& salted, std::string_view auth_message);

// The server's side: true when `proof` is valid for the verifier (constant-time compare).
[[nodiscard]] bool verify_proof(const verifier& v, std::string_view auth_message, const key& proof);
[[nodiscard]] key server_signature(const verifier& v, std::string_view auth_message);

}  // namespace rsgate::auth::scram
