// Administration through the real `rsgate` program: accounts, tokens and machine enrollment
// change state.db only after the journal recorded them; bad input is exit 2, refused actions
// exit 1; secrets are printed only where creating them is the command's purpose.
#include <pwd.h>
#include <unistd.h>

#include <boost/json/parse.hpp>
#include <fstream>

#include "protocol/profile.hpp"
#include "core/files.hpp"
#include "tests/integration/common.hpp"

using namespace rsgate;
using namespace rsgate::test;

namespace {
// One journal entry of an administration command, as `rsgate journal query` shows it.
struct admin_entry {
  std::string action, outcome, subject, source, machine, reason;
};

std::vector<admin_entry> admin_entries(const std::filesystem::path& dir, const std::string& kind) {
  auto r = rsgate_cmd({"journal", "query", "--data", dir.string(), "--kind", kind, "--format", "json"});
  REQUIRE(r.exit_code == 0);
  std::vector<admin_entry> out;
  std::istringstream in(r.out);
  std::string line;
  while (std::getline(in, line)) {
    auto o = boost::json::parse(line).as_object();
    auto& d = o["detail"].as_object();
    admin_entry e{std::string(d["action"].as_string()), std::string(o["outcome"].as_string()),
                  std::string(o["subject"].as_string()), std::string(o["source"].as_string()),
                  std::string(o["machine"].as_string()), ""};
    if (auto* why = d.if_contains("reason")) e.reason = std::string(why->as_string());
    out.push_back(std::move(e));
  }
  return out;
}

// "action:outcome" of every entry of `kind`, in order.
std::vector<std::string> journal_kinds(const std::filesystem::path& dir, const std::string& kind) {
  std::vector<std::string> out;
  for (auto& e : admin_entries(dir, kind)) out.push_back(e.action + ":" + e.outcome);
  return out;
}

std::size_t journal_size(const std::filesystem::path& dir) {
  auto r = rsgate_cmd({"journal", "query", "--data", dir.string(), "--format", "json"});
  REQUIRE(r.exit_code == 0);
  return line_count(r.out);
}

std::string self_user() { return ::getpwuid(::geteuid())->pw_name; }
std::string host_name() {
  char h[256] = {};
  ::gethostname(h, sizeof h - 1);
  return h;
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
  // No password printed; a representative's TOTP enrolment (account_test.cpp has the rest).
  CHECK(r.out.find("password") == std::string::npos);
  CHECK(r.out.find("\notpauth://totp/gw-test:alice?secret=") != std::string::npos);
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
  // The refusals are journaled too, between the changes (defect 9).
  CHECK(journal_kinds(dir, "admin.user") ==
        std::vector<std::string>{"create:ok", "add:ok", "add:ok", "add:denied", "token_create:ok",
                                 "disable:ok", "token_create:denied", "passwd:ok"});
  const auto before_bad = journal_size(dir);

  const std::vector<std::vector<std::string>> bad = {
      {"user", "add", "eve", "--role", "boss", "--data", d},
      {"user", "add", "eve", "--data", d},
      {"user", "add", "-bad-", "--role", "developer", "--data", d},  // an unknown option
      {"user", "add", "bad!name", "--role", "developer", "--data", d},
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
  // Bad values are journaled as `error` (each with its closing checkpoint); a malformed
  // command line (a missing flag, an unknown subcommand) or an unprepared directory is not.
  CHECK(journal_size(dir) == before_bad + 2 * 4);
  auto all = admin_entries(dir, "admin.user");
  std::vector<std::string> tail;
  for (auto i = all.size() - 4; i < all.size(); ++i) tail.push_back(all[i].action + ":" + all[i].outcome + ":" + all[i].subject);
  CHECK(tail == std::vector<std::string>{"add:error:eve", "add:error:bad!name", "add:error:eve", "token_create:error:bob"});
  CHECK(all.back().reason.find("--expires-in") != std::string::npos);
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
  CHECK(journal_kinds(dir, "admin.machine") ==
        std::vector<std::string>{"enroll:ok", "enroll:denied", "revoke:ok", "revoke:denied"});
  const auto before_bad = journal_size(dir);

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
  // All but the first (no --serial) and the last (no MACHINE) got as far as the journal.
  CHECK(journal_size(dir) == before_bad + 2 * 4);
  CHECK(journal_kinds(dir, "admin.machine") ==
        std::vector<std::string>{"enroll:ok", "enroll:denied", "revoke:ok", "revoke:denied", "enroll:error",
                                 "enroll:error", "enroll:error", "revoke:error"});
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
      with({"--gateway", "https://127.0.0.1:99999", "--token", "t", "--session", "S-1", "--scope", "hmc",
            "--access-type", "ssh", "--insecure"}),
      with({"--gateway", "https://user@127.0.0.1:8443", "--token", "t", "--session", "S-1", "--scope", "hmc",
            "--access-type", "ssh", "--insecure"}),
      with({"--gateway", "https://127.0.0.1:8443/api", "--token", "t", "--session", "S-1", "--scope", "hmc",
            "--access-type", "ssh", "--insecure"}),
      with({"--gateway", "https://127.0.0.1:8443?x=1", "--token", "t", "--session", "S-1", "--scope", "hmc",
            "--access-type", "ssh", "--insecure"}),
      with({"--gateway", "https://:8443", "--token", "t", "--session", "S-1", "--scope", "hmc",
            "--access-type", "ssh", "--insecure"}),
      with({"--gateway", "https://[::1:8443", "--token", "t", "--session", "S-1", "--scope", "hmc",
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

TEST_CASE("every refused administration command is journaled with its reason") {
  temp_dir t;
  auto dir = t / "d";
  init_data_dir(dir, "gw-test", true);
  auto d = dir.string();
  auto pw = std::string("a long enough password\n");
  REQUIRE(rsgate_cmd({"user", "add", "alice", "--role", "representative", "--password-stdin", "--data", d}, pw).exit_code == 0);
  REQUIRE(rsgate_cmd({"user", "add", "bob", "--role", "developer", "--password-stdin", "--data", d}, pw).exit_code == 0);
  REQUIRE(rsgate_cmd({"user", "disable", "bob", "--data", d}).exit_code == 0);
  REQUIRE(rsgate_cmd({"machine", "enroll", "--type", "9009", "--model", "42A", "--serial", "7801234",
                      "--profile-out", (t / "m.toml").string(), "--data", d}).exit_code == 0);
  struct refusal {
    std::vector<std::string> args;
    std::string input;
    int exit_code;
    std::string kind, action, outcome, subject, machine, reason;
  };
  const std::vector<refusal> cases = {
      {{"user", "add", "alice", "--role", "developer"}, "", 1, "admin.user", "add", "denied", "alice", "", "exists already"},
      {{"user", "disable", "nobody"}, "", 1, "admin.user", "disable", "denied", "nobody", "", "no user 'nobody'"},
      {{"user", "passwd", "nobody", "--password-stdin"}, pw, 1, "admin.user", "passwd", "denied", "nobody", "", "no user"},
      {{"user", "passwd", "alice", "--password-stdin"}, "short\n", 2, "admin.user", "passwd", "error", "alice", "", "at least 12"},
      {{"user", "add", "carol", "--role", "superuser"}, "", 2, "admin.user", "add", "error", "carol", "", "invalid --role"},
      {{"user", "add", "ev\x1b[2Jil", "--role", "developer"}, "", 2, "admin.user", "add", "error", "ev\\x1b[2Jil", "", "invalid name"},
      {{"token", "create", "--user", "bob"}, "", 1, "admin.user", "token_create", "denied", "bob", "", "is disabled"},
      {{"token", "create", "--user", "nobody"}, "", 1, "admin.user", "token_create", "denied", "nobody", "", "no user"},
      {{"machine", "enroll", "--type", "9009", "--model", "42a", "--serial", "7801234", "--profile-out",
        (t / "again.toml").string()}, "", 1, "admin.machine", "enroll", "denied", "", "9009-42A*7801234", "enrolled already"},
      {{"machine", "enroll", "--type", "9009", "--model", "42A", "--serial", "7801235", "--gateway", "no-port",
        "--profile-out", (t / "x.toml").string()}, "", 2, "admin.machine", "enroll", "error", "", "9009-42A*7801235", "invalid --gateway"},
      {{"machine", "revoke", "9009-42A*7809999"}, "", 1, "admin.machine", "revoke", "denied", "", "9009-42A*7809999", "not enrolled"},
  };
  for (auto c : cases) {
    c.args.push_back("--data");
    c.args.push_back(d);
    auto r = rsgate_cmd(c.args, c.input);
    INFO(c.args[0] << " " << c.args[1] << " " << c.args[2] << ": " << r.err);
    CHECK(r.exit_code == c.exit_code);
    CHECK(line_count(r.err) == 1);
    CHECK(r.err.find('\x1b') == std::string::npos);  // a refused name is shown escaped
    auto entries = admin_entries(dir, c.kind);
    REQUIRE_FALSE(entries.empty());
    auto& e = entries.back();
    CHECK(e.action == c.action);
    CHECK(e.outcome == c.outcome);
    CHECK(e.subject == c.subject);
    CHECK(e.machine == c.machine);
    CHECK(e.reason.find(c.reason) != std::string::npos);
    CHECK(e.source.starts_with("cli:"));
  }
  CHECK_FALSE(std::filesystem::exists(t / "again.toml"));
  CHECK_FALSE(std::filesystem::exists(t / "x.toml"));
  // Nothing changed: bob is still disabled, no carol, alice kept her password.
  auto list = rsgate_cmd({"user", "list", "--format", "json", "--data", d});
  CHECK(line_count(list.out) == 3);
  auto v = rsgate_cmd({"journal", "verify", "--data", d, "--pubkey", (dir / "keys/journal-signing.pub").string()});
  CHECK(v.exit_code == 0);
}

TEST_CASE("administration entries record where the command came from and whom it concerned") {
  temp_dir t;
  auto dir = t / "d";
  init_data_dir(dir, "gw-test", true);
  auto d = dir.string();
  // Built by appending: GCC 12 warns (-Wrestrict) on "literal" + std::string chains.
  std::string local = "cli:";
  local += self_user();
  std::string at_host = "@";
  at_host += host_name();
  at_host += ':';
  const std::string here = at_host + "none";
  // rsgate init's own entry: the first administrator is its subject.
  auto created = admin_entries(dir, "admin.user");
  REQUIRE(created.size() == 1);
  CHECK(created[0].subject == "admin");
  CHECK(created[0].source.starts_with(local));

  REQUIRE(run({"env", "-u", "SUDO_USER", rsgate_binary(), "user", "add", "dave", "--role", "developer",
               "--password-stdin", "--data", d}, "a long enough password\n").exit_code == 0);
  auto e = admin_entries(dir, "admin.user").back();
  CHECK(e.subject == "dave");
  CHECK(e.source.starts_with(local));
  CHECK(e.source.ends_with(here));  // no terminal on standard input: "none"

  // Behind sudo, the person who ran it is recorded next to the effective account; whatever
  // SUDO_USER holds cannot break the field's form.
  REQUIRE(run({"env", "SUDO_USER=carol", rsgate_binary(), "token", "create", "--user", "dave", "--data", d}).exit_code == 0);
  e = admin_entries(dir, "admin.user").back();
  CHECK(e.action == "token_create");
  CHECK(e.subject == "dave");
  CHECK(e.source == local + "/carol" + here);
  REQUIRE(run({"env", "SUDO_USER=x\x1b:@/y z", rsgate_binary(), "user", "passwd", "dave", "--data", d}).exit_code == 0);
  e = admin_entries(dir, "admin.user").back();
  CHECK(e.source == local + "/x????y?z" + here);

  // From a terminal: its device (script(1) gives the command a pseudo-terminal).
  std::string command = "'";
  command += rsgate_binary();
  command += "' user disable dave --data '";
  command += d;
  command += "'";
  auto in_tty = run({"script", "-qec", command, "/dev/null"});
  INFO(in_tty.out << in_tty.err);
  REQUIRE(in_tty.exit_code == 0);
  e = admin_entries(dir, "admin.user").back();
  CHECK(e.action == "disable");
  CHECK(e.source.find(at_host + "/dev/pts/") != std::string::npos);

  // A machine's entries name it in `machine`; subject stays for accounts.
  REQUIRE(rsgate_cmd({"machine", "enroll", "--type", "9009", "--model", "42A", "--serial", "7801234", "--gateway",
                      "127.0.0.1:4433", "--profile-out", (t / "m.toml").string(), "--data", d}).exit_code == 0);
  auto m = admin_entries(dir, "admin.machine").back();
  CHECK(m.machine == "9009-42A*7801234");
  CHECK(m.subject.empty());
  CHECK(m.source.starts_with(local));
  // The subject has its own filter.
  auto q = rsgate_cmd({"journal", "query", "--data", d, "--subject", "dave", "--format", "json"});
  CHECK(line_count(q.out) == 4);
}

namespace {
std::string replace_in(std::string text, const std::string& from, const std::string& to) {
  auto p = text.find(from);
  REQUIRE(p != std::string::npos);
  return text.replace(p, from.size(), to);
}
std::string primary_of(const std::filesystem::path& profile) { return agent::load_profile(profile).primary; }
}  // namespace

TEST_CASE("machine enroll writes the configuration's tunnel address into the profile") {
  temp_dir t;
  auto dir = t / "d";
  init_data_dir(dir, "gw-test", true);
  const auto cfg = read_file(dir / "rsgate.toml");
  auto enroll = [&](const std::string& serial, std::vector<std::string> extra) {
    std::vector<std::string> a = {"machine", "enroll", "--type", "9009", "--model", "42A", "--serial", serial,
                                  "--profile-out", (t / (serial + ".toml")).string()};
    a.insert(a.end(), extra.begin(), extra.end());
    return rsgate_cmd(a);
  };
  // DATA/rsgate.toml, the configuration `rsgate init` wrote, is read by default.
  std::ofstream(dir / "rsgate.toml") << replace_in(cfg, "listen = \"127.0.0.1:4433\"", "listen = \"127.0.0.1:5544\"");
  auto r = enroll("0000001", {"--data", dir.string()});
  INFO(r.err);
  REQUIRE(r.exit_code == 0);
  CHECK(primary_of(t / "0000001.toml") == "127.0.0.1:5544");
  // --config FILE names it, and its gateway.data is the data directory (no --data needed).
  std::ofstream(t / "other.toml") << replace_in(cfg, "listen = \"127.0.0.1:4433\"", "listen = \"[::1]:6655\"");
  r = enroll("0000002", {"--config", (t / "other.toml").string()});
  INFO(r.err);
  REQUIRE(r.exit_code == 0);
  CHECK(primary_of(t / "0000002.toml") == "[::1]:6655");
  // --gateway still wins.
  REQUIRE(enroll("0000003", {"--data", dir.string(), "--gateway", "gw1.example.com:443"}).exit_code == 0);
  CHECK(primary_of(t / "0000003.toml") == "gw1.example.com:443");
  // Every address, or a port chosen at start: not something an agent can connect to.
  for (std::string listen : {"0.0.0.0:4433", "[::]:4433", "127.0.0.1:0"}) {
    std::ofstream(dir / "rsgate.toml") << replace_in(cfg, "listen = \"127.0.0.1:4433\"", "listen = \"" + listen + "\"");
    r = enroll("0000004", {"--data", dir.string()});
    INFO(listen << ": " << r.err);
    CHECK(r.exit_code == 2);
    CHECK(r.err.find("give --gateway") != std::string::npos);
    CHECK_FALSE(std::filesystem::exists(t / "0000004.toml"));
    CHECK(admin_entries(dir, "admin.machine").back().outcome == "error");
  }
  // ... unless the configuration names the public address agents use.
  std::ofstream(dir / "rsgate.toml") << replace_in(
      cfg, "listen = \"127.0.0.1:4433\"", "listen = \"0.0.0.0:4433\"\npublic_address = \"gw1.example.com:4433\"");
  REQUIRE(enroll("0000004", {"--data", dir.string()}).exit_code == 0);
  CHECK(primary_of(t / "0000004.toml") == "gw1.example.com:4433");
  // A broken configuration is bad input, named.
  std::ofstream(t / "broken.toml") << "[tunnel]\nlisten = \"somewhere\"\n";
  r = enroll("0000005", {"--config", (t / "broken.toml").string(), "--data", dir.string()});
  CHECK(r.exit_code == 2);
  CHECK(r.err.find("broken.toml") != std::string::npos);
}

TEST_CASE("administration commands act on the configuration's data directory, else ./rsgate-dev") {
  temp_dir t;
  auto dir = t / "prod";
  init_data_dir(dir, "gw-test");
  auto cfg = (dir / "rsgate.toml").string();
  REQUIRE(rsgate_cmd({"user", "add", "erin", "--role", "auditor", "--password-stdin", "--config", cfg},
                     "a long enough password\n").exit_code == 0);
  auto list = rsgate_cmd({"user", "list", "--data", dir.string()});
  CHECK(list.out.find("erin") != std::string::npos);
  // Without --data or --config: ./rsgate-dev of the working directory.
  std::filesystem::create_directories(t / "work");
  init_data_dir(t / "work" / "rsgate-dev", "gw-dev");
  REQUIRE(run({"env", "-C", (t / "work").string(), rsgate_binary(), "user", "add", "frank", "--role", "developer",
               "--password-stdin"}, "a long enough password\n").exit_code == 0);
  CHECK(rsgate_cmd({"user", "list", "--data", (t / "work" / "rsgate-dev").string()}).out.find("frank") != std::string::npos);
  CHECK(rsgate_cmd({"user", "list", "--config", cfg}).out.find("frank") == std::string::npos);
}

TEST_CASE("machine enroll --replace re-issues a machine's profile with a new secret") {
  temp_dir t;
  auto dir = t / "d";
  init_data_dir(dir, "gw-test", true);
  auto d = dir.string();
  auto enroll = [&](const std::string& out, std::vector<std::string> extra) {
    std::vector<std::string> a = {"machine", "enroll", "--type", "9009", "--model", "42A", "--serial", "7801234",
                                  "--scope", "hmc=127.0.0.1:22", "--profile-out", (t / out).string(), "--data", d};
    a.insert(a.end(), extra.begin(), extra.end());
    return rsgate_cmd(a);
  };
  REQUIRE(enroll("a.toml", {}).exit_code == 0);
  CHECK(enroll("b.toml", {}).exit_code == 1);  // enrolled already
  // Another port for the scope, another scope: a new profile, a new secret.
  auto r = rsgate_cmd({"machine", "enroll", "--type", "9009", "--model", "42A", "--serial", "7801234", "--scope",
                       "hmc=127.0.0.1:2200", "--scope", "partition:LP01=10.0.0.5:22", "--replace", "--profile-out",
                       (t / "b.toml").string(), "--data", d});
  INFO(r.err);
  REQUIRE(r.exit_code == 0);
  CHECK(r.out.starts_with("enrolled again 9009-42A*7801234"));
  auto a = agent::load_profile(t / "a.toml");
  auto b = agent::load_profile(t / "b.toml");
  CHECK(a.secret != b.secret);
  REQUIRE(b.scopes.size() == 2);
  CHECK(b.scopes[0].port == 2200);
  // A revoked machine can be enrolled again the same way.
  REQUIRE(rsgate_cmd({"machine", "revoke", "9009-42A*7801234", "--data", d}).exit_code == 0);
  REQUIRE(enroll("c.toml", {"--replace"}).exit_code == 0);
  CHECK(rsgate_cmd({"machine", "list", "--data", d}).out.find("active") != std::string::npos);
  CHECK(journal_kinds(dir, "admin.machine") ==
        std::vector<std::string>{"enroll:ok", "enroll:denied", "replace:ok", "revoke:ok", "replace:ok"});
  auto q = rsgate_cmd({"journal", "query", "--data", d, "--kind", "admin.machine", "--format", "json"});
  CHECK(q.out.find("\"was_revoked\":true") != std::string::npos);
  CHECK(q.out.find("\"scopes\":[\"hmc\",\"partition:LP01\"]") != std::string::npos);
}
