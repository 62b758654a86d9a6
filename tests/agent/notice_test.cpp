// NOTICE for the customer (issue 7, defect 24): malformed ones are refused (the caller makes
// that a protocol error), well-formed ones with an event this agent does not know are still
// shown with their fields, and `tunnel_refused` is a warning naming the other connection.
#include "agent/notice.hpp"

#include <catch2/catch.hpp>

using namespace rsgate;
using rsgate::agent::describe_notice;
using rsgate::agent::parse_notice_for_display;

namespace {
std::optional<tunnel::notice> parse(std::string_view json, std::string& why) {
  return parse_notice_for_display(std::span(reinterpret_cast<const std::uint8_t*>(json.data()), json.size()), why);
}
}  // namespace

TEST_CASE("notice: the known events read as sentences") {
  std::string why;
  auto n = parse(R"({"event":"attach","ts":"2026-11-27T03:27:12.852480Z","actor":"alice","pmr":"TS012345678"})", why);
  REQUIRE(n);
  CHECK(describe_notice(*n) == "alice attached for PMR TS012345678 and now owns the session");
  n = parse(R"({"event":"grant","ts":"2026-11-27T03:27:12.852480Z","actor":"alice","user":"dave","scope":"hmc"})", why);
  REQUIRE(n);
  CHECK(describe_notice(*n) == "alice granted dave access to hmc");
}

TEST_CASE("notice: tunnel_refused is a warning naming the refused connection") {
  std::string why;
  auto n = parse(R"({"event":"tunnel_refused","ts":"2026-11-27T03:27:12.852480Z","actor":"203.0.113.7:50412",)"
                 R"("reason":"this machine already has a live tunnel"})",
                 why);
  REQUIRE(n);
  auto text = describe_notice(*n);
  CHECK(text.starts_with("WARNING: another connection for this machine (from 203.0.113.7:50412) authenticated and "
                         "was refused: this machine already has a live tunnel"));
}

TEST_CASE("notice: an event this agent does not know is shown with its fields") {
  std::string why;
  auto n = parse(R"({"event":"frobnicate","ts":"2026-11-27T03:27:12.852480Z","actor":"carol","reason":"why not",)"
                 R"("bytes_in":7})",
                 why);
  REQUIRE(n);
  CHECK(n->event == "frobnicate");
  CHECK(describe_notice(*n) == "notice frobnicate: actor=carol, reason=why not, bytes_in=7");
  n = parse(R"({"event":"key_used","ts":"2026-11-27T03:27:12.852480Z"})", why);  // known, no sentence of its own
  REQUIRE(n);
  CHECK(describe_notice(*n) == "notice key_used");
}

TEST_CASE("notice: malformed ones are refused, whatever the event") {
  for (std::string_view bad : {
           R"({"event":"attach","ts":"2026-11-27T03:27:12.852480Z","bogus":1})",   // unknown key
           R"({"event":"frobnicate","ts":"2026-11-27T03:27:12.852480Z","bogus":1})",  // also for an unknown event
           R"({"event":"frobnicate"})",                                              // no ts
           R"({"event":"Frob nicate","ts":"2026-11-27T03:27:12.852480Z"})",          // not a plain name
           R"({"event":"frob\u001b[2J","ts":"2026-11-27T03:27:12.852480Z"})",        // a terminal escape
           R"({"event":"attach","ts":"2026-11-27T03:27:12.852480Z","actor":"a\u001b[31mb"})",
           R"({"event":"attach","ts":"2026-11-27T03:27:12.852480Z","bytes_in":-1})",
           R"({"event":7,"ts":"2026-11-27T03:27:12.852480Z"})",
           R"(["attach"])",
           R"(not json)",
       }) {
    INFO(bad);
    std::string why;
    CHECK_FALSE(parse(bad, why));
    CHECK_FALSE(why.empty());
  }
}
