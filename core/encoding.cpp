// See encoding.hpp.
#include "core/encoding.hpp"

#include <array>

namespace rsgate {
namespace {
constexpr char kHex[] = "0123456789abcdef";
constexpr char kB64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

int b64_value(char c) {
  if (c >= 'A' && c <= 'Z') return c - 'A';
  if (c >= 'a' && c <= 'z') return c - 'a' + 26;
  if (c >= '0' && c <= '9') return c - '0' + 52;
  if (c == '+') return 62;
  if (c == '/') return 63;
  return -1;
}
}  // namespace

std::string to_hex(std::span<const std::uint8_t> data) {
  std::string out;
  out.reserve(data.size() * 2);
  for (auto b : data) {
    out.push_back(kHex[b >> 4]);
    out.push_back(kHex[b & 0xf]);
  }
  return out;
}

std::optional<bytes> from_hex(std::string_view text) {
  if (text.size() % 2 != 0) return std::nullopt;
  bytes out(text.size() / 2);
  for (size_t i = 0; i < out.size(); ++i) {
    int hi = hex_value(text[2 * i]);
    int lo = hex_value(text[2 * i + 1]);
    if (hi < 0 || lo < 0) return std::nullopt;
    out[i] = static_cast<std::uint8_t>(hi << 4 | lo);
  }
  return out;
}

namespace {

// RFC 4648 §4 (alphabet "+/", padded) or §5 (alphabet "-_", unpadded, for URLs and tokens).
std::string encode_base64(std::span<const std::uint8_t> data, const char* alphabet, bool pad) {
  std::string out;
  out.reserve((data.size() + 2) / 3 * 4);
  size_t i = 0;
  for (; i + 3 <= data.size(); i += 3) {
    std::uint32_t v = data[i] << 16 | data[i + 1] << 8 | data[i + 2];
    out += {alphabet[v >> 18], alphabet[(v >> 12) & 63], alphabet[(v >> 6) & 63], alphabet[v & 63]};
  }
  if (data.size() - i == 1) {
    std::uint32_t v = data[i] << 16;
    out += {alphabet[v >> 18], alphabet[(v >> 12) & 63]};
    if (pad) out += "==";
  } else if (data.size() - i == 2) {
    std::uint32_t v = data[i] << 16 | data[i + 1] << 8;
    out += {alphabet[v >> 18], alphabet[(v >> 12) & 63], alphabet[(v >> 6) & 63]};
    if (pad) out += "=";
  }
  return out;
}

constexpr char kB64Url[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

}  // namespace

std::string to_base64(std::span<const std::uint8_t> data) { return encode_base64(data, kB64, true); }

std::string to_base64url(std::span<const std::uint8_t> data) { return encode_base64(data, kB64Url, false); }

std::optional<bytes> from_base64(std::string_view text) {
  if (text.size() % 4 != 0) return std::nullopt;
  bytes out;
  out.reserve(text.size() / 4 * 3);
  for (size_t i = 0; i < text.size(); i += 4) {
    std::array<int, 4> v{};
    int pad = 0;
    for (int k = 0; k < 4; ++k) {
      char c = text[i + k];
      if (c == '=') {
        // Padding only in the last quantum, only in its last two places, and only trailing.
        if (i + 4 != text.size() || k < 2) return std::nullopt;
        ++pad;
        v[k] = 0;
      } else {
        if (pad) return std::nullopt;
        v[k] = b64_value(c);
        if (v[k] < 0) return std::nullopt;
      }
    }
    std::uint32_t w = v[0] << 18 | v[1] << 12 | v[2] << 6 | v[3];
    out.push_back(static_cast<std::uint8_t>(w >> 16));
    if (pad < 2) out.push_back(static_cast<std::uint8_t>(w >> 8));
    if (pad < 1) out.push_back(static_cast<std::uint8_t>(w));
  }
  return out;
}

std::string percent_encode(std::string_view text) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : text) {
    if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '.' ||
        c == '_' || c == '~') {
      out += static_cast<char>(c);
    } else {
      out += '%';
      out += kHex[c >> 4];
      out += kHex[c & 15];
    }
  }
  return out;
}

}  // namespace rsgate
