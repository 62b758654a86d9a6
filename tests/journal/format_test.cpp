// Output formats of the journal tool: RFC 4180 CSV quoting, JSON lines, and a table that
// neutralises control characters from a tampered journal.
#include "journal/tool/format.hpp"

#include <boost/json/parse.hpp>
#include <catch2/catch.hpp>
#include <sstream>

using namespace rsgate::journal;

namespace {
entry e1() {
  entry e;
  e.seq = 7;
  e.ts = 1'795'824'000'000'000;
  e.gateway = "gw";
  e.kind = "session.attach";
  e.actor = "o\"brien, j";
  e.detail = R"({"a":1})";
  e.prev_hash = std::string(kGenesisHash);
  e.hash = std::string(kGenesisHash);
  return e;
}
}  // namespace

TEST_CASE("CSV quoting per RFC 4180") {
  CHECK(csv_quote("plain") == "plain");
  CHECK(csv_quote("a,b") == "\"a,b\"");
  CHECK(csv_quote("say \"hi\"") == "\"say \"\"hi\"\"\"");
  CHECK(csv_quote("two\nlines") == "\"two\nlines\"");
  auto row = to_csv_row(e1());
  CHECK(row.starts_with("7,2026-11-28T00:00:00.000000Z,gw,session.attach,\"o\"\"brien, j\","));
  CHECK(row.find("\"{\"\"a\"\":1}\"") != std::string::npos);
}

TEST_CASE("JSON lines carry every field, detail as an object") {
  auto v = boost::json::parse(to_json_line(e1())).as_object();
  CHECK(v["seq"].as_int64() == 7);
  CHECK(v["ts"].as_string() == "2026-11-28T00:00:00.000000Z");
  CHECK(v["ts_us"].as_int64() == 1'795'824'000'000'000);
  CHECK(v["actor"].as_string() == "o\"brien, j");
  CHECK(v["detail"].as_object()["a"].as_int64() == 1);
  CHECK(v["outcome"].as_string() == "ok");
  for (auto k : {"gateway", "kind", "source", "session_id", "pmr", "machine", "access_type", "scope",
                 "secret_hmac", "prev_hash", "hash"})
    CHECK(v.contains(k));
}

TEST_CASE("table output strips control characters") {
  auto e = e1();
  e.actor = "evil\x1b[2Jname";
  std::ostringstream out;
  write_table(out, std::span<const entry>(&e, 1), true, false);
  CHECK(out.str().find('\x1b') == std::string::npos);
  CHECK(out.str().find("evil?[2Jname") != std::string::npos);
}
