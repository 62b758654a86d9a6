// Fuzz target for stored SCRAM verifiers (auth/scram.hpp), read back from the gateway's state
// database for every CHAP round: verifier::decode must never crash, must accept only the
// documented ranges (iterations 4096..1000000, salt 8..64 bytes), and what it accepts must
// come back unchanged through encode and decode and be usable by verify_proof.
#include "auth/scram.hpp"

#include "tests/fuzz/fuzz_support.hpp"

namespace scram = rsgate::auth::scram;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  auto v = scram::verifier::decode(rsgate::fuzz::as_text(data, size));
  if (!v) return 0;
  FUZZ_CHECK(v->iterations >= scram::kMinIterations && v->iterations <= scram::kMaxIterations);
  FUZZ_CHECK(v->salt.size() >= 8 && v->salt.size() <= 64);
  auto text = v->encode();
  auto again = scram::verifier::decode(text);
  FUZZ_CHECK(again && again->salt == v->salt && again->iterations == v->iterations &&
             again->stored_key == v->stored_key && again->server_key == v->server_key);
  FUZZ_CHECK(again->encode() == text);
  scram::key proof{};
  (void)scram::verify_proof(*v, "n=machine,r=nonce", proof);
  (void)scram::server_signature(*v, "n=machine,r=nonce");
  return 0;
}
