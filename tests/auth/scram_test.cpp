// SCRAM-SHA-256 against the RFC 7677 §3 example exchange (user "user", password "pencil").
#include "auth/scram.hpp"

#include <catch2/catch.hpp>

using namespace rsgate;
using namespace rsgate::auth::scram;

namespace {
constexpr std::string_view kClientFirstBare = "n=user,r=rOprNGfwEbeRWgbNEkqO";
constexpr std::string_view kServerFirst =
    "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096";
constexpr std::string_view kClientFinalNoProof = "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0";
constexpr std::string_view kProof = "dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=";
constexpr std::string_view kServerSignature = "6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=";

std::string auth_message() {
  return std::string(kClientFirstBare) + "," + std::string(kServerFirst) + "," +
         std::string(kClientFinalNoProof);
}
}  // namespace

TEST_CASE("RFC 7677 test vector: client proof and server signature") {
  auto salt = *from_base64("W22ZaJ0SNY7soEsUEjb6gQ==");
  auto salted = salted_password("pencil", salt, 4096);
  auto r = client_proof(salted, auth_message());
  CHECK(to_base64(r.proof) == kProof);
  CHECK(to_base64(r.expected_server_signature) == kServerSignature);

  auto v = make_verifier("pencil", salt, 4096);
  CHECK(verify_proof(v, auth_message(), r.proof));
  CHECK(to_base64(server_signature(v, auth_message())) == kServerSignature);

  // A proof for another message, or a flipped bit, fails.
  CHECK_FALSE(verify_proof(v, auth_message() + "x", r.proof));
  auto bad = r.proof;
  bad[0] ^= 1;
  CHECK_FALSE(verify_proof(v, auth_message(), bad));
  CHECK_FALSE(verify_proof(make_verifier("pencil!", salt, 4096), auth_message(), r.proof));
}

TEST_CASE("verifier text form round-trips and refuses garbage") {
  auto v = make_verifier("secret", bytes(16, 7), 4096);
  auto text = v.encode();
  CHECK(text.starts_with("SCRAM-SHA-256$4096:"));
  auto back = verifier::decode(text);
  REQUIRE(back);
  CHECK(back->stored_key == v.stored_key);
  CHECK(back->server_key == v.server_key);
  CHECK(back->salt == v.salt);
  for (const char* bad : {"", "SCRAM-SHA-256$", "SCRAM-SHA-256$10:AAAAAAAAAAA=$a:b",
                          "SCRAM-SHA-1$4096:AAAAAAAAAAAAAAAA$a:b", "SCRAM-SHA-256$4096:!!$a:b"}) {
    INFO(bad);
    CHECK_FALSE(verifier::decode(bad).has_value());
  }
  CHECK_FALSE(verifier::decode(text.substr(0, text.size() - 4)).has_value());
}
