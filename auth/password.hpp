// Passwords and other random secrets. Hashes are libsodium's crypto_pwhash_str (Argon2id);
// the algorithm and its cost live in the stored string, so needs_rehash() can tell when to
// upgrade. Comparisons of secrets are constant-time.
#pragma once
#include <string>
#include <string_view>

namespace rsgate::auth {

[[nodiscard]] std::string hash_password(std::string_view password);
[[nodiscard]] bool verify_password(std::string_view stored_hash, std::string_view password);
[[nodiscard]] bool needs_rehash(std::string_view stored_hash);

// A random secret of `bits` bits, in unpadded base32 (Crockford alphabet, no I L O U) so a
// person can read it aloud without ambiguity.
[[nodiscard]] std::string random_secret(int bits);
// `bytes` random bytes (libsodium) as base64url without padding: bearer tokens, login cookies,
// CSRF and channel tokens. 32 bytes give 43 characters.
[[nodiscard]] std::string random_token(std::size_t bytes = 32);

[[nodiscard]] bool equal_constant_time(std::string_view a, std::string_view b);

}  // namespace rsgate::auth
