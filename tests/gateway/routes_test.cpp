// The HTTP routes without a network: health, readiness that follows the journal, metrics in
// Prometheus text format, JSON errors, security headers.
#include "gateway/http/routes.hpp"

#include <boost/json/parse.hpp>
#include <catch2/catch.hpp>
#include <thread>

#include "journal/journal.hpp"
#include "tests/journal/support.hpp"
#include "tests/support/fsize_limit.hpp"

using namespace rsgate;
using namespace rsgate::gateway;

namespace {
http_response call(api& a, std::string method, std::string target) {
  http_request req;
  req.method = std::move(method);
  req.target = std::move(target);
  http_response out;
  a.handle(req, [&](http_response r) { out = std::move(r); });
  return out;
}
std::string header(const http_response& r, const std::string& name) {
  for (auto& [k, v] : r.headers)
    if (k == name) return v;
  return {};
}
}  // namespace

TEST_CASE("health, readiness and metrics") {
  test::journal_fixture f;
  auto w = f.open();
  metrics m;
  routes api(*w, m);
  auto h = call(api, "GET", "/healthz");
  CHECK(h.status == 200);
  CHECK(boost::json::parse(h.body).as_object()["status"].as_string() == "ok");
  CHECK(header(h, "Strict-Transport-Security").find("max-age") != std::string::npos);
  CHECK(header(h, "X-Content-Type-Options") == "nosniff");
  CHECK(call(api, "GET", "/api/v1/healthz").status == 200);
  CHECK(call(api, "GET", "/readyz").status == 200);
  CHECK(call(api, "GET", "/readyz?verbose=1").status == 200);

  REQUIRE(w->append_sync(test::sample_entry()).ok());
  m.count_status(200);
  m.count_status(404);
  auto mt = call(api, "GET", "/metrics");
  CHECK(mt.status == 200);
  CHECK(mt.content_type.starts_with("text/plain; version=0.0.4"));
  CHECK(mt.body.find("rsgate_journal_ready 1\n") != std::string::npos);
  CHECK(mt.body.find("rsgate_journal_last_seq 1\n") != std::string::npos);
  CHECK(mt.body.find("rsgate_http_requests_total{code=\"4xx\"} 1\n") != std::string::npos);
  CHECK(mt.body.find("# TYPE rsgate_journal_appends_total counter") != std::string::npos);
}

TEST_CASE("readiness follows the journal's ability to write") {
  test::journal_fixture f;
  auto o = test::journal_fixture::quiet();
  o.probe_every = 10'000;
  auto w = f.open(o);
  metrics m;
  routes api(*w, m);
  REQUIRE(w->append_sync(test::sample_entry()).ok());
  http_response r;
  {
    test::fsize_limit full(1);
    CHECK_FALSE(w->append_sync(test::sample_entry()).ok());
    r = call(api, "GET", "/readyz");
  }
  CHECK(r.status == 503);
  auto err = boost::json::parse(r.body).as_object()["error"].as_object();
  CHECK(err["code"].as_string() == "journal_unavailable");
  CHECK(call(api, "GET", "/metrics").body.find("rsgate_journal_ready 0\n") != std::string::npos);
  f.clock.advance(50'000);
  for (int i = 0; i < 200 && !w->ready(); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  CHECK(call(api, "GET", "/readyz").status == 200);
}

TEST_CASE("unknown paths and wrong methods get JSON errors") {
  test::journal_fixture f;
  auto w = f.open();
  metrics m;
  routes api(*w, m);
  auto r = call(api, "GET", "/api/v1/nothing");
  CHECK(r.status == 404);
  CHECK(boost::json::parse(r.body).as_object()["error"].as_object()["code"].as_string() == "not_found");
  r = call(api, "POST", "/healthz");
  CHECK(r.status == 405);
  CHECK(header(r, "Allow") == "GET, HEAD");
  CHECK(call(api, "GET", "/../../etc/passwd").status == 404);
  CHECK(call(api, "GET", std::string(5000, '/')).status == 404);
}

TEST_CASE("the console's files: its page at /, the rest under /console/, with the strict policy") {
  test::journal_fixture f;
  auto w = f.open();
  metrics m;
  routes api(*w, m);
  auto page = call(api, "GET", "/");
  CHECK(page.status == 200);
  CHECK(page.content_type == "text/html; charset=utf-8");
  CHECK(page.body.find("<script type=\"module\" src=\"/console/app.js\"></script>") != std::string::npos);
  CHECK(header(page, "Content-Security-Policy").starts_with("default-src 'none'; script-src 'self'; style-src 'self';"));
  CHECK(header(page, "Content-Security-Policy").find("frame-ancestors 'none'") != std::string::npos);
  CHECK(header(page, "X-Frame-Options") == "DENY");
  auto js = call(api, "GET", "/console/app.js");
  CHECK(js.status == 200);
  CHECK(js.content_type == "text/javascript; charset=utf-8");
  CHECK(call(api, "GET", "/console/console.css").content_type == "text/css; charset=utf-8");
  CHECK(call(api, "GET", "/console/favicon.svg").content_type == "image/svg+xml");
  // Nothing but the console's own files: no folders, no other names, no index of them.
  for (auto p : {"/console/", "/console/../rsgate.toml", "/console/x/app.js", "/console/nope.js", "/index.html", "/console"})
    CHECK(call(api, "GET", p).status == 404);
  CHECK(call(api, "POST", "/").status == 405);
  // No inline script or style in the page: the policy would refuse it.
  CHECK(page.body.find("<script>") == std::string::npos);
  CHECK(page.body.find("style=") == std::string::npos);
  CHECK(page.body.find("<style") == std::string::npos);
}
