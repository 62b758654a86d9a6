// See session_key.hpp.
#include "auth/session_key.hpp"

#include <sodium.h>

#include <cstdint>
#include <stdexcept>

namespace rsgate::auth {
namespace {

constexpr std::string_view kSymbols = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";
constexpr std::string_view kCheckSymbols = "0123456789ABCDEFGHJKMNPQRSTVWXYZ*~$=U";
constexpr int kDataSymbols = kSessionKeyBits / 5;  // 12

int decode_symbol(char c) {
  if (c >= 'a' && c <= 'z') c = static_cast<char>(c - 'a' + 'A');
  if (c == 'I' || c == 'L') c = '1';
  if (c == 'O') c = '0';
  auto p = kSymbols.find(c);
  return p == std::string_view::npos ? -1 : static_cast<int>(p);
}

char check_symbol(std::uint64_t value) { return kCheckSymbols[value % 37]; }

}  // namespace

std::string generate_session_key() {
  if (sodium_init() < 0) throw std::runtime_error("libsodium failed to initialise");
  std::uint64_t v = 0;
  randombytes_buf(&v, sizeof v);
  v &= (std::uint64_t{1} << kSessionKeyBits) - 1;
  std::string canonical(kDataSymbols, '0');
  std::uint64_t x = v;
  for (int i = kDataSymbols - 1; i >= 0; --i) {
    canonical[static_cast<size_t>(i)] = kSymbols[x & 31];
    x >>= 5;
  }
  canonical.push_back(check_symbol(v));
  return display_session_key(canonical);
}

std::optional<std::string> normalize_session_key(std::string_view typed) {
  if (typed.size() > 64) return std::nullopt;
  std::string canonical;
  std::uint64_t v = 0;
  for (char c : typed) {
    if (c == '-' || c == ' ') continue;
    if (static_cast<int>(canonical.size()) == kDataSymbols) {
      // The check symbol: its own alphabet, case-insensitive for the letters.
      char u = (c >= 'a' && c <= 'z') ? static_cast<char>(c - 'a' + 'A') : c;
      if (u == 'I' || u == 'L') u = '1';
      if (u == 'O') u = '0';
      if (u != check_symbol(v)) return std::nullopt;
      canonical.push_back(u);
      continue;
    }
    if (static_cast<int>(canonical.size()) > kDataSymbols) return std::nullopt;
    int s = decode_symbol(c);
    if (s < 0) return std::nullopt;
    v = v << 5 | static_cast<std::uint64_t>(s);
    canonical.push_back(kSymbols[static_cast<size_t>(s)]);
  }
  if (static_cast<int>(canonical.size()) != kDataSymbols + 1) return std::nullopt;
  return canonical;
}

std::string display_session_key(std::string_view c) {
  std::string out;
  for (size_t i = 0; i < c.size(); ++i) {
    if (i > 0 && i % 4 == 0) out.push_back('-');
    out.push_back(c[i]);
  }
  return out;
}

}  // namespace rsgate::auth
