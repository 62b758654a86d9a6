// Strict reading of what an API client sends (SPEC §4, docs/api.md §1): the request path,
// query parameters and JSON body. Everything here refuses rather than guesses: an unknown or
// repeated query parameter, an unknown or repeated JSON field, a value of the wrong type, a
// number that is not a whole number in range, malformed percent-encoding — each is a
// bad_input naming the offending field, which the service answers with 400. Nothing a client
// sends can get past these functions as an exception of another type.
//
// Plain C++ (Boost.URL and Boost.JSON, no Asio); pure functions, any thread.
#pragma once
#include <boost/json/object.hpp>
#include <cstdint>
#include <initializer_list>
#include <map>
#include <optional>
#include <set>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "gateway/http/api.hpp"

namespace rsgate::gateway {

// Client input the API refuses (400 bad_request with this message).
struct bad_input : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// Valid UTF-8 without control characters (C0, DEL, C1): what a decoded path segment or query
// value must be before it reaches a message, a lookup or the journal.
[[nodiscard]] bool printable_utf8(std::string_view s);

// The decoded path segments of a request target ("/sessions/S-1/grants?x" -> {"sessions",
// "S-1", "grants"}). Empty segments are dropped. Throws bad_input on malformed encoding.
[[nodiscard]] std::vector<std::string> path_segments(std::string_view target);

// The decoded query parameters of `target`. Throws bad_input when one is not in `allowed`,
// appears twice, or is malformed.
class query_params {
 public:
  query_params(std::string_view target, std::initializer_list<std::string_view> allowed);
  [[nodiscard]] std::optional<std::string> get(std::string_view name) const;
  // A whole decimal number (digits only, no sign, no exponent, no fraction) in [min, max].
  [[nodiscard]] std::optional<std::int64_t> whole(std::string_view name, std::int64_t min, std::int64_t max) const;
  // The parameters as given, decoded (for the journal's audit.query detail).
  [[nodiscard]] const std::map<std::string, std::string>& all() const { return values_; }

 private:
  std::map<std::string, std::string> values_;
};

// Parses `text` as a whole decimal number in [min, max] (see query_params::whole), or nullopt.
[[nodiscard]] std::optional<std::int64_t> parse_whole(std::string_view text, std::int64_t min, std::int64_t max);

// The body as a JSON object whose keys are all in `allowed`, none repeated. Throws bad_input.
[[nodiscard]] boost::json::object body_object(const http_request& req, std::initializer_list<std::string_view> allowed);

// A string field of at most `max` bytes; "" when absent and not required. Throws bad_input.
[[nodiscard]] std::string str_field(const boost::json::object& o, std::string_view key, bool required,
                                    std::size_t max = 256);
// A whole number field (a JSON integer, not 2.0 or "2") in [min, max], or nullopt when absent.
[[nodiscard]] std::optional<std::int64_t> whole_field(const boost::json::object& o, std::string_view key,
                                                      std::int64_t min, std::int64_t max);

// A lifetime field: whole seconds (a JSON integer, 1..max_seconds) or a duration string like
// "2h" (core/timefmt.hpp, at most max_seconds); nullopt when absent. Throws bad_input saying
// "…like `example`, at most `max_text`".
[[nodiscard]] std::optional<std::int64_t> duration_field(const boost::json::object& o, std::string_view key,
                                                         std::int64_t max_seconds, std::string_view example,
                                                         std::string_view max_text);
// A boolean field (JSON true or false, not 1 or "true"); `fallback` when absent.
[[nodiscard]] bool bool_field(const boost::json::object& o, std::string_view key, bool fallback);
// A list of 1..max_items strings of 1..max_len bytes each; empty when absent and not required.
[[nodiscard]] std::vector<std::string> string_list_field(const boost::json::object& o, std::string_view key,
                                                         bool required, std::size_t max_items, std::size_t max_len);

// A restricting list (a grant's scopes or access types): absent means every one; ["*"] says
// so explicitly; otherwise 1..max_items distinct strings of at most 64 bytes. An empty list is
// refused — it would otherwise read as "no restriction" (docs/api.md §5.3).
struct restriction {
  bool all = true;
  std::set<std::string> items;  // when !all
};
[[nodiscard]] restriction restriction_field(const boost::json::object& o, std::string_view key,
                                            std::size_t max_items);

}  // namespace rsgate::gateway
