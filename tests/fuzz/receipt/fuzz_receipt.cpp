// Fuzz target for a stored receipt and its body (protocol/receipt.hpp): the file that
// `rsgate-agent receipt verify` and `rsgate journal verify --anchor` read. Nothing may crash
// or throw; a refusal says why; an accepted file is written back into one that reads the same;
// no fuzzed signature verifies against a fixed key (the key's secret half is not here).
#include "protocol/receipt.hpp"

#include "tests/fuzz/fuzz_support.hpp"

namespace tunnel = rsgate::tunnel;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  auto text = rsgate::fuzz::as_text(data, size);
  std::string why;
  if (auto r = tunnel::parse_receipt_file(text, why)) {
    FUZZ_CHECK(why.empty());
    auto again = tunnel::parse_receipt_file(tunnel::format_receipt_file(*r), why);
    FUZZ_CHECK(again && again->receipt == r->receipt && again->signature == r->signature &&
               again->key_id == r->key_id && again->profile == r->profile);
    static const auto key = *tunnel::parse_receipt_key("3b6a27bcceb6a42d62a3a8d02a6f0d73653215771de243a63ac048a18b59da29");
    FUZZ_CHECK(!tunnel::verify_receipt(*r, key));
  } else {
    FUZZ_CHECK(!why.empty());
  }
  if (auto b = tunnel::parse_receipt_body(text, why)) {
    FUZZ_CHECK(b->journal_seq >= 1 && b->journal_hash.size() == 64);
    FUZZ_CHECK(!b->gateway.empty() && !b->session.empty() && !b->machine.empty());
  } else {
    FUZZ_CHECK(!why.empty());
  }
  return 0;
}
