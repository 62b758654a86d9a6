// Shared fixtures for journal tests: a temp journal with a fresh key and a manual clock.
#pragma once
#include <memory>

#include "journal/journal.hpp"
#include "tests/support/process.hpp"

namespace rsgate::test {

inline journal::entry sample_entry(std::string kind = "session.attach", std::string actor = "alice") {
  journal::entry e;
  e.kind = std::move(kind);
  e.actor = std::move(actor);
  e.source = "203.0.113.7:51234";
  e.session_id = "S1";
  e.pmr = "12345,677,000";
  e.machine = "9009-42A*7801234";
  e.access_type = "ssh";
  e.scope = "hmc";
  e.detail = R"({"note":"test"})";
  return e;
}

struct journal_fixture {
  temp_dir dir;
  journal::signing_key key = journal::signing_key::generate();
  manual_clock clock{1'795'824'000'000'000};
  std::filesystem::path db = dir / "journal.db";

  std::unique_ptr<journal::writer> open(journal::writer_options o = quiet()) {
    return std::make_unique<journal::writer>(db, key, o, clock);
  }
  static journal::writer_options quiet() {
    journal::writer_options o;
    o.gateway = "gw-test";
    o.probe_every = 0;
    o.checkpoint_every = 0;
    o.checkpoint_every_entries = 1'000'000;
    return o;
  }
};

}  // namespace rsgate::test
