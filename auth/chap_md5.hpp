// RFC 1994 CHAP with MD5, for legacy agents only (SPEC §2.3): response =
// MD5(identifier ‖ secret ‖ challenge). Off unless enabled for a machine; the gateway then
// keeps the secret encrypted at rest because MD5-CHAP needs it in the clear to verify.
#pragma once
#include <array>
#include <cstdint>
#include <span>
#include <string_view>

namespace rsgate::auth {

using md5_digest = std::array<std::uint8_t, 16>;

[[nodiscard]] md5_digest chap_md5_response(std::uint8_t identifier, std::string_view secret,
                                           std::span<const std::uint8_t> challenge);
// Constant-time comparison of a received response with the expected one.
[[nodiscard]] bool chap_md5_verify(std::uint8_t identifier, std::string_view secret,
                                   std::span<const std::uint8_t> challenge,
                                   std::span<const std::uint8_t> response);

}  // namespace rsgate::auth
