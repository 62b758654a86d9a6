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

namespace {
// True when `s` holds what a terminal could act on: a C0 control other than '\n', DEL, a C1
// control (U+0080-U+009F as UTF-8), or a byte outside well-formed UTF-8 such as a raw 0x9B
// (CSI to an 8-bit terminal).
bool has_terminal_controls(std::string_view s) {
  for (std::size_t i = 0; i < s.size();) {
    auto c = static_cast<unsigned char>(s[i]);
    if (c < 0x80) {
      if ((c < 0x20 && c != '\n') || c == 0x7f) return true;
      ++i;
      continue;
    }
    std::size_t len = (c & 0xE0) == 0xC0 ? 2 : (c & 0xF0) == 0xE0 ? 3 : (c & 0xF8) == 0xF0 ? 4 : 0;
    if (len == 0 || c < 0xC2 || i + len > s.size()) return true;
    for (std::size_t k = 1; k < len; ++k)
      if ((static_cast<unsigned char>(s[i + k]) & 0xC0) != 0x80) return true;
    if (c == 0xC2 && static_cast<unsigned char>(s[i + 1]) < 0xA0) return true;
    i += len;
  }
  return false;
}
}  // namespace

TEST_CASE("query and tail show C1 controls such as U+009B CSI as '?', json escapes them, csv keeps them") {
  temp_dir t;
  auto dir = t / "data";
  init_data_dir(dir);
  // What a tampered or hostile journal may hold: the journal's own limits refuse C0 and DEL
  // in the short fields, not C1 (valid UTF-8) nor bytes that are not UTF-8.
  const std::string csi = "\xc2\x9b";
  const std::string actor = "mallory" + csi + "2J" + csi + "31m";
  const std::string detail = "{\"note\":\"" + csi + "1;1H\\u001b[2J\",\"raw\":\"x\"}";
  {
    journal::writer_options o;
    o.gateway = "gw-test";
    o.probe_every = 0;
    journal::writer w(dir / "journal.db", journal::signing_key::load(dir / "keys/journal-signing.key"), o);
    journal::entry e;
    e.kind = "session.attach";
    e.actor = actor;
    e.subject = "s" + csi + "t";
    e.scope = "hmc\x9b" "2J";  // a raw 0x9B byte, not UTF-8
    e.detail = detail;
    REQUIRE(w.append_sync(e).ok());
  }
  auto r = rsgate_cmd({"journal", "query", "--data", dir.string(), "--kind", "session.attach"});
  REQUIRE(r.exit_code == 0);
  CHECK_FALSE(has_terminal_controls(r.out));
  CHECK(r.out.find("mallory?2J?31m") != std::string::npos);
  CHECK(r.out.find("s?t") != std::string::npos);
  CHECK(r.out.find("hmc?2J") != std::string::npos);
  CHECK(r.out.find("{\"note\":\"?1;1H\\u001b[2J\"") != std::string::npos);
  auto tail = rsgate_cmd({"journal", "tail", "--data", dir.string(), "-n", "5"});
  REQUIRE(tail.exit_code == 0);
  CHECK_FALSE(has_terminal_controls(tail.out));
  CHECK(tail.out.find("mallory?2J?31m") != std::string::npos);

  // JSON: the same characters, escaped, so the output is safe to print and parses back exactly.
  auto j = rsgate_cmd({"journal", "query", "--data", dir.string(), "--kind", "session.attach", "--format", "json"});
  REQUIRE(j.exit_code == 0);
  CHECK_FALSE(has_terminal_controls(j.out));
  CHECK(j.out.find("mallory\\u009b2J\\u009b31m") != std::string::npos);
  auto o = boost::json::parse(j.out).as_object();
  CHECK(o["actor"].as_string() == actor);
  CHECK(o["subject"].as_string() == "s" + csi + "t");
  CHECK(o["detail"].as_object()["note"].as_string() == csi + "1;1H\x1b[2J");

  // CSV: the stored bytes exactly (it is for programs), the field quoted.
  auto c = rsgate_cmd({"journal", "query", "--data", dir.string(), "--kind", "session.attach", "--format", "csv"});
  REQUIRE(c.exit_code == 0);
  CHECK(c.out.find(",\"" + actor + "\",") != std::string::npos);
}

TEST_CASE("a journal written before subjects existed verifies, reads, and is continued") {
  // A real journal from rsgate 0.1.0 (schema version 1), restored with the sqlite3 program.
  temp_dir t;
  auto dir = t / "old";
  std::filesystem::create_directories(dir / "keys");
  std::filesystem::permissions(dir / "keys", std::filesystem::perms::owner_all);
  auto data = std::filesystem::path(source_path("tests/integration/data/journal_v1"));
  for (auto k : {"journal-signing.key", "journal-signing.pub", "journal-hmac.key"}) {
    std::filesystem::copy_file(data / k, dir / "keys" / k);
    std::filesystem::permissions(dir / "keys" / k, std::filesystem::perms::owner_read | std::filesystem::perms::owner_write);
  }
  REQUIRE(run({"sqlite3", (dir / "journal.db").string()}, read_file(data / "journal.sql")).exit_code == 0);
  auto pub = (dir / "keys/journal-signing.pub").string();
  auto db = (dir / "journal.db").string();
  auto independent = [&] {
    return run({"/usr/bin/python3", source_path("tests/integration/verify_journal.py"), "--db", db, "--pubkey", pub});
  };
  const std::string old_head = "3ea468897283b1fc8b5f897e515a2f167ea17f8285dfa8ece5a5784b00361937";
  auto v = rsgate_cmd({"journal", "verify", "--db", db, "--pubkey", pub});
  INFO(v.out << v.err);
  CHECK(v.exit_code == 0);
  CHECK(v.out.find("ok: 12 entries, 6 checkpoints, head seq 12 hash " + old_head) != std::string::npos);
  CHECK(independent().out == "ok 12 " + old_head + "\n");
  auto q = rsgate_cmd({"journal", "query", "--db", db, "--format", "json", "--kind", "admin.user"});
  REQUIRE(q.exit_code == 0);
  CHECK(line_count(q.out) == 4);
  CHECK(q.out.find("\"subject\":\"\"") != std::string::npos);
  CHECK(rsgate_cmd({"journal", "query", "--db", db, "--subject", "alice"}).exit_code == 0);
  CHECK(run({"sqlite3", db, "PRAGMA user_version;"}).out == "1\n");  // readers never migrate

  // An administration command opens it for writing: migration 0002 adds the column (and 0003
  // an index), the old entries keep their hashes, and the new entry carries a subject.
  REQUIRE(rsgate_cmd({"user", "add", "bob", "--role", "developer", "--password-stdin", "--data", dir.string()},
                     "a long enough password\n").exit_code == 0);
  CHECK(run({"sqlite3", db, "PRAGMA user_version;"}).out == "3\n");
  CHECK(run({"sqlite3", db, "SELECT hash FROM journal WHERE seq = 12;"}).out == old_head + "\n");
  v = rsgate_cmd({"journal", "verify", "--db", db, "--pubkey", pub});
  INFO(v.out << v.err);
  CHECK(v.exit_code == 0);
  CHECK(v.out.find("ok: 14 entries") != std::string::npos);
  auto p = independent();
  INFO(p.out << p.err);
  CHECK(p.out.starts_with("ok 14 "));
  auto s = rsgate_cmd({"journal", "query", "--db", db, "--subject", "bob", "--format", "json"});
  REQUIRE(line_count(s.out) == 1);
  CHECK(boost::json::parse(s.out).as_object()["seq"].as_int64() == 13);
}
