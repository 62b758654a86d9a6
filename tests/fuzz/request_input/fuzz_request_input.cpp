// Fuzz target for what API clients send (gateway/http/request_input.hpp): the request target's
// path and query and the JSON body. Input: TARGET \n BODY. Nothing may crash or throw anything
// but bad_input; what is accepted must hold the properties the service relies on: decoded path
// segments and query values are printable UTF-8, only allowed names get through, numbers are
// in range, restrictions are never an empty list.
#include "gateway/http/request_input.hpp"

#include "tests/fuzz/fuzz_support.hpp"

using namespace rsgate::gateway;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  auto text = rsgate::fuzz::as_text(data, size);
  auto nl = text.find('\n');
  std::string_view target = text.substr(0, nl);
  http_request req;
  req.method = "POST";
  req.target = std::string(target);
  req.body = nl == std::string_view::npos ? "" : std::string(text.substr(nl + 1));
  try {
    for (auto& s : path_segments(target)) FUZZ_CHECK(!s.empty() && printable_utf8(s));
  } catch (const bad_input&) {
  }
  try {
    query_params q(target, {"pmr", "limit", "state"});
    for (auto& [k, v] : q.all()) {
      FUZZ_CHECK(k == "pmr" || k == "limit" || k == "state");
      FUZZ_CHECK(printable_utf8(v));
    }
    try {
      if (auto n = q.whole("limit", 1, 1000)) FUZZ_CHECK(*n >= 1 && *n <= 1000);
    } catch (const bad_input&) {
    }
  } catch (const bad_input&) {
  }
  try {
    auto o = body_object(req, {"user", "scopes", "expires_in"});
    for (auto& kv : o) FUZZ_CHECK(kv.key() == "user" || kv.key() == "scopes" || kv.key() == "expires_in");
    try {
      (void)str_field(o, "user", false, 64);
    } catch (const bad_input&) {
    }
    try {
      if (auto n = whole_field(o, "expires_in", 1, 604800)) FUZZ_CHECK(*n >= 1 && *n <= 604800);
    } catch (const bad_input&) {
    }
    try {
      auto r = restriction_field(o, "scopes", 64);
      FUZZ_CHECK(r.all ? r.items.empty() : !r.items.empty() && r.items.size() <= 64 && !r.items.count("*"));
    } catch (const bad_input&) {
    }
  } catch (const bad_input&) {
  }
  return 0;
}
