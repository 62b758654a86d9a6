// See scram.hpp. PBKDF2 and HMAC come from OpenSSL; comparisons use CRYPTO_memcmp.
#include "auth/scram.hpp"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/sha.h>

#include <charconv>
#include <stdexcept>

namespace rsgate::auth::scram {
namespace {

key hmac(std::span<const std::uint8_t> k, std::string_view msg) {
  key out{};
  unsigned int len = 0;
  if (!HMAC(EVP_sha256(), k.data(), static_cast<int>(k.size()),
            reinterpret_cast<const unsigned char*>(msg.data()), msg.size(), out.data(), &len) ||
      len != out.size())
    throw std::runtime_error("HMAC-SHA-256 failed");
  return out;
}

key sha256(std::span<const std::uint8_t> data) {
  key out{};
  SHA256(data.data(), data.size(), out.data());
  return out;
}

bool decode_key(std::string_view b64, key& out) {
  auto raw = from_base64(b64);
  if (!raw || raw->size() != out.size()) return false;
  std::copy(raw->begin(), raw->end(), out.begin());
  return true;
}

}  // namespace

key salted_password(std::string_view secret, std::span<const std::uint8_t> salt,
                    std::uint32_t iterations) {
  key out{};
  if (PKCS5_PBKDF2_HMAC(secret.data(), static_cast<int>(secret.size()), salt.data(),
                        static_cast<int>(salt.size()), static_cast<int>(iterations), EVP_sha256(),
                        static_cast<int>(out.size()), out.data()) != 1)
    throw std::runtime_error("PBKDF2 failed");
  return out;
}

verifier make_verifier(std::string_view secret, bytes salt, std::uint32_t iterations) {
  auto sp = salted_password(secret, salt, iterations);
  verifier v;
  v.salt = std::move(salt);
  v.iterations = iterations;
  v.stored_key = sha256(hmac(sp, "Client Key"));
  v.server_key = hmac(sp, "Server Key");
  OPENSSL_cleanse(sp.data(), sp.size());
  return v;
}

client_result client_proof(const key& salted, std::string_view auth_message) {
  auto client_key = hmac(salted, "Client Key");
  auto stored = sha256(client_key);
  auto signature = hmac(stored, auth_message);
  client_result r;
  for (size_t i = 0; i < r.proof.size(); ++i) r.proof[i] = client_key[i] ^ signature[i];
  r.expected_server_signature = hmac(hmac(salted, "Server Key"), auth_message);
  OPENSSL_cleanse(client_key.data(), client_key.size());
  return r;
}

bool verify_proof(const verifier& v, std::string_view auth_message, const key& proof) {
  auto signature = hmac(v.stored_key, auth_message);
  key client_key{};
  for (size_t i = 0; i < client_key.size(); ++i) client_key[i] = proof[i] ^ signature[i];
  auto stored = sha256(client_key);
  OPENSSL_cleanse(client_key.data(), client_key.size());
  return CRYPTO_memcmp(stored.data(), v.stored_key.data(), stored.size()) == 0;
}

key server_signature(const verifier& v, std::string_view auth_message) {
  return hmac(v.server_key, auth_message);
}

std::string verifier::encode() const {
  return "SCRAM-SHA-256$" + std::to_string(iterations) + ":" + to_base64(salt) + "$" +
         to_base64(stored_key) + ":" + to_base64(server_key);
}

std::optional<verifier> verifier::decode(std::string_view text) {
  constexpr std::string_view prefix = "SCRAM-SHA-256$";
  if (text.size() > 512 || !text.starts_with(prefix)) return std::nullopt;
  text.remove_prefix(prefix.size());
  auto colon = text.find(':');
  auto dollar = text.find('$');
  if (colon == std::string_view::npos || dollar == std::string_view::npos || colon > dollar)
    return std::nullopt;
  verifier v;
  auto it = text.substr(0, colon);
  auto [p, ec] = std::from_chars(it.data(), it.data() + it.size(), v.iterations);
  if (ec != std::errc{} || p != it.data() + it.size() || v.iterations < kMinIterations ||
      v.iterations > kMaxIterations)
    return std::nullopt;
  auto salt = from_base64(text.substr(colon + 1, dollar - colon - 1));
  if (!salt || salt->size() < 8 || salt->size() > 64) return std::nullopt;
  v.salt = std::move(*salt);
  auto keys = text.substr(dollar + 1);
  auto c2 = keys.find(':');
  if (c2 == std::string_view::npos) return std::nullopt;
  if (!decode_key(keys.substr(0, c2), v.stored_key) || !decode_key(keys.substr(c2 + 1), v.server_key))
    return std::nullopt;
  return v;
}

}  // namespace rsgate::auth::scram
