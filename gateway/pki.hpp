// Development and first-install certificates: a private CA and a server certificate signed by
// it (ECDSA P-256, SHA-256), written as PEM. Production gateways may use certificates from
// their own PKI instead; the files are only paths in the configuration.
#pragma once
#include <filesystem>
#include <string>
#include <vector>

namespace rsgate::gateway {

struct issued_pair {
  std::string cert_pem;
  std::string key_pem;  // PKCS#8, unencrypted: written with mode 0600
};

[[nodiscard]] issued_pair make_ca(const std::string& common_name, int days);
// `names`: DNS names and IP addresses for subjectAltName (IPs are recognised as such).
[[nodiscard]] issued_pair make_server_cert(const issued_pair& ca, const std::string& common_name,
                                           const std::vector<std::string>& names, int days);

}  // namespace rsgate::gateway
