// See api.hpp.
#include "gateway/http/api.hpp"

#include <boost/json/serialize.hpp>
#include <boost/json/value.hpp>
#include <strings.h>


namespace rsgate::gateway {

std::string http_request::header(std::string_view name) const {
  for (auto& [k, v] : headers)
    if (k.size() == name.size() && ::strncasecmp(k.data(), name.data(), k.size()) == 0) return v;
  return {};
}

http_response json_error(int status, std::string_view code, std::string_view message) {
  boost::json::object err;
  err["code"] = code;
  err["message"] = message;
  boost::json::object o;
  o["error"] = std::move(err);
  http_response r;
  r.status = status;
  r.body = boost::json::serialize(o);
  return r;
}

api::reply exactly_once(api::reply r) {
  return once_or<http_response>(std::move(r),
                                json_error(500, "internal", "the gateway failed to answer this request"));
}

}  // namespace rsgate::gateway
