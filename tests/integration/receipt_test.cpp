// The customer's receipts (issue 9, SPEC §2.8, docs/protocol.md §4.12): when a session ends —
// by its owner (END) or by the customer (STOP) — the gateway signs a receipt from its journal
// and sends it to the agent, which stores it and prints `Receipt: <path>`. `rsgate-agent
// receipt verify` accepts it untouched and refuses it altered in any field; `rsgate journal
// verify --anchor` accepts the journal that holds the entry it names and refuses one rolled
// back to an older signed head. Real gateway, agent, `rsgate connect`, curl and sqlite3.
#include <csignal>
#include <fstream>

#include <catch2/catch.hpp>

#include "core/files.hpp"
#include "tests/integration/gateway_fixture.hpp"
#include "tests/support/echo_server.hpp"

using namespace rsgate;
using namespace rsgate::test;
using namespace std::chrono_literals;
namespace json = boost::json;

namespace {

run_result verify_receipt(const std::filesystem::path& file, const std::string& profile = "") {
  std::vector<std::string> a = {agent_binary(), "receipt", "verify", file.string()};
  if (!profile.empty()) {
    a.push_back("--profile");
    a.push_back(profile);
  }
  return run(a);
}

// The path the agent printed on its `Receipt: ` line.
std::filesystem::path receipt_path(child& agent) {
  auto l = wait_line(agent, "Receipt: ");
  return l.substr(l.find("Receipt: ") + 9);
}

json::object file_of(const std::filesystem::path& p) { return json::parse(read_file(p)).as_object(); }
json::object body_of(const std::filesystem::path& p) {
  return json::parse(file_of(p)["receipt"].as_string()).as_object();
}

// Every way of altering one value of `v` once: a string gets a character more, a number one
// more, a boolean flips, an array loses its last item (or gains one), an object has each of
// its members altered in turn.
void alterations(json::value& v, const std::function<void()>& each) {
  if (v.is_string()) {
    auto keep = v.as_string();
    v = std::string(keep) + "x";
    each();
    v = keep;
  } else if (v.is_int64()) {
    v = v.as_int64() + 1;
    each();
    v = v.as_int64() - 1;
  } else if (v.is_bool()) {
    v = !v.as_bool();
    each();
    v = !v.as_bool();
  } else if (v.is_null()) {
    v = "x";
    each();
    v = nullptr;
  } else if (v.is_array()) {
    auto& a = v.as_array();
    if (a.empty()) {
      a.emplace_back("x");
      each();
      a.clear();
    } else {
      for (auto& item : a) alterations(item, each);
      auto last = a.back();
      a.pop_back();
      each();
      a.push_back(last);
    }
  } else if (v.is_object()) {
    for (auto& kv : v.as_object()) alterations(kv.value(), each);
  }
}

std::string journal_hash_at(gateway_fixture& f, std::int64_t seq) {
  auto r = run({"sqlite3", (f.dir / "journal.db").string(), "SELECT hash FROM journal WHERE seq = " + std::to_string(seq)});
  REQUIRE(r.exit_code == 0);
  return r.out.substr(0, r.out.find('\n'));
}

std::string pubkey_of(gateway_fixture& f) {
  auto r = rsgate_cmd({"journal", "pubkey", "--data", f.dir.string()});
  REQUIRE(r.exit_code == 0);
  return r.out.substr(0, 64);
}

}  // namespace

TEST_CASE("a session ended by its owner: the agent keeps a signed receipt, altered it fails, and it anchors the journal") {
  std::signal(SIGPIPE, SIG_IGN);
  gateway_fixture f;
  echo_server echo;
  auto profile = f.enroll("7801501", false, {"hmc=127.0.0.1:" + std::to_string(echo.port())});
  // The profile pins the journal key that signs receipts.
  const auto key = pubkey_of(f);
  CHECK_THAT(read_file(profile), Catch::Contains("receipt_keys = ['" + key + "']"));

  auto sess = start_and_attach(f, profile, "alice", "TS000000501");
  REQUIRE(f.api("POST", "/api/v1/sessions/" + sess.sid + "/grants", "alice",
                R"({"user":"dave","scopes":["hmc"],"access_types":["ssh"]})").status == 201);
  REQUIRE(f.api("DELETE", "/api/v1/sessions/" + sess.sid + "/grants/G1", "alice").status == 200);
  CHECK(channel_round_trip(f, "alice", sess.sid, "hmc", 10'000));
  REQUIRE(eventually([&] { return f.kinds("channel.close", "ok").size() == 1; }));
  // The journal as it stands before the end: what a rollback would restore.
  const auto older = f.t / "older.db";
  REQUIRE(run({"sqlite3", (f.dir / "journal.db").string(), ".backup " + older.string()}).exit_code == 0);

  REQUIRE(f.api("DELETE", "/api/v1/sessions/" + sess.sid, "alice").status == 200);
  (void)wait_line(*sess.agent, "Session ended: ended by its owner, alice");
  const auto file = receipt_path(*sess.agent);
  (void)wait_line(*sess.agent, "Receipt verified with the gateway key");
  CHECK(sess.agent->wait(30s) == 0);
  CHECK(file.parent_path() == std::filesystem::absolute(profile).parent_path() / "receipts");
  CHECK((std::filesystem::status(file).permissions() & std::filesystem::perms::all) ==
        (std::filesystem::perms::owner_read | std::filesystem::perms::owner_write));

  // What it says comes from the journal.
  auto body = body_of(file);
  CHECK(body["format"].as_string() == "rsgate-receipt/1");
  CHECK(body["gateway"].as_string() == "gw-flow");
  CHECK(body["session"].as_string() == sess.sid);
  CHECK(body["machine"].as_string() == "9009-42A*7801501");
  CHECK(json::serialize(body["pmrs"]) == R"(["TS000000501"])");
  CHECK(json::serialize(body["scopes"]) == R"(["hmc"])");
  CHECK(body["ended_by"].as_string() == "alice");
  CHECK(body["end_reason"].as_string() == "owner");
  auto& owners = body["owners"].as_array();
  REQUIRE(owners.size() == 1);
  CHECK(owners[0].as_object().at("user").as_string() == "alice");
  auto& grants = body["grants"].as_array();
  REQUIRE(grants.size() == 1);
  CHECK(grants[0].as_object().at("user").as_string() == "dave");
  CHECK(json::serialize(grants[0].as_object().at("access_types")) == R"(["ssh"])");
  CHECK(grants[0].as_object().at("revoked_by").as_string() == "alice");
  auto& channels = body["channels"].as_array();
  REQUIRE(channels.size() == 1);
  auto close = detail(f.kinds("channel.close", "ok").at(0));
  CHECK(channels[0].as_object().at("bytes_to_agent") == close["bytes_to_agent"]);
  CHECK(channels[0].as_object().at("bytes_to_agent").as_int64() == 10'000);
  CHECK(channels[0].as_object().at("bytes_from_agent").as_int64() == 10'000);
  CHECK(channels[0].as_object().at("access_type").as_string() == "ssh");
  CHECK(channels[0].as_object().at("user").as_string() == "alice");
  CHECK_FALSE(body["truncated"].as_bool());
  // The anchor: a durable entry at or after the session's end, with its hash.
  const auto seq = body["journal"].as_object()["seq"].as_int64();
  const auto end_seq = json::parse(f.kinds("session.end", "ok").at(0)).as_object()["seq"].as_int64();
  CHECK(seq >= end_seq);
  CHECK(body["journal"].as_object()["hash"].as_string() == journal_hash_at(f, seq));

  // Untouched, it verifies, with the profile it names or the one given.
  auto ok = verify_receipt(file);
  INFO(ok.err);
  CHECK(ok.exit_code == 0);
  CHECK_THAT(ok.out, Catch::StartsWith("valid: session " + sess.sid + " of 9009-42A*7801501 on gateway gw-flow"));
  CHECK_THAT(ok.out, Catch::Contains("PMR TS000000501; owners alice; 1 grant(s), 1 channel(s)"));
  CHECK(verify_receipt(file, profile.string()).exit_code == 0);

  // Altered in any field of the signed body, in the signature or in the key id: not valid.
  auto original = file_of(file);
  json::value b = body;
  int altered = 0;
  alterations(b, [&] {
    auto copy = original;
    copy["receipt"] = json::serialize(b);
    auto bad = f.t / ("altered-" + std::to_string(++altered) + ".json");
    std::ofstream(bad) << json::serialize(copy);
    auto r = verify_receipt(bad);
    INFO(json::serialize(b));
    CHECK(r.exit_code == 1);
    CHECK_THAT(r.err, Catch::Contains("is NOT valid: its signature does not verify"));
  });
  CHECK(altered > 40);
  for (std::string field : {"signature", "key_id"}) {
    auto copy = original;
    auto s = std::string(copy[field].as_string());
    s[5] = s[5] == '0' ? '1' : '0';
    copy[field] = s;
    auto bad = f.t / ("altered-" + field + ".json");
    std::ofstream(bad) << json::serialize(copy);
    INFO(field);
    CHECK(verify_receipt(bad).exit_code == 1);
  }
  // Another vendor's key pinned: not valid either.
  auto foreign = read_file(profile);
  auto at = foreign.find(key);
  foreign.replace(at, 64, std::string(64, 'a'));
  auto foreign_profile = f.t / "foreign.toml";
  write_file_exclusive(foreign_profile, foreign, 0600);
  CHECK(verify_receipt(file, foreign_profile.string()).exit_code == 1);

  // The journal anchors: the gateway's own journal holds the entry; one rolled back to the older
  // signed head still verifies on its own, and fails with the receipt, at the seq it names.
  const auto pub = (f.dir / "keys" / "journal-signing.pub").string();
  auto anchored = rsgate_cmd({"journal", "verify", "--data", f.dir.string(), "--pubkey", pub, "--anchor", file.string()});
  INFO(anchored.out << anchored.err);
  CHECK(anchored.exit_code == 0);
  CHECK_THAT(anchored.out, Catch::Contains("1 receipt anchor(s) hold"));
  CHECK(rsgate_cmd({"journal", "verify", "--db", older.string(), "--pubkey", pub}).exit_code == 0);
  auto rolled = rsgate_cmd({"journal", "verify", "--db", older.string(), "--pubkey", pub, "--anchor", file.string()});
  CHECK(rolled.exit_code == 1);
  CHECK_THAT(rolled.out, Catch::Contains("FAILED at seq " + std::to_string(seq) + ": entry missing: receipt"));
  // A receipt that is not one, or not signed by the key given: a usage error, not a verdict.
  CHECK(rsgate_cmd({"journal", "verify", "--data", f.dir.string(), "--anchor", (f.t / "altered-1.json").string(),
                    "--pubkey", pub}).exit_code == 2);
  CHECK(rsgate_cmd({"journal", "verify", "--data", f.dir.string(), "--anchor", profile.string()}).exit_code == 2);
}

TEST_CASE("the customer stops: the receipt follows STOP, into the profile's receipts_dir, a pair's key is pinned too") {
  std::signal(SIGPIPE, SIG_IGN);
  temp_dir keys;
  const std::string peer_key = "0f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c4b5a69788796a5b4c3d2e1f0";
  auto secret = keys / "peer.secret";
  write_file_exclusive(secret, std::string(40, 's') + "\n", 0600);
  gateway_fixture f(1, "", nullptr,
                    "\n[peer]\nsecret_file = \"" + secret.string() + "\"\nreceipt_key = \"" + peer_key + "\"\n");
  auto profile = f.enroll("7801502");
  CHECK_THAT(read_file(profile), Catch::Contains("receipt_keys = ['" + pubkey_of(f) + "', '" + peer_key + "']"));
  // The customer keeps receipts elsewhere.
  auto text = read_file(profile);
  auto at = text.find("approval_seconds = 60\n");
  REQUIRE(at != std::string::npos);
  const auto dir = keys / "kept" / "receipts";
  text.insert(at + 22, "receipts_dir = \"" + dir.string() + "\"\n");
  std::filesystem::remove(profile);
  write_file_exclusive(profile, text, 0600);

  auto sess = start_and_attach(f, profile, "bob", "12345,677,000");
  auto stop = run({agent_binary(), "stop", "--control", sess.control});
  CHECK(stop.exit_code == 0);
  const auto file = receipt_path(*sess.agent);
  CHECK(file.parent_path() == dir);
  CHECK(sess.agent->wait(30s) == 0);
  auto body = body_of(file);
  CHECK(body["ended_by"].as_string() == "customer");
  CHECK(body["end_reason"].as_string() == "customer");
  CHECK(json::serialize(body["pmrs"]) == R"(["12345,677,000"])");
  CHECK(verify_receipt(file).exit_code == 0);
  // The tunnel closed after the receipt: its close is journaled as the customer's stop.
  REQUIRE(eventually([&] { return f.kinds("tunnel.close", "ok").size() == 1; }));
  CHECK(detail(f.kinds("tunnel.close", "ok").at(0))["reason"].as_string() == "stopped by the customer");

  // A profile that pins no key keeps nothing verifiable: verify says so (exit 1), and a file
  // that is not a receipt is not valid either.
  auto unpinned = read_file(profile);
  auto k = unpinned.find("receipt_keys = [");
  unpinned.replace(k, unpinned.find('\n', k) - k, "receipt_keys = []");
  auto unpinned_profile = keys / "unpinned.toml";
  write_file_exclusive(unpinned_profile, unpinned, 0600);
  auto r = verify_receipt(file, unpinned_profile.string());
  CHECK(r.exit_code == 1);
  CHECK_THAT(r.err, Catch::Contains("the profile pins no gateway key"));
  CHECK(verify_receipt(profile, profile.string()).exit_code == 1);
  CHECK(verify_receipt(keys / "missing.json", profile.string()).exit_code == 2);
}

TEST_CASE("a session that ends while its agent is away is owed its receipt: the next agent gets it once") {
  gateway_fixture f(1, "grace = 3");
  auto profile = f.enroll("7801503");
  auto first = start_and_attach(f, profile, "alice", "TS000000503");
  REQUIRE(f.api("POST", "/api/v1/sessions/" + first.sid + "/grants", "alice", R"({"user":"dave"})").status == 201);
  // The agent dies; nobody comes back within the grace: the session ends with no tunnel to
  // carry its receipt.
  first.agent->signal(SIGKILL);
  (void)first.agent->wait(20s);
  REQUIRE(eventually([&] { return f.kinds("session.end", "ok").size() == 1; }, 30s));
  const auto delivered = [&] {
    auto r = run({"sqlite3", (f.dir / "state.db").string(), "SELECT session_id FROM receipts_delivered ORDER BY session_id"});
    return r.out;
  };
  CHECK(delivered().empty());

  // The machine's next agent is sent it after SUCCESS, keeps it and acknowledges it.
  auto second = std::make_unique<child>(std::vector<std::string>{agent_binary(), "start", "--profile", profile.string(),
                                                                 "--control", (f.t / "b.sock").string()},
                                        f.t / "agent2.err");
  // The owed receipt and the new session's key come in either order.
  std::map<std::string, std::string> seen;
  for (auto until = std::chrono::steady_clock::now() + kWait; seen.size() < 3 && std::chrono::steady_clock::now() < until;) {
    auto l = second->read_line(5s);
    if (!l) continue;
    for (auto needle : {"which ended while this agent was away", "Receipt: ", "Session key: "})
      if (l->find(needle) != std::string::npos) seen[needle] = *l;
  }
  REQUIRE(seen.size() == 3);
  CHECK_THAT(seen["which ended while this agent was away"], Catch::Contains("receipt of session " + first.sid));
  const std::filesystem::path file = seen["Receipt: "].substr(seen["Receipt: "].find("Receipt: ") + 9);
  CHECK(file.filename().string().starts_with(first.sid + "-"));
  auto body = body_of(file);
  CHECK(body["session"].as_string() == first.sid);
  CHECK(body["ended_by"].as_string() == "gateway");
  CHECK(body["end_reason"].as_string() == "tunnel lost");
  CHECK(body["grants"].as_array().size() == 1);
  CHECK(verify_receipt(file).exit_code == 0);
  REQUIRE(eventually([&] { return delivered() == first.sid + "\n"; }));

  // Its own session's receipt after the customer's STOP is acknowledged too.
  REQUIRE(run({agent_binary(), "stop", "--control", (f.t / "b.sock").string()}).exit_code == 0);
  const auto own = receipt_path(*second);
  CHECK(second->wait(30s) == 0);
  const std::string second_sid = body_of(own)["session"].as_string().c_str();
  CHECK(second_sid != first.sid);
  std::vector<std::string> both = {first.sid, second_sid};
  std::sort(both.begin(), both.end());
  REQUIRE(eventually([&] { return delivered() == both[0] + "\n" + both[1] + "\n"; }));
  // The ACK ended the gateway's wait: the tunnel closed as the customer's stop.
  REQUIRE(eventually([&] { return f.kinds("tunnel.close", "ok").size() == 2; }));
  CHECK(detail(f.kinds("tunnel.close", "ok").at(1))["reason"].as_string() == "stopped by the customer");

  // A third agent is owed nothing.
  auto third = std::make_unique<child>(std::vector<std::string>{agent_binary(), "start", "--profile", profile.string(),
                                                                "--control", (f.t / "c.sock").string()},
                                       f.t / "agent3.err");
  (void)wait_line(*third, "Session key: ");
  CHECK_FALSE(third->wait_for("Receipt: ", 3s).has_value());
  REQUIRE(run({agent_binary(), "stop", "--control", (f.t / "c.sock").string()}).exit_code == 0);
  CHECK(third->wait(30s) == 0);
  auto v = rsgate_cmd({"journal", "verify", "--data", f.dir.string(), "--pubkey", (f.dir / "keys/journal-signing.pub").string()});
  INFO(v.out << v.err);
  CHECK(v.exit_code == 0);
}
