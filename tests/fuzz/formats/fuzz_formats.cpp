// Fuzz target for the identifiers people type (auth/formats.hpp, auth/session_key.hpp): PMR
// numbers, machine names, account names and session keys reach these checks from the HTTP
// API, the CLI, the journal tool and the tunnel. They must never crash; normalizing a PMR or
// machine must keep its length and verdict and be idempotent (a valid PMR stays valid once
// normalized); a session key that normalizes must be 13 canonical symbols that read back
// the same from their display form, in either case, and end in their data's check symbol,
// one of the 32 readable symbols.
#include "auth/formats.hpp"

#include <string>

#include "auth/session_key.hpp"
#include "tests/fuzz/fuzz_support.hpp"

namespace auth = rsgate::auth;

namespace {

bool has_lower(std::string_view s) {
  for (char c : s)
    if (c >= 'a' && c <= 'z') return true;
  return false;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  auto text = rsgate::fuzz::as_text(data, size);

  bool pmr = auth::is_valid_pmr(text);
  auto npmr = auth::normalize_pmr(text);
  FUZZ_CHECK(npmr.size() == text.size() && !has_lower(npmr));
  FUZZ_CHECK(auth::is_valid_pmr(npmr) == pmr);
  FUZZ_CHECK(auth::normalize_pmr(npmr) == npmr);
  if (pmr) FUZZ_CHECK(text.size() == 13 || text.size() == 11);

  bool machine = auth::is_valid_machine(text);
  auto nmachine = auth::normalize_machine(text);
  FUZZ_CHECK(nmachine.size() == text.size() && !has_lower(nmachine));
  FUZZ_CHECK(auth::is_valid_machine(nmachine) == machine);
  FUZZ_CHECK(auth::normalize_machine(nmachine) == nmachine);
  if (machine) FUZZ_CHECK(text.size() == 16 && text[4] == '-' && text[8] == '*');

  if (auth::is_valid_user_name(text)) {
    FUZZ_CHECK(!text.empty() && text.size() <= 64);
    for (unsigned char c : text) FUZZ_CHECK(c > 0x20 && c < 0x7f);  // printable ASCII only
  }

  if (auto key = auth::normalize_session_key(text)) {
    FUZZ_CHECK(key->size() == 13 && !has_lower(*key));
    // The check symbol is one of the 32 readable symbols and is the data's check.
    FUZZ_CHECK(std::string_view("0123456789ABCDEFGHJKMNPQRSTVWXYZ").find(key->back()) !=
               std::string_view::npos);
    FUZZ_CHECK(auth::session_key_check(std::string_view(*key).substr(0, 12)) == key->back());
    FUZZ_CHECK(auth::normalize_session_key(*key) == key);
    auto shown = auth::display_session_key(*key);
    FUZZ_CHECK(shown.size() == 16 && auth::normalize_session_key(shown) == key);
    std::string lower_case(shown);
    for (auto& c : lower_case)
      if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
    FUZZ_CHECK(auth::normalize_session_key(lower_case) == key);
  }
  return 0;
}
