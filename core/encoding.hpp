// Byte/text encodings used across rsgate: lowercase hex and standard base64 (RFC 4648).
#pragma once
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace rsgate {

using bytes = std::vector<std::uint8_t>;

[[nodiscard]] std::string to_hex(std::span<const std::uint8_t> data);
// nullopt unless `text` is an even number of hex digits (either case).
[[nodiscard]] std::optional<bytes> from_hex(std::string_view text);

[[nodiscard]] std::string to_base64(std::span<const std::uint8_t> data);
// RFC 4648 §5: the URL- and file-safe alphabet, without padding (tokens, cookies).
[[nodiscard]] std::string to_base64url(std::span<const std::uint8_t> data);
[[nodiscard]] std::optional<bytes> from_base64(std::string_view text);

// RFC 3986 percent-encoding: unreserved characters (A-Z a-z 0-9 - . _ ~) stay, every other
// byte is %XX (upper-case hex). For query values and otpauth URI labels.
[[nodiscard]] std::string percent_encode(std::string_view text);

inline std::span<const std::uint8_t> as_bytes(std::string_view s) {
  return {reinterpret_cast<const std::uint8_t*>(s.data()), s.size()};
}

}  // namespace rsgate
