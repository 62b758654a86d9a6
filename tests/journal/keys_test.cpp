// Ed25519 against RFC 8032 §7.1 test 1; HMAC-SHA-256 against OpenSSL as an independent
// implementation; key files are 0600 and refused when readable by others.
#include "journal/keys.hpp"

#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <sys/stat.h>

#include <catch2/catch.hpp>

#include "core/files.hpp"
#include "tests/support/process.hpp"

using namespace rsgate;
using namespace rsgate::journal;

TEST_CASE("Ed25519 RFC 8032 test 1") {
  auto seed = *from_hex("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60");
  auto k = signing_key::from_seed(seed);
  CHECK(to_hex(k.pub()) == "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a");
  auto sig = k.sign_hex({});
  CHECK(sig ==
        "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e3970"
        "1cf9b46bd25bf5f0595bbe24655141438e7a100b");
  CHECK(verify_signature(k.pub(), {}, sig));
  bytes msg = {1, 2, 3};
  CHECK_FALSE(verify_signature(k.pub(), msg, sig));
  CHECK_FALSE(verify_signature(k.pub(), {}, sig.substr(2)));
  CHECK_FALSE(verify_signature(k.pub(), {}, "zz"));
}

TEST_CASE("public key file format") {
  auto k = signing_key::generate();
  auto text = format_public_key(k.pub());
  CHECK(text.size() == 65);
  CHECK(parse_public_key(text) == k.pub());
  CHECK_FALSE(parse_public_key("abcd").has_value());
  CHECK_FALSE(parse_public_key(std::string(64, 'g')).has_value());
  CHECK(k.key_id().size() == 16);
}

TEST_CASE("signing key save/load and permission check") {
  test::temp_dir t;
  auto k = signing_key::generate();
  k.save(t / "k");
  CHECK(signing_key::load(t / "k").pub() == k.pub());
  CHECK_THROWS(k.save(t / "k"));  // never overwrites
  ::chmod((t / "k").c_str(), 0644);
  CHECK_THROWS_WITH(signing_key::load(t / "k"), Catch::Contains("readable by group or others"));
  write_file_exclusive(t / "bad", "nothex\n", 0600);
  CHECK_THROWS_WITH(signing_key::load(t / "bad"), Catch::Contains("malformed"));
}

TEST_CASE("HMAC-SHA-256 keyed hash agrees with OpenSSL") {
  test::temp_dir t;
  auto key_hex = std::string("000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f");
  write_file_exclusive(t / "h", key_hex + "\n", 0600);
  auto k = hmac_key::load(t / "h");
  auto key = *from_hex(key_hex);
  for (const std::string& secret : std::vector<std::string>{"", "7KQ4-M2XP-9RTA-C", std::string(1000, 'z')}) {
    unsigned char out[32];
    unsigned int len = 0;
    HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()),
         reinterpret_cast<const unsigned char*>(secret.data()), secret.size(), out, &len);
    CHECK(k.hash_of(secret) == to_hex(std::span<const std::uint8_t>(out, len)));
  }
  auto other = hmac_key::generate();
  CHECK(other.hash_of("x") != k.hash_of("x"));
}
