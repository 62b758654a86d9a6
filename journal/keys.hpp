// The gateway's journal keys: an Ed25519 signing key for checkpoints and the signed head, and
// an HMAC-SHA-256 key for the keyed hashes that stand in for secrets. Both live in the data
// directory's keys/ with mode 0600 (docs/journal.md, "Keys").
#pragma once
#include <array>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>

#include "core/encoding.hpp"

namespace rsgate::journal {

using public_key = std::array<std::uint8_t, 32>;

// Owned by the journal writer for the gateway's lifetime; immutable after construction.
class signing_key {
 public:
  static signing_key generate();
  static signing_key from_seed(std::span<const std::uint8_t> seed32);
  // Reads a key file written by save(); throws std::runtime_error with the reason.
  static signing_key load(const std::filesystem::path& file);
  void save(const std::filesystem::path& file) const;  // mode 0600, fails if it exists
  ~signing_key();
  signing_key(const signing_key&) = default;
  signing_key& operator=(const signing_key&) = default;

  [[nodiscard]] const public_key& pub() const { return pk_; }
  [[nodiscard]] std::string sign_hex(std::span<const std::uint8_t> message) const;
  // First 16 hex digits of SHA-256(public key): names the key in checkpoint entries.
  [[nodiscard]] std::string key_id() const;

 private:
  signing_key() = default;
  std::array<std::uint8_t, 32> seed_{};
  public_key pk_{};
  std::array<std::uint8_t, 64> sk_{};
};

[[nodiscard]] std::string key_id_of(const public_key& pk);
[[nodiscard]] bool verify_signature(const public_key& pk, std::span<const std::uint8_t> message,
                                    std::string_view signature_hex);
// Public key file: 64 hex digits and a newline (what `rsgate journal pubkey` prints).
[[nodiscard]] std::string format_public_key(const public_key& pk);
[[nodiscard]] std::optional<public_key> parse_public_key(std::string_view text);

// Keyed hash for secrets (session keys, tokens, CHAP values): HMAC-SHA-256, hex.
class hmac_key {
 public:
  static hmac_key generate();
  static hmac_key load(const std::filesystem::path& file);
  void save(const std::filesystem::path& file) const;
  ~hmac_key();
  hmac_key(const hmac_key&) = default;
  hmac_key& operator=(const hmac_key&) = default;
  [[nodiscard]] std::string hash_of(std::string_view secret) const;

 private:
  hmac_key() = default;
  std::array<std::uint8_t, 32> key_{};
};

// Throws if libsodium cannot initialise.
void ensure_sodium();

}  // namespace rsgate::journal
