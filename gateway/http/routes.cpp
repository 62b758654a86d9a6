// See routes.hpp.
#include "gateway/http/routes.hpp"

#include "core/embedded.hpp"
#include "gateway/service.hpp"
#include "core/log.hpp"
#include "journal/writer.hpp"

namespace rsgate::gateway {

// The console's files (gateway/console/), compiled in by cmake/embed.cmake.
extern const std::span<const embedded_file> console_files;

namespace {

std::string_view path_of(std::string_view target) {
  auto q = target.find('?');
  return q == std::string_view::npos ? target : target.substr(0, q);
}

// GET / is the console's page; GET /console/NAME its other files (no sub-folders).
const embedded_file* console_file(std::string_view path) {
  std::string_view name;
  if (path == "/") name = "index.html";
  else if (path.starts_with("/console/")) name = path.substr(9);
  if (name.empty() || name.find('/') != std::string_view::npos) return nullptr;
  for (auto& f : console_files)
    if (f.name == name) return &f;
  return nullptr;
}

std::string_view content_type_of(std::string_view name) {
  if (name.ends_with(".html")) return "text/html; charset=utf-8";
  if (name.ends_with(".css")) return "text/css; charset=utf-8";
  if (name.ends_with(".js")) return "text/javascript; charset=utf-8";
  if (name.ends_with(".svg")) return "image/svg+xml";
  return "application/octet-stream";
}

}  // namespace

void add_security_headers(http_response& r) {
  r.headers.emplace_back("Strict-Transport-Security", "max-age=31536000");
  r.headers.emplace_back("X-Content-Type-Options", "nosniff");
  r.headers.emplace_back("X-Frame-Options", "DENY");
  r.headers.emplace_back("Referrer-Policy", "no-referrer");
  r.headers.emplace_back("Cache-Control", "no-store");
  // The console is scripts and styles from its own files only: no inline script or style, no
  // eval, nothing from elsewhere; images may be data: URLs (the TOTP QR code).
  r.headers.emplace_back("Content-Security-Policy",
                         "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                         "connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'");
  r.headers.emplace_back("Cross-Origin-Opener-Policy", "same-origin");
  r.headers.emplace_back("Cross-Origin-Resource-Policy", "same-origin");
  r.headers.emplace_back("Permissions-Policy", "camera=(), microphone=(), geolocation=(), payment=(), usb=()");
}

namespace {

bool has_header(const http_response& r, std::string_view name) {
  for (auto& [k, v] : r.headers)
    if (k == name) return true;
  return false;
}

// What RFC 9110 asks of these statuses: a 401 names the scheme to authenticate with (RFC 6750:
// invalid_token when a bearer token was sent and refused), a 429 says when to try again (the
// answers that know set their own: 900 s for a login lock-out, 1 s for a busy session; else
// 60 s, the scale of the other limits).
void add_status_headers(const http_request& req, http_response& r) {
  if (r.status == 401 && !has_header(r, "WWW-Authenticate"))
    r.headers.emplace_back("WWW-Authenticate", req.header("Authorization").starts_with("Bearer ")
                                                   ? "Bearer realm=\"rsgate\", error=\"invalid_token\""
                                                   : "Bearer realm=\"rsgate\"");
  if (r.status == 429 && !has_header(r, "Retry-After")) r.headers.emplace_back("Retry-After", "60");
}

}  // namespace

void routes::handle(http_request req, reply done_in) {
  auto done = exactly_once(std::move(done_in));
  try {
    dispatch(req, done);
  } catch (const std::exception& e) {
    log::error("{} {}: {}", req.method, req.target.substr(0, 200), e.what());
    auto r = json_error(500, "internal", "the gateway failed to handle this request");
    add_security_headers(r);
    done(std::move(r));
  }
}

void routes::dispatch(const http_request& req, const reply& done) {
  auto path = path_of(req.target);
  const bool api_path = path.starts_with("/api/v1/");
  if (api_path) path.remove_prefix(7);  // "/api/v1/healthz" == "/healthz"
  if (api_path && service_ && path != "/healthz" && path != "/readyz" && path != "/metrics") {
    std::string p(path);
    service_->handle(req, p, [done, req](http_response resp) {
      add_status_headers(req, resp);
      add_security_headers(resp);
      done(std::move(resp));
    });
    return;
  }
  http_response r;
  bool is_get = req.method == "GET" || req.method == "HEAD";
  const auto* file = api_path ? nullptr : console_file(path);
  if (path == "/healthz" || path == "/readyz" || path == "/metrics" || file) {
    if (!is_get) {
      r = json_error(405, "method_not_allowed", "only GET is allowed here");
      r.headers.emplace_back("Allow", "GET, HEAD");
    } else if (path == "/healthz") {
      r.body = "{\"status\":\"ok\"}";
    } else if (path == "/readyz") {
      if (journal_.ready()) {
        r.body = "{\"ready\":true,\"journal\":\"ok\"}";
      } else {
        r = json_error(503, "journal_unavailable",
                       "not ready: the journal cannot write, so access is refused");
      }
    } else if (path == "/metrics") {
      r.content_type = "text/plain; version=0.0.4; charset=utf-8";
      r.body = metrics_.render(journal_.stats(), journal_.ready());
    } else {
      r.content_type = std::string(content_type_of(file->name));
      r.body = std::string(file->content);
    }
  } else {
    r = json_error(404, "not_found", "no such endpoint");
  }
  add_security_headers(r);
  done(std::move(r));
}

}  // namespace rsgate::gateway
