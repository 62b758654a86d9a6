// Strict input, table-tested: unknown and repeated fields and query parameters are refused by
// name, numbers are whole or refused, restricting lists are explicit, and decoded paths and
// query values never carry control characters or invalid UTF-8 onward.
#include "gateway/http/request_input.hpp"

#include <catch2/catch.hpp>

using namespace rsgate::gateway;

namespace {
http_request body(std::string b) {
  http_request r;
  r.method = "POST";
  r.target = "/x";
  r.body = std::move(b);
  return r;
}
std::string refusal_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const bad_input& e) {
    return e.what();
  }
  return "(accepted)";
}
}  // namespace

TEST_CASE("request_input: unknown or repeated JSON fields are refused by name") {
  CHECK_NOTHROW(body_object(body(R"({"user":"dave"})"), {"user", "scopes"}));
  auto misspelled = refusal_of([] { (void)body_object(body(R"({"user":"dave","scope":["hmc"],"expires":"1h"})"),
                                                      {"user", "scopes", "expires_in"}); });
  CHECK_THAT(misspelled, Catch::Contains("unknown fields") && Catch::Contains("\"expires\"") &&
                             Catch::Contains("\"scope\""));
  CHECK_THAT(refusal_of([] { (void)body_object(body(R"({"user":"a","user":"b"})"), {"user"}); }),
             Catch::Contains("\"user\" is given more than once"));
  CHECK_THAT(refusal_of([] { (void)body_object(body(R"({"o":{"k":1,"k":2}})"), {"o"}); }),
             Catch::Contains("\"k\" is given more than once"));
  // A long array or string before the repeat must not hide it.
  std::string long_array = R"({"scopes":[)";
  for (int i = 0; i < 2000; ++i) long_array += std::string(i ? "," : "") + "\"a\"";
  long_array += R"(],"scopes":["hmc"],"user":"dave"})";
  CHECK_THAT(refusal_of([&] { (void)body_object(body(long_array), {"scopes", "user"}); }),
             Catch::Contains("\"scopes\" is given more than once"));
  std::string long_string = R"({"user":")" + std::string(70000, 'x') + R"(","user":"dave"})";
  CHECK_THAT(refusal_of([&] { (void)body_object(body(long_string), {"user"}); }),
             Catch::Contains("\"user\" is given more than once"));
  for (auto bad : {"", "[]", "1", "not json", R"({"user":"x")", "\"s\""})
    CHECK_THAT(refusal_of([&] { (void)body_object(body(bad), {"user"}); }), Catch::Contains("JSON object"));
  // A name shown back is cut and made printable.
  auto weird = refusal_of([] { (void)body_object(body("{\"a\\u0001b\":1}"), {}); });
  CHECK_THAT(weird, Catch::Contains("\"a?b\""));
}

TEST_CASE("request_input: whole numbers only, in range") {
  auto o = [](const char* text) { return body_object(body(text), {"n"}); };
  CHECK(whole_field(o(R"({"n":5})"), "n", 1, 10) == 5);
  CHECK_FALSE(whole_field(o("{}"), "n", 1, 10).has_value());
  for (auto bad : {R"({"n":2.9})", R"({"n":2.0})", R"({"n":1e2})", R"({"n":"5"})", R"({"n":true})", R"({"n":null})",
                   R"({"n":0})", R"({"n":11})", R"({"n":-1})", R"({"n":18446744073709551615})"})
    CHECK_THAT(refusal_of([&] { (void)whole_field(o(bad), "n", 1, 10); }), Catch::Contains("whole number"));
  CHECK(parse_whole("100", 1, 1000) == 100);
  for (auto bad : {"1e2", "5x", "2.9", "+5", "-1", "", " 5", "5 ", "0x10", "99999999999999999999"})
    CHECK_FALSE(parse_whole(bad, 0, 1000).has_value());
}

TEST_CASE("request_input: restricting lists are absent, [\"*\"] or explicit names, [] is refused") {
  auto o = [](const char* text) { return body_object(body(text), {"scopes"}); };
  CHECK(restriction_field(o("{}"), "scopes", 4).all);
  CHECK(restriction_field(o(R"({"scopes":["*"]})"), "scopes", 4).all);
  auto some = restriction_field(o(R"({"scopes":["hmc","bmc"]})"), "scopes", 4);
  CHECK_FALSE(some.all);
  CHECK(some.items == std::set<std::string>{"bmc", "hmc"});
  for (auto bad : {R"({"scopes":[]})", R"({"scopes":["*","hmc"]})", R"({"scopes":["hmc","hmc"]})",
                   R"({"scopes":"hmc"})", R"({"scopes":[""]})", R"({"scopes":[1]})",
                   R"({"scopes":["a","b","c","d","e"]})"})
    CHECK_THAT(refusal_of([&] { (void)restriction_field(o(bad), "scopes", 4); }), Catch::Contains("\"scopes\""));
}

TEST_CASE("request_input: query parameters are known, single and decoded, numbers whole") {
  query_params q("/journal?pmr=12345%2C677%2C000&limit=5&actor=a+b", {"pmr", "limit", "actor"});
  CHECK(q.get("pmr") == "12345,677,000");
  CHECK(q.get("actor") == "a b");
  CHECK(q.whole("limit", 1, 1000) == 5);
  CHECK_FALSE(q.get("kind").has_value());
  CHECK_THAT(refusal_of([] { query_params("/journal?sesion=S-1&x=1", {"session"}); }),
             Catch::Contains("unknown query parameters") && Catch::Contains("\"sesion\"") && Catch::Contains("\"x\""));
  CHECK_THAT(refusal_of([] { query_params("/journal?limit=1&limit=2", {"limit"}); }),
             Catch::Contains("more than once"));
  for (auto bad : {"1e2", "5x", "2.9", "-1", "0", "1001", ""}) {
    query_params lim(std::string("/j?limit=") + bad, {"limit"});
    CHECK_THAT(refusal_of([&] { (void)lim.whole("limit", 1, 1000); }), Catch::Contains("whole number"));
  }
  for (auto bad : {"/j?a=%zz", "/j?a=%01", "/j?a=%FF", "/j?a=%C2%9B", "/j?a=%7F"})
    CHECK(refusal_of([&] { query_params(bad, {"a"}); }) != "(accepted)");
  CHECK_NOTHROW(query_params("/j", {}));
  CHECK_NOTHROW(query_params("/j?", {}));
  CHECK_NOTHROW(query_params("/j?a=%C3%A9t%C3%A9", {"a"}));  // UTF-8 is fine
}

TEST_CASE("request_input: path segments are decoded and checked") {
  CHECK(path_segments("/sessions/S-1/grants?x=1") == std::vector<std::string>{"sessions", "S-1", "grants"});
  CHECK(path_segments("/pmrs/12345%2C677%2C000/sessions") == std::vector<std::string>{"pmrs", "12345,677,000", "sessions"});
  CHECK(path_segments("//a//b/") == std::vector<std::string>{"a", "b"});
  for (auto bad : {"/a/%zz", "/a/%00", "/a/%0a", "/a/%C2%9B", "/a/%FF%FE"})
    CHECK(refusal_of([&] { (void)path_segments(bad); }) != "(accepted)");
  CHECK(printable_utf8("Grüße"));
  CHECK_FALSE(printable_utf8("\xc0\xaf"));        // overlong
  CHECK_FALSE(printable_utf8("\xed\xa0\x80"));    // a surrogate
  CHECK_FALSE(printable_utf8("tab\there"));
}
