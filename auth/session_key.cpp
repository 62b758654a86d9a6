// See session_key.hpp. The check used to be Crockford's mod-37 symbol, whose five extra
// symbols (* ~ $ = U) are awkward to read over the phone; the GF(32) check keeps the key in
// the 32 readable symbols and is at least as strong for the errors people make. Both the
// agent (which generates keys) and the gateway (which checks them) use this file, and keys
// live at most a day, so no key in the old form needs to be accepted.
#include "auth/session_key.hpp"

#include <sodium.h>

#include <cstdint>
#include <stdexcept>

namespace rsgate::auth {
namespace {

constexpr std::string_view kSymbols = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";
constexpr int kDataSymbols = kSessionKeyBits / 5;  // 12
constexpr unsigned kFieldPolynomial = 0x25;        // x^5 + x^2 + 1, primitive over GF(2)

// A typed symbol's value (Crockford's reading: either case, I and L as 1, O as 0), or -1.
int decode_symbol(char c) {
  if (c >= 'a' && c <= 'z') c = static_cast<char>(c - 'a' + 'A');
  if (c == 'I' || c == 'L') c = '1';
  if (c == 'O') c = '0';
  auto p = kSymbols.find(c);
  return p == std::string_view::npos ? -1 : static_cast<int>(p);
}

// Multiplication by x in GF(32).
unsigned times_x(unsigned v) {
  v <<= 1;
  return (v & 0x20) ? v ^ kFieldPolynomial : v;
}

// sum of d_i * x^(12-i) over the 12 data values (Horner: s = x * (s XOR d)).
unsigned check_value(const int (&data)[kDataSymbols]) {
  unsigned s = 0;
  for (int d : data) s = times_x(s ^ static_cast<unsigned>(d));
  return s;
}

}  // namespace

std::string generate_session_key() {
  if (sodium_init() < 0) throw std::runtime_error("libsodium failed to initialise");
  std::uint64_t v = 0;
  randombytes_buf(&v, sizeof v);
  v &= (std::uint64_t{1} << kSessionKeyBits) - 1;
  int data[kDataSymbols];
  std::string canonical(kDataSymbols, '0');
  for (int i = kDataSymbols - 1; i >= 0; --i) {
    data[i] = static_cast<int>(v & 31);
    canonical[static_cast<size_t>(i)] = kSymbols[v & 31];
    v >>= 5;
  }
  canonical.push_back(kSymbols[check_value(data)]);
  return display_session_key(canonical);
}

std::optional<char> session_key_check(std::string_view text) {
  if (text.size() != kDataSymbols) return std::nullopt;
  int data[kDataSymbols];
  for (int i = 0; i < kDataSymbols; ++i) {
    auto p = kSymbols.find(text[static_cast<size_t>(i)]);
    if (p == std::string_view::npos) return std::nullopt;
    data[i] = static_cast<int>(p);
  }
  return kSymbols[check_value(data)];
}

std::optional<std::string> normalize_session_key(std::string_view typed) {
  if (typed.size() > 64) return std::nullopt;
  int data[kDataSymbols];
  std::string canonical;
  for (char c : typed) {
    if (c == '-' || c == ' ') continue;
    if (static_cast<int>(canonical.size()) > kDataSymbols) return std::nullopt;
    int s = decode_symbol(c);
    if (s < 0) return std::nullopt;
    if (static_cast<int>(canonical.size()) < kDataSymbols) data[canonical.size()] = s;
    canonical.push_back(kSymbols[static_cast<size_t>(s)]);
  }
  if (static_cast<int>(canonical.size()) != kDataSymbols + 1) return std::nullopt;
  if (canonical.back() != kSymbols[check_value(data)]) return std::nullopt;
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
