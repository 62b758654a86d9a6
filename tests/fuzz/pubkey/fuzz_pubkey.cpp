// Fuzz target for public key files and signature checks (journal/keys.hpp), the inputs of
// `rsgate journal verify --pubkey FILE`: parse_public_key must never crash and must read back
// what format_public_key writes; verify_signature must never crash on any key, message and
// signature text, must accept a signature really made over the message, and refuse it over
// another message.
//
// Input: the first 32 bytes are a public key (also used as a signing seed), the next byte
// picks how the signature text is made, the rest splits at the first '|' into signature text
// and message. The whole input is also tried as a public key file.
#include "journal/keys.hpp"

#include <algorithm>
#include <cstring>

#include "tests/fuzz/fuzz_support.hpp"

namespace journal = rsgate::journal;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  auto text = rsgate::fuzz::as_text(data, size);
  if (auto pk = journal::parse_public_key(text)) {
    auto back = journal::parse_public_key(journal::format_public_key(*pk));
    FUZZ_CHECK(back && *back == *pk);
    FUZZ_CHECK(journal::key_id_of(*pk).size() == 16);
  }

  if (size < 33) return 0;
  journal::public_key pk{};
  std::memcpy(pk.data(), data, pk.size());
  const std::uint8_t mode = data[32];
  auto rest = text.substr(33);
  auto bar = rest.find('|');
  auto sig_text = rest.substr(0, bar);
  auto message = bar == std::string_view::npos ? std::string_view() : rest.substr(bar + 1);

  std::string sig(sig_text);
  if (mode & 1) {
    // Signature-sized: the bytes reach Ed25519 itself instead of stopping at the length check.
    sig = rsgate::to_hex(rsgate::as_bytes(sig_text));
    sig.resize(128, '0');
  }
  (void)journal::verify_signature(pk, rsgate::as_bytes(message), sig);

  if (mode & 2) {
    // A real signature with the key whose seed is those 32 bytes.
    auto key = journal::signing_key::from_seed(std::span(data, 32));
    auto good = key.sign_hex(rsgate::as_bytes(message));
    FUZZ_CHECK(journal::verify_signature(key.pub(), rsgate::as_bytes(message), good));
    std::string other(message);
    other.push_back('x');
    FUZZ_CHECK(!journal::verify_signature(key.pub(), rsgate::as_bytes(other), good));
    std::string upper = good;
    std::transform(upper.begin(), upper.end(), upper.begin(), [](char c) {
      return static_cast<char>(c >= 'a' && c <= 'f' ? c - 'a' + 'A' : c);
    });
    FUZZ_CHECK(journal::verify_signature(key.pub(), rsgate::as_bytes(message), upper));
  }
  return 0;
}
