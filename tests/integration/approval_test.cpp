// The customer's policy per scope (issue 9, docs/protocol.md §8.1): `deny` is not offered,
// `ask` makes every channel wait for `rsgate-agent approve N` / `refuse N` or the profile's
// approval_seconds, and each decision — approved, refused, timed out — is journaled as
// channel.approval before the channel carries a byte. Real gateway, real agent, real
// `rsgate connect`; a scripted agent for the answers a real one never sends.
#include <pwd.h>
#include <unistd.h>

#include <csignal>
#include <map>
#include <regex>
#include <thread>

#include <catch2/catch.hpp>

#include "auth/session_key.hpp"
#include "core/files.hpp"
#include "tests/integration/gateway_fixture.hpp"
#include "tests/integration/scripted_agent.hpp"
#include "tests/support/echo_server.hpp"

using namespace rsgate;
using namespace rsgate::test;
using namespace std::chrono_literals;
namespace json = boost::json;
using ft = tunnel::frame_type;

namespace {

// The customer edits the profile: `policy` lines under [policy], approval_seconds as given.
std::filesystem::path with_policy(const std::filesystem::path& profile, const std::string& policy, int approval_seconds) {
  auto text = read_file(profile);
  auto at = text.find("approval_seconds = 60\n");
  REQUIRE(at != std::string::npos);
  text.replace(at, 22, "approval_seconds = " + std::to_string(approval_seconds) + "\n");
  auto pol = text.find("[policy]\n");
  REQUIRE(pol != std::string::npos);
  text.insert(pol + 9, policy);
  std::filesystem::remove(profile);
  write_file_exclusive(profile, text, 0600);
  return profile;
}

std::string me() {
  auto* pw = ::getpwuid(::getuid());
  return pw ? pw->pw_name : "uid " + std::to_string(::getuid());
}

// The request number from the agent's line "… Request N: …".
std::uint32_t request_of(const std::string& line) {
  std::smatch m;
  REQUIRE(std::regex_search(line, m, std::regex("Request ([0-9]+): ")));
  return static_cast<std::uint32_t>(std::stoul(m[1]));
}

run_result agent_cmd(const attached& a, std::vector<std::string> args) {
  args.insert(args.begin(), agent_binary());
  args.push_back("--control");
  args.push_back(a.control);
  return run(args);
}

// The approval entries of the journal, oldest first, as (outcome, detail).
std::vector<std::pair<std::string, json::object>> approvals(gateway_fixture& f) {
  auto r = rsgate_cmd({"journal", "query", "--data", f.dir.string(), "--kind", "channel.approval", "--format", "json"});
  REQUIRE(r.exit_code == 0);
  std::vector<std::pair<std::string, json::object>> v;
  std::istringstream in(r.out);
  for (std::string l; std::getline(in, l);)
    v.emplace_back(std::string(json::parse(l).as_object()["outcome"].as_string()), detail(l));
  return v;
}

}  // namespace

TEST_CASE("an ask scope: approved, refused and timed-out channel opens, each journaled, a deny scope is not offered") {
  std::signal(SIGPIPE, SIG_IGN);
  gateway_fixture f;
  echo_server echo;
  const auto target = "127.0.0.1:" + std::to_string(echo.port());
  auto profile = with_policy(f.enroll("7801396", false, {"hmc=" + target, "hypervisor=" + target, "vios=" + target}),
                             "'hmc' = 'ask'\n'hypervisor' = 'deny'\n", 5);
  auto sess = start_and_attach(f, profile, "alice", "TS000000396");

  // The customer's choice reaches the journal with the tunnel: hypervisor not offered, hmc asks.
  auto auth = f.kinds("tunnel.auth", "ok");
  REQUIRE(auth.size() == 1);
  CHECK(json::serialize(detail(auth[0])["scopes"]) == R"(["hmc","vios"])");
  CHECK(json::serialize(detail(auth[0])["ask"]) == R"(["hmc"])");
  CHECK(detail(auth[0])["approval_seconds"].as_int64() == 5);

  // deny: the gateway refuses the scope as not offered, journaled.
  auto denied = f.api("POST", "/api/v1/sessions/" + sess.sid + "/channels", "alice",
                      json::serialize(json::object{{"scope", "hypervisor"}, {"access_type", "ssh"}}));
  CHECK(denied.status == 400);
  CHECK_THAT(std::string(denied.body["error"].as_object()["message"].as_string()),
             Catch::Contains("scope 'hypervisor' is not offered by the customer"));
  CHECK(f.kinds("channel.open", "denied").size() == 1);

  // allow (the default): no question asked.
  auto [conn, port] = connect_for(f, "alice", sess.sid, "vios", "ssh");
  int s0 = connect_local(port);
  REQUIRE(s0 >= 0);
  auto data = random_bytes(10'000);
  CHECK(round_trip(s0, data) == data);
  ::close(s0);

  // ask, approved: the customer sees who asks for what, the channel waits until approved.
  auto [hconn, hport] = connect_for(f, "alice", sess.sid, "hmc", "ssh");
  int s1 = connect_local(hport);
  REQUIRE(s1 >= 0);
  auto asked = wait_line(*sess.agent, "Request ");
  CHECK_THAT(asked, Catch::Contains(": alice (PMR TS000000396) asks to open ssh to hmc."));
  const auto n1 = request_of(asked);
  auto st = agent_cmd(sess, {"status", "--json"});
  REQUIRE(st.exit_code == 0);
  auto chans = json::parse(st.out).as_object()["channels"].as_array();
  REQUIRE(chans.size() == 1);
  CHECK(chans[0].as_object()["awaiting_approval"].as_bool());
  CHECK(approvals(f).empty());  // nothing decided, nothing journaled, no byte through
  auto ok = agent_cmd(sess, {"approve", std::to_string(n1)});
  INFO(ok.err);
  CHECK(ok.exit_code == 0);
  CHECK(ok.out == "approved request " + std::to_string(n1) + "\n");
  CHECK(round_trip(s1, data) == data);
  (void)wait_line(*sess.agent, "Request " + std::to_string(n1) + " approved by " + me());
  auto a = approvals(f);
  REQUIRE(a.size() == 1);
  CHECK(a[0].first == "ok");
  CHECK(a[0].second["decision"].as_string() == "approved");
  CHECK(a[0].second["by"].as_string() == me());
  CHECK(a[0].second["requested_by"].as_string() == "alice");
  CHECK(a[0].second["approval_seconds"].as_int64() == 5);
  // A decided request cannot be decided again; a number never printed is no request.
  auto again = agent_cmd(sess, {"refuse", std::to_string(n1)});
  CHECK(again.exit_code == 1);
  CHECK_THAT(again.err, Catch::Contains("no request " + std::to_string(n1) + " waits for a decision"));
  CHECK(agent_cmd(sess, {"approve", "999"}).exit_code == 1);
  for (auto bad : {"abc", "0", "-1", "1.5", "01"}) {
    INFO(bad);
    CHECK(agent_cmd(sess, {"approve", bad}).exit_code == 2);
  }
  ::close(s1);

  // ask, refused: the representative's connection ends, nothing reached the target.
  const auto connections_before = echo.connections();
  int s2 = connect_local(hport);
  REQUIRE(s2 >= 0);
  const auto n2 = request_of(wait_line(*sess.agent, "Request "));
  CHECK(agent_cmd(sess, {"refuse", std::to_string(n2)}).exit_code == 0);
  (void)wait_line(*sess.agent, "Request " + std::to_string(n2) + " refused by " + me());
  char c;
  CHECK(::recv(s2, &c, 1, 0) <= 0);  // closed, no byte
  ::close(s2);

  // ask, no answer: refused when approval_seconds (5) pass.
  int s3 = connect_local(hport);
  REQUIRE(s3 >= 0);
  const auto t0 = std::chrono::steady_clock::now();
  const auto n3 = request_of(wait_line(*sess.agent, "Request "));
  (void)wait_line(*sess.agent, "Request " + std::to_string(n3) + " refused: not approved within 5 s");
  const double waited = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  CHECK(waited >= 4.5);
  CHECK(waited < 15);
  CHECK(::recv(s3, &c, 1, 0) <= 0);
  ::close(s3);
  CHECK(echo.connections() == connections_before);  // neither refused request reached the target

  std::vector<std::pair<std::string, json::object>> all;
  REQUIRE(eventually([&] { return (all = approvals(f)).size() == 3; }));
  CHECK(all[1].first == "denied");
  CHECK(all[1].second["decision"].as_string() == "refused");
  CHECK(all[1].second["by"].as_string() == me());
  CHECK(all[2].first == "denied");
  CHECK(all[2].second["decision"].as_string() == "timeout");
  CHECK_FALSE(all[2].second.contains("by"));
  // Each refusal is journaled before the channel's end, which names the customer's reason.
  std::vector<std::string> closes;
  REQUIRE(eventually([&] { return (closes = f.kinds("channel.close", "ok")).size() == 4; }));
  int refused_closes = 0;
  for (auto& l : closes) {
    auto reason = std::string(detail(l)["reason"].as_string());
    if (reason.find("refused by the customer") != std::string::npos ||
        reason.find("not approved by the customer within 5 s") != std::string::npos)
      ++refused_closes;
  }
  CHECK(refused_closes == 2);
  auto seqs = rsgate_cmd({"journal", "query", "--data", f.dir.string(), "--session", sess.sid, "--format", "json"});
  REQUIRE(seqs.exit_code == 0);
  // Order: each channel's decision is journaled before its channel.close.
  std::map<std::int64_t, std::int64_t> decided_at, closed_at;  // channel -> seq
  std::istringstream in(seqs.out);
  for (std::string l; std::getline(in, l);) {
    auto o = json::parse(l).as_object();
    auto k = std::string(o["kind"].as_string());
    if (k != "channel.approval" && k != "channel.close") continue;
    auto ch = detail(l)["channel"].as_int64();
    (k == "channel.approval" ? decided_at : closed_at)[ch] = o["seq"].as_int64();
  }
  REQUIRE(decided_at.size() == 3);
  for (auto [ch, seq] : decided_at) {
    INFO("channel " << ch);
    REQUIRE(closed_at.count(ch));
    CHECK(seq < closed_at[ch]);
  }
  CHECK(rsgate_cmd({"journal", "verify", "--data", f.dir.string()}).exit_code == 0);

  for (auto* cc : {conn.get(), hconn.get()}) {
    cc->signal(SIGTERM);
    (void)cc->wait(20s);
  }
  REQUIRE(agent_cmd(sess, {"stop"}).exit_code == 0);
  CHECK(sess.agent->wait(20s) == 0);
}

TEST_CASE("an agent whose answer does not fit the scope's policy gets ERROR, and its tunnel is closed") {
  gateway_fixture f;
  struct hostile_case {
    const char* name;
    const char* scope;
    ft type;
    std::string payload;
    const char* code;
  };
  const std::vector<hostile_case> cases = {
      {"CHANNEL_ACCEPT on an ask scope without the approval", "hmc", ft::channel_accept, R"({"window":262144})",
       "bad_channel_accept"},
      {"an approval on a scope that does not ask", "vios", ft::channel_accept,
       R"({"window":262144,"approval":{"decision":"approved","by":"x"}})", "bad_channel_accept"},
      {"a refusal's decision on a scope that does not ask", "vios", ft::channel_reject,
       R"({"reason":"no","approval":{"decision":"refused","by":"x"}})", "bad_channel_reject"},
  };
  int serial = 7801397;
  for (auto& hc : cases) {
    INFO(hc.name);
    auto profile = with_policy(f.enroll(std::to_string(serial++), false, {"hmc=127.0.0.1:9", "vios=127.0.0.1:9"}),
                               "'hmc' = 'ask'\n", 30);
    wire_peer::client_options o;
    o.timeout = 10s;
    auto a = authenticate_agent(wire_peer::connect(f.tunnel, o), profile);
    auto key = auth::generate_session_key();
    REQUIRE(a.peer->send(ft::key_offer, tunnel::to_payload(tunnel::key_offer{key, 3600})));
    REQUIRE(a.peer->recv_until(ft::key_ack, 10s));
    auto att = f.api("POST", "/api/v1/sessions/attach", "alice",
                     json::serialize(json::object{{"session_key", key}, {"pmr", "TS000000397"}}));
    REQUIRE(att.status == 201);
    auto sid = std::string(att.body["id"].as_string());
    auto [conn, port] = connect_for(f, "alice", sid, hc.scope, "ssh");
    int s = connect_local(port);
    REQUIRE(s >= 0);
    auto open = a.peer->recv_until(ft::channel_open, 20s);
    REQUIRE(open);
    REQUIRE(a.peer->send(hc.type, std::span(reinterpret_cast<const std::uint8_t*>(hc.payload.data()), hc.payload.size()),
                         open->header.channel));
    auto err = a.peer->recv_until(ft::error, 10s);
    REQUIRE(err);
    std::string why;
    auto e = tunnel::parse_error(err->payload, why);
    REQUIRE(e);
    CHECK(e->code == hc.code);
    ::close(s);
    conn->signal(SIGTERM);
    (void)conn->wait(20s);
  }
  CHECK(approvals(f).empty());  // nothing the gateway refused was taken for a decision
  std::vector<std::string> errors;
  REQUIRE(eventually([&] { return (errors = f.kinds("tunnel.close", "error")).size() == cases.size(); }));
}
