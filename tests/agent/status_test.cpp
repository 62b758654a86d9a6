// `rsgate-agent status` for people, from the JSON the control socket answers.
#include "agent/status.hpp"

#include <catch2/catch.hpp>

using rsgate::agent::render_status;

TEST_CASE("status: one fact per line, from the agent's JSON state") {
  auto out = render_status(
      R"({"state":"active","machine":"9009-42A*7801234","gateway":"127.0.0.1:4433","session":"S-1",)"
      R"("key_expires_at":"2026-12-04T20:00:00Z","owner":"alice","pmr":"12345,677,000","grants":["dave"],)"
      R"("channels":[{"id":1,"scope":"hmc","access_type":"ssh","actor":"dave","bytes_in":0,"bytes_out":0}]})");
  CHECK(out ==
        "state:    active\n"
        "machine:  9009-42A*7801234\n"
        "gateway:  127.0.0.1:4433\n"
        "session:  S-1\n"
        "owner:    alice for PMR 12345,677,000\n"
        "key:      expires 2026-12-04T20:00:00Z\n"
        "grants:   dave \n"
        "channels: \n"
        "  dave ssh to hmc\n");
}

TEST_CASE("status: nobody attached, nothing granted, text that is not a JSON object passes through") {
  auto out = render_status(R"({"state":"authenticated","grants":[],"channels":[]})");
  CHECK_THAT(out, Catch::Contains("owner:    (nobody attached)\n") && Catch::Contains("key:      -\n") &&
                      Catch::Contains("grants:   none\n") && Catch::Contains("channels: none\n"));
  CHECK(render_status("not json\n") == "not json\n");
  CHECK(render_status("[1,2]") == "[1,2]");
  // Malformed members are shown as empty, never crash.
  CHECK_THAT(render_status(R"({"grants":[1],"channels":[3,{"scope":5}]})"), Catch::Contains("grants:   ? \n"));
}
