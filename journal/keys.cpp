// See keys.hpp. Key files hold hex so an operator can back them up as text; they are written
// exclusively with mode 0600 and never printed.
#include "journal/keys.hpp"

#include <sodium.h>

#include <stdexcept>

#include "core/files.hpp"

namespace rsgate::journal {
namespace {

std::string trim(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == '\r' || s.back() == ' ')) s.pop_back();
  return s;
}

bytes load_hex_key(const std::filesystem::path& file, std::size_t size, std::string_view what) {
  if (is_group_or_world_accessible(file))
    throw std::runtime_error(std::string(what) + " " + file.string() +
                             " is readable by group or others; chmod 600 it");
  auto raw = from_hex(trim(read_file(file, 4096)));
  if (!raw || raw->size() != size)
    throw std::runtime_error(std::string(what) + " " + file.string() + " is malformed");
  return *raw;
}

}  // namespace

void ensure_sodium() {
  if (sodium_init() < 0) throw std::runtime_error("libsodium failed to initialise");
}

signing_key signing_key::generate() {
  ensure_sodium();
  std::array<std::uint8_t, 32> seed{};
  randombytes_buf(seed.data(), seed.size());
  auto k = from_seed(seed);
  sodium_memzero(seed.data(), seed.size());
  return k;
}

signing_key signing_key::from_seed(std::span<const std::uint8_t> seed32) {
  ensure_sodium();
  if (seed32.size() != 32) throw std::invalid_argument("Ed25519 seed must be 32 bytes");
  signing_key k;
  std::copy(seed32.begin(), seed32.end(), k.seed_.begin());
  crypto_sign_seed_keypair(k.pk_.data(), k.sk_.data(), k.seed_.data());
  return k;
}

signing_key signing_key::load(const std::filesystem::path& file) {
  auto seed = load_hex_key(file, 32, "signing key");
  auto k = from_seed(seed);
  sodium_memzero(seed.data(), seed.size());
  return k;
}

void signing_key::save(const std::filesystem::path& file) const {
  write_file_exclusive(file, to_hex(seed_) + "\n", 0600);
}

signing_key::~signing_key() {
  sodium_memzero(seed_.data(), seed_.size());
  sodium_memzero(sk_.data(), sk_.size());
}

std::string signing_key::sign_hex(std::span<const std::uint8_t> message) const {
  std::array<std::uint8_t, crypto_sign_BYTES> sig{};
  crypto_sign_detached(sig.data(), nullptr, message.data(), message.size(), sk_.data());
  return to_hex(sig);
}

std::string signing_key::key_id() const { return key_id_of(pk_); }

std::string key_id_of(const public_key& pk) {
  std::array<std::uint8_t, 32> d{};
  crypto_hash_sha256(d.data(), pk.data(), pk.size());
  return to_hex(std::span(d).first(8));
}

bool verify_signature(const public_key& pk, std::span<const std::uint8_t> message,
                      std::string_view signature_hex) {
  auto sig = from_hex(signature_hex);
  if (!sig || sig->size() != crypto_sign_BYTES) return false;
  return crypto_sign_verify_detached(sig->data(), message.data(), message.size(), pk.data()) == 0;
}

std::string format_public_key(const public_key& pk) { return to_hex(pk) + "\n"; }

std::optional<public_key> parse_public_key(std::string_view text) {
  while (!text.empty() && (text.back() == '\n' || text.back() == '\r' || text.back() == ' '))
    text.remove_suffix(1);
  auto raw = from_hex(text);
  if (!raw || raw->size() != 32) return std::nullopt;
  public_key pk{};
  std::copy(raw->begin(), raw->end(), pk.begin());
  return pk;
}

hmac_key hmac_key::generate() {
  ensure_sodium();
  hmac_key k;
  crypto_auth_hmacsha256_keygen(k.key_.data());
  return k;
}

hmac_key hmac_key::load(const std::filesystem::path& file) {
  ensure_sodium();
  auto raw = load_hex_key(file, 32, "HMAC key");
  hmac_key k;
  std::copy(raw.begin(), raw.end(), k.key_.begin());
  sodium_memzero(raw.data(), raw.size());
  return k;
}

void hmac_key::save(const std::filesystem::path& file) const {
  write_file_exclusive(file, to_hex(key_) + "\n", 0600);
}

hmac_key::~hmac_key() { sodium_memzero(key_.data(), key_.size()); }

std::string hmac_key::hash_of(std::string_view secret) const {
  std::array<std::uint8_t, crypto_auth_hmacsha256_BYTES> out{};
  crypto_auth_hmacsha256_state st;
  crypto_auth_hmacsha256_init(&st, key_.data(), key_.size());
  crypto_auth_hmacsha256_update(&st, reinterpret_cast<const unsigned char*>(secret.data()),
                                secret.size());
  crypto_auth_hmacsha256_final(&st, out.data());
  return to_hex(out);
}

}  // namespace rsgate::journal
