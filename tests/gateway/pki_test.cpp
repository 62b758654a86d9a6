// Generated certificates: the server certificate chains to the CA and names the hosts asked for.
#include "gateway/pki.hpp"

#include <openssl/bio.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509_vfy.h>
#include <openssl/x509v3.h>

#include <catch2/catch.hpp>

using namespace rsgate::gateway;

namespace {
X509* read_cert(const std::string& pem) {
  BIO* b = BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size()));
  X509* c = PEM_read_bio_X509(b, nullptr, nullptr, nullptr);
  BIO_free(b);
  return c;
}
}  // namespace

TEST_CASE("server certificate verifies against the CA and carries the SANs") {
  auto ca = make_ca("test CA", 30);
  auto srv = make_server_cert(ca, "localhost", {"localhost", "127.0.0.1", "::1"}, 30);
  X509* ca_cert = read_cert(ca.cert_pem);
  X509* srv_cert = read_cert(srv.cert_pem);
  REQUIRE(ca_cert);
  REQUIRE(srv_cert);
  X509_STORE* store = X509_STORE_new();
  X509_STORE_add_cert(store, ca_cert);
  X509_STORE_CTX* ctx = X509_STORE_CTX_new();
  X509_STORE_CTX_init(ctx, store, srv_cert, nullptr);
  X509_VERIFY_PARAM_set1_host(X509_STORE_CTX_get0_param(ctx), "localhost", 0);
  CHECK(X509_verify_cert(ctx) == 1);
  CHECK(X509_check_ip_asc(srv_cert, "127.0.0.1", 0) == 1);
  CHECK(X509_check_ip_asc(srv_cert, "::1", 0) == 1);
  CHECK(X509_check_host(srv_cert, "evil.example", 0, 0, nullptr) != 1);
  CHECK(X509_check_ca(ca_cert) >= 1);
  CHECK(X509_check_ca(srv_cert) == 0);

  // A certificate from another CA does not verify.
  auto other = make_ca("other", 30);
  X509_STORE* store2 = X509_STORE_new();
  X509* other_cert = read_cert(other.cert_pem);
  X509_STORE_add_cert(store2, other_cert);
  X509_STORE_CTX* ctx2 = X509_STORE_CTX_new();
  X509_STORE_CTX_init(ctx2, store2, srv_cert, nullptr);
  CHECK(X509_verify_cert(ctx2) != 1);

  X509_STORE_CTX_free(ctx);
  X509_STORE_CTX_free(ctx2);
  X509_STORE_free(store);
  X509_STORE_free(store2);
  X509_free(ca_cert);
  X509_free(srv_cert);
  X509_free(other_cert);
  CHECK(srv.key_pem.find("PRIVATE KEY") != std::string::npos);
}
