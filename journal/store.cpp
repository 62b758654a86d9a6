// See store.hpp.
#include "journal/store.hpp"

#include <sqlite3.h>

#include "journal/entry.hpp"
#include "journal/reader.hpp"
#include "schema/schema.hpp"

namespace rsgate::journal {

sqlite::db open_for_writing(const std::filesystem::path& path) {
  sqlite::db d(path, sqlite::open_mode::create);
  try {
    // The writer completes an append when COMMIT returns: only WAL with synchronous=FULL
    // makes that "on disk". A mode that did not take (a file system without shared memory,
    // an in-memory database) is refused before anything is written (sqlite::not_durable).
    sqlite::make_durable(d, path);
    sqlite::migrate(d, schema::journal_migrations, schema::kJournalApplicationId);
  } catch (const sqlite::error& e) {
    if ((e.code() & 0xff) == SQLITE_NOTADB)
      throw not_a_journal(path.string() + " is not an rsgate journal");
    throw;
  }
  return d;
}

sqlite::db open_for_reading(const std::filesystem::path& path, bool structure_checked_later) {
  std::error_code ec;
  if (!std::filesystem::is_regular_file(path, ec))
    throw std::runtime_error(path.string() + ": no such journal file");
  sqlite::db d;
  try {
    d = sqlite::db(path, sqlite::open_mode::read_only);
    auto app = d.scalar_int("PRAGMA application_id");
    if (app != schema::kJournalApplicationId ||
        (!structure_checked_later && !d.table_exists("journal")))
      throw not_a_journal(path.string() + " is not an rsgate journal");
  } catch (const sqlite::error& e) {
    throw not_a_journal(path.string() + " is not an rsgate journal (" + e.what() + ")");
  }
  return d;
}

void ensure_meta(sqlite::db& d, const std::string& gateway, const public_key& pk, micros now) {
  auto ins = d.prepare("INSERT OR IGNORE INTO journal_meta(key, value) VALUES (?1, ?2)");
  auto put = [&](std::string_view k, std::string_view v) {
    ins.reset();
    ins.bind(1, k).bind(2, v);
    ins.step();
  };
  d.exec("BEGIN IMMEDIATE");
  try {
    put("gateway", gateway);
    put("created_at", std::to_string(now));
    put("public_key", to_hex(pk));
    d.exec("COMMIT");
  } catch (...) {
    sqlite3_exec(d.handle(), "ROLLBACK", nullptr, nullptr, nullptr);
    throw;
  }
}

std::optional<std::string> meta_gateway(sqlite::db& d) {
  if (!d.table_exists("journal_meta")) return std::nullopt;
  auto s = d.prepare("SELECT value FROM journal_meta WHERE key = 'gateway'");
  if (!s.step()) return std::nullopt;
  std::string name(s.col_text(0));
  if (!is_valid_gateway_name(name))
    throw bad_gateway_name("journal_meta records an invalid gateway name '" +
                           escape_for_journal(name, 100) +
                           "' (expected 1 to 64 of A-Z a-z 0-9 . _ -): the table was edited; "
                           "see docs/operations.md, section 4");
  return name;
}

bool has_column(sqlite::db& d, std::string_view table, std::string_view column) {
  auto s = d.prepare("SELECT 1 FROM pragma_table_info(?1) WHERE name = ?2");
  s.bind(1, table).bind(2, column);
  return s.step();
}

std::string entry_columns(sqlite::db& d) {
  if (has_column(d, "journal", "subject")) return std::string(kEntryColumns);
  std::string cols(kEntryColumns);
  cols.replace(cols.rfind("subject"), 7, "'' AS subject");
  return cols;
}

chain_tail read_chain_tail(sqlite::db& d) {
  auto s = d.prepare("SELECT seq, ts, hash FROM journal ORDER BY seq DESC LIMIT 1");
  if (!s.step()) return {0, 0, std::string(kGenesisHash)};
  return {s.col_int(0), s.col_int(1), std::string(s.col_text(2))};
}

}  // namespace rsgate::journal
