// Shared steps of the integration tests: prepare a data directory with the real `rsgate init`,
// fill a journal through the library with that directory's key, call the real CLI.
#pragma once
#include <catch2/catch.hpp>
#include <filesystem>
#include <string>
#include <vector>

#include "journal/journal.hpp"
#include "tests/support/process.hpp"

namespace rsgate::test {

inline run_result rsgate_cmd(std::vector<std::string> args, const std::string& input = "") {
  args.insert(args.begin(), rsgate_binary());
  return run(args, input, std::chrono::seconds(120));
}

// `rsgate init --data DIR --name NAME --no-certs` (certificates are not needed offline).
inline void init_data_dir(const std::filesystem::path& dir, const std::string& name = "gw-test",
                          bool certs = false) {
  std::vector<std::string> args = {"init", "--data", dir.string(), "--name", name};
  if (!certs) args.push_back("--no-certs");
  auto r = rsgate_cmd(args);
  INFO(r.err);
  REQUIRE(r.exit_code == 0);
}

// Appends `n` entries to DIR/journal.db with DIR's signing key; a checkpoint every 5.
inline void fill_journal(const std::filesystem::path& dir, int n,
                         const std::string& gateway = "gw-test") {
  journal::writer_options o;
  o.gateway = gateway;
  o.probe_every = 0;
  o.checkpoint_every_entries = 5;
  journal::writer w(dir / "journal.db", journal::signing_key::load(dir / "keys" / "journal-signing.key"), o);
  for (int i = 0; i < n; ++i) {
    journal::entry e;
    e.kind = i % 2 ? "session.attach" : "channel.open";
    e.actor = "user" + std::to_string(i);
    e.pmr = i % 2 ? "12345,677,000" : "TS012345678";
    e.machine = "9009-42A*7801234";
    e.session_id = "S" + std::to_string(i % 3);
    e.access_type = "ssh";
    e.scope = "hmc";
    e.source = "127.0.0.1:5000" + std::to_string(i % 10);
    REQUIRE(w.append_sync(e).ok());
  }
}

}  // namespace rsgate::test
