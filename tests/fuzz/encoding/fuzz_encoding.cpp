// Fuzz target for the hex and base64 decoders (core/encoding.hpp): from_hex and from_base64
// must never crash, whatever they decode must encode back to the same text (hex: up to case;
// base64: to an encoding that decodes to the same bytes), and any bytes must survive
// to_hex/to_base64 and back.
#include "core/encoding.hpp"

#include <algorithm>

#include "tests/fuzz/fuzz_support.hpp"

namespace {

std::string lower(std::string_view s) {
  std::string out(s);
  for (auto& c : out)
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  return out;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  auto text = rsgate::fuzz::as_text(data, size);
  std::span<const std::uint8_t> raw(data, size);

  if (auto b = rsgate::from_hex(text)) {
    FUZZ_CHECK(b->size() * 2 == text.size());
    FUZZ_CHECK(rsgate::to_hex(*b) == lower(text));
  }

  if (auto b = rsgate::from_base64(text)) {
    FUZZ_CHECK(b->size() <= text.size() / 4 * 3);
    // Only the length is fixed: unused low bits of the last digit are not checked (RFC 4648
    // §3.5 allows that), so "AB==" decodes like "AA==".
    auto enc = rsgate::to_base64(*b);
    FUZZ_CHECK(enc.size() == text.size());
    auto back = rsgate::from_base64(enc);
    FUZZ_CHECK(back && *back == *b);
  }

  auto hex = rsgate::to_hex(raw);
  FUZZ_CHECK(hex.size() == 2 * size);
  auto hex_back = rsgate::from_hex(hex);
  FUZZ_CHECK(hex_back && std::equal(hex_back->begin(), hex_back->end(), raw.begin(), raw.end()));

  auto b64 = rsgate::to_base64(raw);
  FUZZ_CHECK(b64.size() == (size + 2) / 3 * 4);
  auto b64_back = rsgate::from_base64(b64);
  FUZZ_CHECK(b64_back && std::equal(b64_back->begin(), b64_back->end(), raw.begin(), raw.end()));
  return 0;
}
