// `rsgate journal` as an auditor uses it: real process, real journal files. Formats, filters,
// --hash-of, export, tail -f, pubkey, and a one-line error with exit 2 for every bad input.
#include <boost/json/parse.hpp>
#include <fstream>
#include <thread>

#include "core/files.hpp"
#include "tests/integration/common.hpp"

using namespace rsgate;
using namespace rsgate::test;

TEST_CASE("query formats and filters") {
  temp_dir t;
  auto dir = t / "data";
  init_data_dir(dir);
  fill_journal(dir, 12);
  auto db = (dir / "journal.db").string();

  auto r = rsgate_cmd({"journal", "query", "--db", db, "--format", "json"});
  REQUIRE(r.exit_code == 0);
  // admin.user from init, its closing checkpoint, 12 entries, 2 checkpoints, the final one.
  CHECK(line_count(r.out) == 2 + 12 + 3);
  std::istringstream lines(r.out);
  std::string line;
  std::int64_t expect_seq = 1;
  while (std::getline(lines, line)) {
    auto o = boost::json::parse(line).as_object();
    CHECK(o["seq"].as_int64() == expect_seq++);
  }

  r = rsgate_cmd({"journal", "query", "--db", db, "--pmr", "12345,677,000", "--format", "csv"});
  REQUIRE(r.exit_code == 0);
  CHECK(line_count(r.out) == 1 + 6);
  CHECK(r.out.starts_with("seq,ts,gateway,kind,actor,"));

  r = rsgate_cmd({"journal", "query", "--db", db, "--kind", "session.attach", "--actor", "user3"});
  REQUIRE(r.exit_code == 0);
  CHECK(line_count(r.out) == 2);  // header + 1
  CHECK(r.out.find("SEQ") == 0);
  CHECK(r.out.find("user3") != std::string::npos);

  r = rsgate_cmd({"journal", "query", "--data", dir.string(), "--limit", "5", "--order", "desc",
                  "--format", "json"});
  REQUIRE(r.exit_code == 0);
  CHECK(line_count(r.out) == 5);
  CHECK(r.err.find("--cursor") != std::string::npos);  // more pages announced on stderr
  auto cur = r.err.substr(r.err.find("--cursor ") + 9);
  cur = cur.substr(0, cur.find('\n'));
  auto r2 = rsgate_cmd({"journal", "query", "--db", db, "--limit", "5", "--order", "desc",
                        "--cursor", cur, "--format", "json"});
  REQUIRE(r2.exit_code == 0);
  CHECK(boost::json::parse(r2.out.substr(0, r2.out.find('\n'))).as_object()["seq"].as_int64() == 12);

  r = rsgate_cmd({"journal", "query", "--db", db, "--since", "1h", "--until", "2099-01-01",
                  "--outcome", "ok", "--machine", "9009-42a*7801234", "--session", "S1",
                  "--format", "json"});
  REQUIRE(r.exit_code == 0);
  CHECK(line_count(r.out) == 4);
}

TEST_CASE("query --hash-of finds entries about a secret without the secret being stored") {
  temp_dir t;
  auto dir = t / "data";
  init_data_dir(dir);
  const std::string secret = "7KQ4-M2XP-9RTA-C";
  {
    journal::writer_options o;
    o.gateway = "gw-test";
    o.probe_every = 0;
    journal::writer w(dir / "journal.db", journal::signing_key::load(dir / "keys/journal-signing.key"), o);
    auto k = journal::hmac_key::load(dir / "keys/journal-hmac.key");
    journal::entry e;
    e.kind = "session.key_issued";
    e.actor = "agent";
    e.secret_hmac = k.hash_of(secret);
    REQUIRE(w.append_sync(e).ok());
    e.kind = "session.attach";
    e.secret_hmac = k.hash_of("other key");
    REQUIRE(w.append_sync(e).ok());
  }
  auto r = rsgate_cmd({"journal", "query", "--data", dir.string(), "--hash-of", secret, "--format", "json"});
  REQUIRE(r.exit_code == 0);
  REQUIRE(line_count(r.out) == 1);
  CHECK(r.out.find("session.key_issued") != std::string::npos);
  r = rsgate_cmd({"journal", "query", "--db", (dir / "journal.db").string(), "--hash-of", "-",
                  "--format", "json"},
                 secret + "\n");
  REQUIRE(r.exit_code == 0);
  CHECK(line_count(r.out) == 1);
  // The secret itself is nowhere in the database file.
  CHECK(read_file(dir / "journal.db").find(secret) == std::string::npos);
}

TEST_CASE("export, tail and pubkey") {
  temp_dir t;
  auto dir = t / "data";
  init_data_dir(dir);
  fill_journal(dir, 7);
  auto db = (dir / "journal.db").string();
  auto r = rsgate_cmd({"journal", "export", "--db", db, "--format", "jsonl"});
  REQUIRE(r.exit_code == 0);
  CHECK(line_count(r.out) == 2 + 7 + 2);
  r = rsgate_cmd({"journal", "export", "--db", db, "--format", "csv", "--since", "2000-01-01"});
  REQUIRE(r.exit_code == 0);
  CHECK(line_count(r.out) == 1 + 2 + 7 + 2);
  r = rsgate_cmd({"journal", "tail", "--db", db, "-n", "3"});
  REQUIRE(r.exit_code == 0);
  CHECK(line_count(r.out) == 4);
  r = rsgate_cmd({"journal", "pubkey", "--data", dir.string()});
  REQUIRE(r.exit_code == 0);
  CHECK(r.out == read_file(dir / "keys/journal-signing.pub"));
  r = rsgate_cmd({"journal", "verify", "--db", db, "--pubkey", (dir / "keys/journal-signing.pub").string()});
  CHECK(r.exit_code == 0);
  CHECK(r.out.find("ok: 11 entries") != std::string::npos);
  CHECK(r.out.find("signatures verified through seq 11") != std::string::npos);
}

TEST_CASE("tail -f prints entries as they are appended") {
  temp_dir t;
  auto dir = t / "data";
  init_data_dir(dir);
  child tail({rsgate_binary(), "journal", "tail", "-f", "--data", dir.string(), "--format", "json",
              "--interval", "50", "-n", "1"},
             t / "tail.err");
  // The newest entry first (init's closing checkpoint): proves tail is running before we append.
  auto first = tail.read_line(std::chrono::seconds(30));
  REQUIRE(first);
  CHECK(boost::json::parse(*first).as_object()["seq"].as_int64() == 2);
  fill_journal(dir, 3);
  std::vector<std::string> kinds;
  for (int i = 0; i < 4; ++i) {  // 3 entries and the closing checkpoint
    auto line = tail.read_line(std::chrono::seconds(20));
    REQUIRE(line);
    kinds.push_back(std::string(boost::json::parse(*line).as_object()["kind"].as_string()));
  }
  CHECK(kinds == std::vector<std::string>{"channel.open", "session.attach", "channel.open",
                                          "journal.checkpoint"});
  tail.signal(SIGTERM);
  CHECK(tail.wait(std::chrono::seconds(10)).has_value());
}

TEST_CASE("every bad input gives one line on stderr and exit 2") {
  temp_dir t;
  auto dir = t / "data";
  init_data_dir(dir);
  auto db = (dir / "journal.db").string();
  std::ofstream(t / "text.db") << "not a database at all\n";
  std::ofstream(t / "bad.pub") << "xyz\n";
  const std::vector<std::vector<std::string>> cases = {
      {"query", "--db", db, "--since", "yesterday"},
      {"query", "--db", db, "--until", "2026-13-01"},
      {"query", "--db", db, "--since", "2026-11-28", "--until", "2026-11-27"},
      {"query", "--db", db, "--kind", "session.nonsense"},
      {"query", "--db", db, "--pmr", "123"},
      {"query", "--db", db, "--pmr", "12345,677,0000"},
      {"query", "--db", db, "--machine", "9009-42A-7801234"},
      {"query", "--db", db, "--outcome", "maybe"},
      {"query", "--db", db, "--limit", "0"},
      {"query", "--db", db, "--limit", "many"},
      {"query", "--db", db, "--format", "xml"},
      {"query", "--db", db, "--order", "sideways"},
      {"query", "--db", db, "--cursor", "zz"},
      {"query", "--db", db, "--actor", ""},
      {"query", "--db", db, "--bogus"},
      {"query", "--db", (t / "missing.db").string()},
      {"query", "--db", (t / "text.db").string()},
      {"query", "--db", db, "--db", (t / "text.db").string()},
      {"verify", "--db", (t / "missing.db").string()},
      {"verify", "--db", (t / "text.db").string()},
      {"verify", "--db", db, "--pubkey", (t / "missing.pub").string()},
      {"verify", "--db", db, "--pubkey", (t / "bad.pub").string()},
      {"export", "--db", db},
      {"export", "--db", db, "--format", "xml"},
      {"export", "--db", db, "--format", "csv", "--since", "tomorrow"},
      {"tail", "--db", db, "-n", "-1"},
      {"tail", "--db", db, "--format", "csv"},
      {"pubkey", "--data", (t / "nowhere").string()},
      {"nonsense"},
  };
  for (auto args : cases) {
    args.insert(args.begin(), "journal");
    auto r = rsgate_cmd(args);
    std::string shown;
    for (auto& a : args) shown += a + " ";
    INFO(shown << "\nstderr: " << r.err);
    CHECK(r.exit_code == 2);
    CHECK(line_count(r.err) == 1);
    CHECK(r.out.empty());
  }
  // The database was not created by any of these.
  CHECK_FALSE(std::filesystem::exists(t / "missing.db"));
}
