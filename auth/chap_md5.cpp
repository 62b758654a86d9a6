// See chap_md5.hpp.
#include "auth/chap_md5.hpp"

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include <memory>
#include <stdexcept>

namespace rsgate::auth {

md5_digest chap_md5_response(std::uint8_t identifier, std::string_view secret,
                             std::span<const std::uint8_t> challenge) {
  std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> ctx(EVP_MD_CTX_new(), EVP_MD_CTX_free);
  md5_digest out{};
  unsigned int len = 0;
  if (!ctx || EVP_DigestInit_ex(ctx.get(), EVP_md5(), nullptr) != 1 ||
      EVP_DigestUpdate(ctx.get(), &identifier, 1) != 1 ||
      EVP_DigestUpdate(ctx.get(), secret.data(), secret.size()) != 1 ||
      EVP_DigestUpdate(ctx.get(), challenge.data(), challenge.size()) != 1 ||
      EVP_DigestFinal_ex(ctx.get(), out.data(), &len) != 1 || len != out.size())
    throw std::runtime_error("MD5 is not available");
  return out;
}

bool chap_md5_verify(std::uint8_t identifier, std::string_view secret,
                     std::span<const std::uint8_t> challenge,
                     std::span<const std::uint8_t> response) {
  if (response.size() != 16) return false;
  auto expected = chap_md5_response(identifier, secret, challenge);
  return CRYPTO_memcmp(expected.data(), response.data(), expected.size()) == 0;
}

}  // namespace rsgate::auth
