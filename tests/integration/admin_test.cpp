// Administration through the real `rsgate` program: accounts, tokens and machine enrollment
// change state.db only after the journal recorded them; bad input is exit 2, refused actions
// exit 1; secrets are printed only where creating them is the command's purpose.
#include <boost/json/parse.hpp>

#include "agent/profile.hpp"
#include "core/files.hpp"
#include "tests/integration/common.hpp"

using namespace rsgate;
using namespace rsgate::test;

namespace {
std::vector<std::string> journal_kinds(const std::filesystem::path& dir, const std::string& kind) {
  auto r = rsgate_cmd({"journal", "query", "--data", dir.string(), "--kind", kind, "--format", "json"});
  REQUIRE(r.exit_code == 0);
  std::vector<std::string> out;
  std::istringstream in(r.out);
  std::string line;
  while (std::getline(in, line))
    out.emplace_back(boost::json::parse(line).as_object()["detail"].as_object()["action"].as_string());
  return out;
}
}  // namespace

TEST_CASE("users and tokens") {
  temp_dir t;
  auto dir = t / "d";
  init_data_dir(dir);
  auto d = dir.string();
  auto r = rsgate_cmd({"user", "add", "alice", "--role", "representative", "--password-stdin", "--data", d},
                      "a long enough password\n");
  INFO(r.err);
  CHECK(r.exit_code == 0);
  CHECK(r.out.empty());
  r = rsgate_cmd({"user", "add", "bob", "--role", "developer", "--data", d});
  CHECK(r.exit_code == 0);
  CHECK(r.out.find("one-time password for 'bob': ") != std::string::npos);
  CHECK(rsgate_cmd({"user", "add", "bob", "--role", "developer", "--data", d}).exit_code == 1);
  auto list = rsgate_cmd({"user", "list", "--format", "json", "--data", d});
  CHECK(line_count(list.out) == 3);  // admin, alice, bob
  CHECK(list.out.find("argon2") == std::string::npos);  // hashes are never listed

  auto tok = rsgate_cmd({"token", "create", "--user", "alice", "--data", d});
  REQUIRE(tok.exit_code == 0);
  auto token = tok.out.substr(0, tok.out.size() - 1);
  CHECK(token.starts_with("rsg_"));
  CHECK(line_count(tok.out) == 1);  // the token alone on stdout
  // The token is nowhere in the files; its creation is found by its keyed hash.
  CHECK(read_file(dir / "state.db").find(token) == std::string::npos);
  CHECK(read_file(dir / "journal.db").find(token) == std::string::npos);
  auto q = rsgate_cmd({"journal", "query", "--data", d, "--hash-of", "-", "--format", "json"}, token + "\n");
  CHECK(line_count(q.out) == 1);
  CHECK(q.out.find("token_create") != std::string::npos);

  CHECK(rsgate_cmd({"user", "disable", "alice", "--data", d}).exit_code == 0);
  CHECK(rsgate_cmd({"token", "create", "--user", "alice", "--data", d}).exit_code == 1);
  CHECK(rsgate_cmd({"user", "passwd", "bob", "--password-stdin", "--data", d}, "another long password\n").exit_code == 0);
  CHECK(journal_kinds(dir, "admin.user") ==
        std::vector<std::string>{"create", "add", "add", "token_create", "disable", "passwd"});

  const std::vector<std::vector<std::string>> bad = {
      {"user", "add", "eve", "--role", "boss", "--data", d},
      {"user", "add", "eve", "--data", d},
      {"user", "add", "-bad-", "--role", "developer", "--data", d},
      {"user", "add", "eve", "--role", "developer", "--password-stdin", "--data", d},  // empty stdin
      {"user", "frobnicate", "--data", d},
      {"user", "list", "--data", (t / "nowhere").string()},
      {"token", "create", "--data", d},
      {"token", "create", "--user", "bob", "--expires-in", "forever", "--data", d},
  };
  for (auto& args : bad) {
    auto b = rsgate_cmd(args);
    INFO(args[0] << " " << args[1] << ": " << b.err);
    CHECK(b.exit_code == 2);
    CHECK(line_count(b.err) == 1);
  }
}

TEST_CASE("machine enrollment writes a private profile and stores only a verifier") {
  temp_dir t;
  auto dir = t / "d";
  init_data_dir(dir, "gw-test", true);
  auto d = dir.string();
  auto profile = t / "m.toml";
  auto r = rsgate_cmd({"machine", "enroll", "--type", "9009", "--model", "42a", "--serial", "7801234",
                       "--scope", "hmc=127.0.0.1:22", "--scope", "partition:LP01=127.0.0.1:2222",
                       "--profile-out", profile.string(), "--data", d});
  INFO(r.err);
  REQUIRE(r.exit_code == 0);
  auto p = agent::load_profile(profile);  // also checks mode 0600
  CHECK(p.machine() == "9009-42A*7801234");
  CHECK(p.scopes.size() == 2);
  CHECK(p.ca_pem == read_file(dir / "ca.pem"));
  // The secret is in the profile only: not in state.db, not in the journal.
  CHECK(read_file(dir / "state.db").find(p.secret) == std::string::npos);
  CHECK(read_file(dir / "journal.db").find(p.secret) == std::string::npos);
  // Nor are the customer's host:port mappings.
  CHECK(read_file(dir / "journal.db").find("127.0.0.1:2222") == std::string::npos);

  CHECK(rsgate_cmd({"machine", "enroll", "--type", "9009", "--model", "42a", "--serial", "7801234",
                    "--profile-out", (t / "again.toml").string(), "--data", d}).exit_code == 1);
  CHECK_FALSE(std::filesystem::exists(t / "again.toml"));
  auto list = rsgate_cmd({"machine", "list", "--format", "json", "--data", d});
  CHECK(list.out.find("\"revoked\":false") != std::string::npos);
  CHECK(rsgate_cmd({"machine", "revoke", "9009-42A*7801234", "--data", d}).exit_code == 0);
  CHECK(rsgate_cmd({"machine", "revoke", "9009-42A*7801234", "--data", d}).exit_code == 1);
  CHECK(rsgate_cmd({"machine", "list", "--data", d}).out.find("revoked") != std::string::npos);
  CHECK(journal_kinds(dir, "admin.machine") == std::vector<std::string>{"enroll", "revoke"});

  const std::vector<std::vector<std::string>> bad = {
      {"machine", "enroll", "--type", "9009", "--model", "42A", "--profile-out", "x", "--data", d},
      {"machine", "enroll", "--type", "90", "--model", "42A", "--serial", "7801234", "--profile-out",
       (t / "x.toml").string(), "--data", d},
      {"machine", "enroll", "--type", "9009", "--model", "42A", "--serial", "7801235", "--scope", "hmc",
       "--profile-out", (t / "x.toml").string(), "--data", d},
      {"machine", "enroll", "--type", "9009", "--model", "42A", "--serial", "7801235", "--profile-out",
       profile.string(), "--data", d},  // exists
      {"machine", "revoke", "not-a-machine", "--data", d},
      {"machine", "revoke", "--data", d},
  };
  for (auto& args : bad) {
    auto b = rsgate_cmd(args);
    INFO(args[1] << ": " << b.err);
    CHECK(b.exit_code == 2);
    CHECK(line_count(b.err) == 1);
  }
}

TEST_CASE("rsgate connect and rsgate-agent refuse bad usage with one line and exit 2") {
  temp_dir t;
  const std::string gw = "https://127.0.0.1:1";
  const std::vector<std::string> ok = {"--token", "rsg_x", "--session", "S-1", "--scope", "hmc", "--access-type", "ssh",
                                       "--insecure"};
  auto with = [&](std::vector<std::string> extra) {
    std::vector<std::string> a = {"connect"};
    a.insert(a.end(), extra.begin(), extra.end());
    return a;
  };
  std::vector<std::vector<std::string>> cases = {
      with(ok),  // no --gateway
      with({"--gateway", "http://127.0.0.1:1", "--token", "t", "--session", "S-1", "--scope", "hmc", "--access-type",
            "ssh", "--insecure"}),
      with({"--gateway", "https://127.0.0.1:port", "--token", "t", "--session", "S-1", "--scope", "hmc",
            "--access-type", "ssh", "--insecure"}),
      with({"--gateway", gw, "--token", "t", "--session", "a/b", "--scope", "hmc", "--access-type", "ssh", "--insecure"}),
      with({"--gateway", gw, "--token", "t", "--session", "S-1", "--scope", "Bad Name", "--access-type", "ssh",
            "--insecure"}),
      with({"--gateway", gw, "--token", "t", "--session", "S-1", "--scope", "hmc", "--access-type", "rdp", "--insecure"}),
      with({"--gateway", gw, "--token", "t", "--session", "S-1", "--scope", "hmc", "--access-type", "ssh", "--listen",
            "localhost:1", "--insecure"}),
      with({"--gateway", gw, "--token", "t", "--session", "S-1", "--scope", "hmc", "--access-type", "ssh"}),  // no --ca
      with({"--gateway", gw, "--token", "t", "--session", "S-1", "--scope", "hmc", "--access-type", "ssh", "--ca",
            (t / "missing.pem").string()}),
      with({"--bogus"}),
  };
  for (auto& args : cases) {
    auto r = rsgate_cmd(args);
    std::string shown;
    for (auto& a : args) shown += a + " ";
    INFO(shown << "\n" << r.err);
    CHECK(r.exit_code == 2);
    CHECK(line_count(r.err) == 1);
  }
  const std::vector<std::vector<std::string>> agent_cases = {
      {"start"},
      {"start", "--profile", (t / "missing.toml").string()},
      {"start", "--bogus"},
      {"frobnicate"},
  };
  for (auto args : agent_cases) {
    args.insert(args.begin(), agent_binary());
    auto r = run(args);
    INFO(args[1] << ": " << r.err);
    CHECK(r.exit_code == 2);
  }
  CHECK(run({agent_binary(), "status", "--control", (t / "none.sock").string()}).exit_code == 1);
}
