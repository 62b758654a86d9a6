// Fuzz target for the agent profile (protocol/profile.hpp): the TOML file the customer's agent
// reads at start. Nothing may crash; a refusal is a std::runtime_error naming the file; an
// accepted profile is written back by to_toml into a text that reads as the same profile.
// toml++ 3.3.0 has reachable `unreachable` UB on some non-ASCII input (TOOLCHAIN.md), so the
// fuzz build compiles profile.cpp with -fno-sanitize=unreachable (protocol/CMakeLists.txt).
#include "protocol/profile.hpp"

#include <stdexcept>

#include "tests/fuzz/fuzz_support.hpp"

using namespace rsgate::agent;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size > 64 * 1024) return 0;
  auto text = rsgate::fuzz::as_text(data, size);
  profile p;
  try {
    p = parse_profile(text, "fuzz.toml");
  } catch (const std::runtime_error& e) {
    FUZZ_CHECK(std::string_view(e.what()).starts_with("fuzz.toml: "));
    return 0;
  }
  FUZZ_CHECK(!p.primary.empty() && !p.secret.empty());
  auto again = parse_profile(to_toml(p), "again.toml");
  FUZZ_CHECK(again.machine() == p.machine());
  FUZZ_CHECK(again.primary == p.primary && again.backup == p.backup && again.secret == p.secret);
  FUZZ_CHECK(again.receipt_keys == p.receipt_keys && again.receipts_dir == p.receipts_dir);
  FUZZ_CHECK(again.scopes.size() == p.scopes.size());
  return 0;
}
