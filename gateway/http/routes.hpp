// The gateway's routes (SPEC §4). Today: liveness, readiness, metrics and the console's
// landing page; the session and journal endpoints join here. Thread-safe: it holds only
// references to thread-safe services.
#pragma once
#include "gateway/http/api.hpp"
#include "gateway/metrics.hpp"

namespace rsgate::journal {
class writer;
}

namespace rsgate::gateway {

class service;

class routes final : public api {
 public:
  // `sessions` may be null (health, readiness and metrics only).
  routes(journal::writer& journal, metrics& m, service* sessions = nullptr)
      : journal_(journal), metrics_(m), service_(sessions) {}
  // Answers exactly once; an exception from any handler becomes a 500 (and is logged).
  void handle(http_request req, reply done) override;

 private:
  void dispatch(const http_request& req, const reply& done);
  journal::writer& journal_;
  metrics& metrics_;
  service* service_;
};

// Headers every response carries (HSTS, no sniffing, no caching of API answers, CSP).
void add_security_headers(http_response& r);

}  // namespace rsgate::gateway
