// What NOTICEs change in the agent's view of its session, and the `status` object built from
// it: the same fields, in the same order, as the control socket has always answered.
#include "agent/session_view.hpp"
#include "agent/status.hpp"

#include <catch2/catch.hpp>

using rsgate::agent::apply_notice;
using rsgate::agent::channel_view;
using rsgate::agent::printable;
using rsgate::agent::session_view;
using rsgate::agent::render_status;
using rsgate::agent::status_json;

namespace {
rsgate::tunnel::notice make(std::string event, std::string actor = {}, std::string user = {}, std::string pmr = {}) {
  rsgate::tunnel::notice n;
  n.event = std::move(event);
  n.actor = std::move(actor);
  n.user = std::move(user);
  n.pmr = std::move(pmr);
  return n;
}
}  // namespace

TEST_CASE("session_view: attach, grant, revoke and transfer change owner, PMR and grants") {
  session_view v;
  v.state = "authenticated";
  apply_notice(v, make("attach", "alice", "", "TS012345678"));
  CHECK(v.state == "active");
  CHECK(v.owner == "alice");
  CHECK(v.pmr == "TS012345678");
  apply_notice(v, make("grant", "alice", "dave"));
  apply_notice(v, make("grant", "alice", "erin"));
  CHECK(v.grants == std::vector<std::string>{"dave", "erin"});
  apply_notice(v, make("revoke", "alice", "dave"));
  CHECK(v.grants == std::vector<std::string>{"erin"});
  apply_notice(v, make("transfer", "alice", "bob"));
  CHECK(v.owner == "bob");
  apply_notice(v, make("channel_open", "bob", "erin"));  // shown, but changes nothing
  CHECK(v.owner == "bob");
  CHECK(v.grants == std::vector<std::string>{"erin"});
  CHECK(v.state == "active");
}

TEST_CASE("session_view: status is one JSON object with every field, channels listed") {
  session_view v;
  v.state = "active";
  v.gateway = "gw.example:8443";
  v.session = "s1";
  v.owner = "alice";
  v.grants = {"dave"};
  std::vector<channel_view> ch{{7, "ssh", "ssh", "dave", 10, 20, false}, {8, "hmc", "https", "dave", 0, 0, true, 3}};
  CHECK(status_json(v, "m1", ch) ==
        R"({"state":"active","machine":"m1","gateway":"gw.example:8443","session":"s1","key_expires_at":"",)"
        R"("owner":"alice","pmr":"","grants":["dave"],"channels":[{"id":7,"scope":"ssh","access_type":"ssh",)"
        R"("actor":"dave","bytes_in":10,"bytes_out":20,"awaiting_approval":false},)"
        R"({"id":8,"scope":"hmc","access_type":"https","actor":"dave","bytes_in":0,"bytes_out":0,)"
        R"("awaiting_approval":true,"request":3}]})");
  // For people: a request that waits for the customer says so, with its number.
  auto shown = render_status(status_json(v, "m1", ch));
  CHECK_THAT(shown, Catch::Contains("  dave ssh to ssh\n"));
  CHECK_THAT(shown, Catch::Contains("  dave https to hmc (request 3: waiting for approve or refuse)\n"));
  CHECK(status_json(session_view{}, "m1", {}) ==
        R"({"state":"connecting","machine":"m1","gateway":"","session":"","key_expires_at":"","owner":"",)"
        R"("pmr":"","grants":[],"channels":[]})");
}

TEST_CASE("session_view: printable replaces control and non-ASCII bytes and bounds the length") {
  CHECK(printable("ok \x1b[2Jhi\n\xc3\xa9", 100) == "ok ?[2Jhi???");
  CHECK(printable("abcdef", 3) == "abc");
}
