// Password hashing (Argon2id via libsodium), random secrets and constant-time comparison.
#include "auth/password.hpp"

#include <catch2/catch.hpp>
#include <set>

using namespace rsgate::auth;

TEST_CASE("hash and verify a password") {
  auto h = hash_password("correct horse");
  CHECK(h.rfind("$argon2id$", 0) == 0);
  CHECK(verify_password(h, "correct horse"));
  CHECK_FALSE(verify_password(h, "correct horse "));
  CHECK_FALSE(verify_password(h, ""));
  CHECK_FALSE(verify_password("not a hash", "correct horse"));
  CHECK_FALSE(needs_rehash(h));
  CHECK(hash_password("correct horse") != h);  // salted
}

TEST_CASE("random secrets are Crockford base32 of the right length and distinct") {
  std::set<std::string> seen;
  for (int i = 0; i < 200; ++i) {
    auto s = random_secret(100);
    CHECK(s.size() == 20);
    CHECK(s.find_first_not_of("0123456789ABCDEFGHJKMNPQRSTVWXYZ") == std::string::npos);
    seen.insert(s);
  }
  CHECK(seen.size() == 200);
  CHECK(random_secret(61).size() == 13);
}

TEST_CASE("equal_constant_time") {
  CHECK(equal_constant_time("abc", "abc"));
  CHECK_FALSE(equal_constant_time("abc", "abd"));
  CHECK_FALSE(equal_constant_time("abc", "abcd"));
  CHECK(equal_constant_time("", ""));
}

TEST_CASE("random_token: 32 random bytes as 43 base64url characters, never the same twice") {
  auto a = rsgate::auth::random_token();
  auto b = rsgate::auth::random_token();
  CHECK(a.size() == 43);
  CHECK(a != b);
  for (char c : a) CHECK((std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_'));
  CHECK(rsgate::auth::random_token(16).size() == 22);
}
