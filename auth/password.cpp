// See password.hpp. Interactive-grade Argon2id cost: ~0.1 s and 64 MiB per hash on the
// reference machine, which bounds online guessing together with the login rate limits.
#include "auth/password.hpp"

#include <sodium.h>

#include "core/encoding.hpp"

#include <stdexcept>
#include <vector>

namespace rsgate::auth {
namespace {
void init() {
  if (sodium_init() < 0) throw std::runtime_error("libsodium failed to initialise");
}
constexpr unsigned long long kOps = crypto_pwhash_OPSLIMIT_INTERACTIVE;
constexpr std::size_t kMem = crypto_pwhash_MEMLIMIT_INTERACTIVE;
}  // namespace

std::string hash_password(std::string_view password) {
  init();
  char out[crypto_pwhash_STRBYTES];
  if (crypto_pwhash_str(out, password.data(), password.size(), kOps, kMem) != 0)
    throw std::runtime_error("out of memory while hashing a password");
  return out;
}

bool verify_password(std::string_view stored_hash, std::string_view password) {
  init();
  if (stored_hash.size() >= crypto_pwhash_STRBYTES) return false;
  std::string h(stored_hash);  // NUL-terminated copy
  return crypto_pwhash_str_verify(h.c_str(), password.data(), password.size()) == 0;
}

bool needs_rehash(std::string_view stored_hash) {
  init();
  std::string h(stored_hash);
  return crypto_pwhash_str_needs_rehash(h.c_str(), kOps, kMem) != 0;
}

std::string random_secret(int bits) {
  init();
  static constexpr char kAlphabet[] = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";
  const int chars = (bits + 4) / 5;
  std::string out;
  out.reserve(static_cast<size_t>(chars));
  for (int i = 0; i < chars; ++i) out.push_back(kAlphabet[randombytes_uniform(32)]);
  return out;
}

std::string random_token(std::size_t bytes) {
  init();
  std::vector<std::uint8_t> b(bytes);
  randombytes_buf(b.data(), b.size());
  auto out = to_base64url(b);
  sodium_memzero(b.data(), b.size());
  return out;
}

bool equal_constant_time(std::string_view a, std::string_view b) {
  init();
  // Compare fixed-size digests so neither content nor length leaks through timing.
  unsigned char da[crypto_generichash_BYTES], db[crypto_generichash_BYTES];
  crypto_generichash(da, sizeof da, reinterpret_cast<const unsigned char*>(a.data()), a.size(),
                     nullptr, 0);
  crypto_generichash(db, sizeof db, reinterpret_cast<const unsigned char*>(b.data()), b.size(),
                     nullptr, 0);
  return sodium_memcmp(da, db, sizeof da) == 0;
}

}  // namespace rsgate::auth
