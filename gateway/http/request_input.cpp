// See request_input.hpp. Boost.URL decodes paths and queries (compiled once, in
// http/url_impl.cpp); Boost.JSON parses bodies, after a first pass with its SAX parser that
// finds repeated keys, which json::parse would silently collapse to the last one.
#include "gateway/http/request_input.hpp"

#include "core/timefmt.hpp"

#include <fmt/format.h>

#include <boost/json/basic_parser_impl.hpp>
#include <boost/json/parse.hpp>
#include <boost/url/parse.hpp>
#include <boost/url/url_view.hpp>

namespace json = boost::json;
namespace urls = boost::urls;

namespace rsgate::gateway {
namespace {

constexpr unsigned kMaxDepth = 8;

// SAX handler that only remembers the keys of each open object, to find a repeated one.
struct duplicate_key_finder {
  // No limits of its own: it must read everything json::parse accepts (a finder that gave up
  // early on a long array would miss a repeated key after it).
  static constexpr std::size_t max_object_size = std::size_t(-1);
  static constexpr std::size_t max_array_size = std::size_t(-1);
  static constexpr std::size_t max_key_size = std::size_t(-1);
  static constexpr std::size_t max_string_size = std::size_t(-1);

  std::vector<std::set<std::string>> open;  // one per object being parsed (arrays push none)
  std::vector<bool> is_object;
  std::string key;
  std::string duplicate;

  bool on_document_begin(json::error_code&) { return true; }
  bool on_document_end(json::error_code&) { return true; }
  bool on_object_begin(json::error_code&) {
    open.emplace_back();
    is_object.push_back(true);
    return true;
  }
  bool on_object_end(std::size_t, json::error_code&) {
    open.pop_back();
    is_object.pop_back();
    return true;
  }
  bool on_array_begin(json::error_code&) {
    is_object.push_back(false);
    return true;
  }
  bool on_array_end(std::size_t, json::error_code&) {
    is_object.pop_back();
    return true;
  }
  bool on_key_part(json::string_view s, std::size_t, json::error_code&) {
    key.append(s.data(), s.size());
    return true;
  }
  bool on_key(json::string_view s, std::size_t, json::error_code& ec) {
    key.append(s.data(), s.size());
    bool fresh = open.back().insert(key).second;
    if (!fresh && duplicate.empty()) duplicate = key;
    key.clear();
    if (!fresh) ec = json::error::syntax;  // stop here: the caller names the key
    return fresh;
  }
  bool on_string_part(json::string_view, std::size_t, json::error_code&) { return true; }
  bool on_string(json::string_view, std::size_t, json::error_code&) { return true; }
  bool on_number_part(json::string_view, json::error_code&) { return true; }
  bool on_int64(std::int64_t, json::string_view, json::error_code&) { return true; }
  bool on_uint64(std::uint64_t, json::string_view, json::error_code&) { return true; }
  bool on_double(double, json::string_view, json::error_code&) { return true; }
  bool on_bool(bool, json::error_code&) { return true; }
  bool on_null(json::error_code&) { return true; }
  bool on_comment_part(json::string_view, json::error_code&) { return true; }
  bool on_comment(json::string_view, json::error_code&) { return true; }
};

// The first repeated key anywhere in `text`, "" when there is none, or nullopt when the
// finder could not read all of `text` (the caller refuses the body then: it cannot vouch
// for it).
std::optional<std::string> find_duplicate_key(std::string_view text) {
  json::parse_options opt;
  opt.max_depth = kMaxDepth;
  json::basic_parser<duplicate_key_finder> p(opt);
  json::error_code ec;
  p.write_some(false, text.data(), text.size(), ec);
  if (!p.handler().duplicate.empty()) return p.handler().duplicate;
  if (ec) return std::nullopt;
  return std::string();
}

std::string join_names(const std::vector<std::string>& names) {
  std::string out;
  for (auto& n : names) out += (out.empty() ? "\"" : ", \"") + n + "\"";
  return out;
}

// Names quoted in messages are client input: keep them short and printable.
std::string shown(std::string_view name) {
  std::string out;
  for (char c : name.substr(0, 64)) out.push_back(c >= 0x20 && c < 0x7f ? c : '?');
  return out;
}

}  // namespace

bool printable_utf8(std::string_view s) {
  for (std::size_t i = 0; i < s.size();) {
    auto c = static_cast<unsigned char>(s[i]);
    if (c < 0x80) {
      if (c < 0x20 || c == 0x7f) return false;
      ++i;
      continue;
    }
    std::size_t n = c >= 0xf0 ? 4 : c >= 0xe0 ? 3 : c >= 0xc2 ? 2 : 0;
    if (n == 0 || c > 0xf4 || i + n > s.size()) return false;
    std::uint32_t cp = c & (0x7f >> n);
    for (std::size_t k = 1; k < n; ++k) {
      auto cc = static_cast<unsigned char>(s[i + k]);
      if ((cc & 0xc0) != 0x80) return false;
      cp = (cp << 6) | (cc & 0x3f);
    }
    const std::uint32_t min[] = {0, 0, 0x80, 0x800, 0x10000};
    if (cp < min[n] || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff) || (cp >= 0x80 && cp <= 0x9f)) return false;
    i += n;
  }
  return true;
}

std::vector<std::string> path_segments(std::string_view target) {
  auto q = target.find('?');
  auto r = urls::parse_origin_form(target.substr(0, q));
  if (!r) throw bad_input("malformed request path");
  std::vector<std::string> out;
  for (auto s : r->segments()) {
    if (s.empty()) continue;
    if (!printable_utf8(s)) throw bad_input("the request path holds a control character or invalid UTF-8");
    out.push_back(std::string(s));
  }
  return out;
}

query_params::query_params(std::string_view target, std::initializer_list<std::string_view> allowed) {
  auto q = target.find('?');
  if (q == std::string_view::npos) return;
  auto r = urls::parse_origin_form(target);
  if (!r) throw bad_input("malformed query string");
  std::vector<std::string> unknown;
  for (auto p : r->params()) {
    std::string key(p.key);
    if (key.empty() && !p.has_value) continue;  // "?&a=1": an empty piece, not a parameter
    bool known = false;
    for (auto a : allowed) known = known || key == a;
    if (!known) {
      unknown.push_back(shown(key));
      continue;
    }
    if (!printable_utf8(p.value))
      throw bad_input(fmt::format("query parameter \"{}\" holds a control character or invalid UTF-8", key));
    if (!values_.emplace(key, std::string(p.value)).second)
      throw bad_input(fmt::format("query parameter \"{}\" is given more than once", key));
  }
  if (!unknown.empty())
    throw bad_input(fmt::format("unknown query parameter{} {}", unknown.size() > 1 ? "s" : "", join_names(unknown)));
}

std::optional<std::string> query_params::get(std::string_view name) const {
  auto it = values_.find(std::string(name));
  if (it == values_.end()) return std::nullopt;
  return it->second;
}

std::optional<std::int64_t> parse_whole(std::string_view text, std::int64_t min, std::int64_t max) {
  if (text.empty() || text.size() > 18) return std::nullopt;
  std::int64_t v = 0;
  for (char c : text) {
    if (c < '0' || c > '9') return std::nullopt;
    v = v * 10 + (c - '0');
  }
  if (v < min || v > max) return std::nullopt;
  return v;
}

std::optional<std::int64_t> query_params::whole(std::string_view name, std::int64_t min, std::int64_t max) const {
  auto v = get(name);
  if (!v) return std::nullopt;
  auto n = parse_whole(*v, min, max);
  if (!n) throw bad_input(fmt::format("\"{}\" must be a whole number from {} to {}", name, min, max));
  return n;
}

json::object body_object(const http_request& req, std::initializer_list<std::string_view> allowed) {
  json::error_code ec;
  json::parse_options opt;
  opt.max_depth = kMaxDepth;
  auto v = json::parse(req.body, ec, {}, opt);
  if (ec || !v.is_object()) throw bad_input("the body must be a JSON object");
  auto dup = find_duplicate_key(req.body);
  if (!dup) throw bad_input("the body must be a JSON object");
  if (!dup->empty()) throw bad_input(fmt::format("field \"{}\" is given more than once", shown(*dup)));
  std::vector<std::string> unknown;
  for (auto& kv : v.as_object()) {
    bool known = false;
    for (auto a : allowed) known = known || kv.key() == a;
    if (!known) unknown.push_back(shown(kv.key()));
  }
  if (!unknown.empty())
    throw bad_input(fmt::format("unknown field{} {}", unknown.size() > 1 ? "s" : "", join_names(unknown)));
  return std::move(v.as_object());
}

std::string str_field(const json::object& o, std::string_view key, bool required, std::size_t max) {
  auto* v = o.if_contains(key);
  if (!v) {
    if (required) throw bad_input(fmt::format("\"{}\" is required", key));
    return {};
  }
  if (!v->is_string() || v->as_string().size() > max)
    throw bad_input(fmt::format("\"{}\" must be a string of at most {} characters", key, max));
  return std::string(v->as_string());
}

std::optional<std::int64_t> whole_field(const json::object& o, std::string_view key, std::int64_t min,
                                        std::int64_t max) {
  auto* v = o.if_contains(key);
  if (!v) return std::nullopt;
  std::optional<std::int64_t> n;
  if (v->is_int64()) n = v->as_int64();
  if (!n || *n < min || *n > max)
    throw bad_input(fmt::format("\"{}\" must be a whole number from {} to {}", key, min, max));
  return n;
}

std::optional<std::int64_t> duration_field(const json::object& o, std::string_view key, std::int64_t max_seconds,
                                           std::string_view example, std::string_view max_text) {
  constexpr std::int64_t kSecond = 1'000'000;
  if (auto* v = o.if_contains(key); v && v->is_string()) {
    auto d = parse_duration(v->as_string());
    if (!d || *d > max_seconds * kSecond)
      throw bad_input(fmt::format("\"{}\" must be whole seconds or a duration like {}, at most {}", key, example,
                                  max_text));
    return d;
  }
  if (auto n = whole_field(o, key, 1, max_seconds)) return *n * kSecond;
  return std::nullopt;
}

bool bool_field(const json::object& o, std::string_view key, bool fallback) {
  auto* v = o.if_contains(key);
  if (!v) return fallback;
  if (!v->is_bool()) throw bad_input(fmt::format("\"{}\" must be true or false", key));
  return v->as_bool();
}

std::vector<std::string> string_list_field(const json::object& o, std::string_view key, bool required,
                                           std::size_t max_items, std::size_t max_len) {
  auto* v = o.if_contains(key);
  if (!v) {
    if (required) throw bad_input(fmt::format("\"{}\" is required", key));
    return {};
  }
  const auto rule = fmt::format("\"{}\" must be a list of 1 to {} strings of 1 to {} characters", key, max_items, max_len);
  if (!v->is_array() || v->as_array().empty() || v->as_array().size() > max_items) throw bad_input(rule);
  std::vector<std::string> out;
  for (auto& x : v->as_array()) {
    if (!x.is_string() || x.as_string().empty() || x.as_string().size() > max_len) throw bad_input(rule);
    out.emplace_back(x.as_string());
  }
  return out;
}

restriction restriction_field(const json::object& o, std::string_view key, std::size_t max_items) {
  restriction r;
  auto* v = o.if_contains(key);
  if (!v) return r;
  auto bad = [&] {
    return bad_input(fmt::format("\"{}\" must be [\"*\"] or a list of 1 to {} distinct names", key, max_items));
  };
  if (!v->is_array() || v->as_array().empty() || v->as_array().size() > max_items) throw bad();
  r.all = false;
  for (auto& x : v->as_array()) {
    if (!x.is_string() || x.as_string().empty() || x.as_string().size() > 64) throw bad();
    if (!r.items.emplace(x.as_string()).second) throw bad();
  }
  if (r.items.count("*")) {
    if (r.items.size() > 1) throw bad();
    r.all = true;
    r.items.clear();
  }
  return r;
}

}  // namespace rsgate::gateway
