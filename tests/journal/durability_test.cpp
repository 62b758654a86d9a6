// The journal writes only through a connection in WAL mode with synchronous=FULL, checked by
// reading both settings back after setting them: a setting that silently did not take is
// refused (sqlite::not_durable) before anything is written. To make a setting not take, a
// test-only hook (pragma_saboteur) uses two public SQLite APIs: an auto-extension that runs on
// every connection the process opens, and an authorizer that answers SQLITE_IGNORE to a PRAGMA,
// which makes SQLite skip it without an error.
#include "journal/store.hpp"

#include <sqlite3.h>

#include <catch2/catch.hpp>
#include <functional>
#include <string>

#include "tests/journal/support.hpp"

using namespace rsgate;
using rsgate::test::journal_fixture;
using rsgate::test::temp_dir;

namespace {

// While alive, every new connection first runs `before`, then silently ignores any attempt
// to set `pragma`. One at a time (the hook is process-wide).
class pragma_saboteur {
 public:
  pragma_saboteur(std::string before, std::string pragma) {
    before_ = std::move(before);
    pragma_ = std::move(pragma);
    sqlite3_auto_extension(entry_point());
  }
  ~pragma_saboteur() { sqlite3_cancel_auto_extension(entry_point()); }
  pragma_saboteur(const pragma_saboteur&) = delete;
  pragma_saboteur& operator=(const pragma_saboteur&) = delete;

 private:
  static int on_open(sqlite3* db, const char**, const sqlite3_api_routines*) {
    if (!before_.empty()) sqlite3_exec(db, before_.c_str(), nullptr, nullptr, nullptr);
    sqlite3_set_authorizer(db, authorize, nullptr);
    return SQLITE_OK;
  }
  static int authorize(void*, int action, const char* name, const char* value, const char*, const char*) {
    bool sets_it = action == SQLITE_PRAGMA && value && sqlite3_stricmp(name, pragma_.c_str()) == 0;
    return sets_it ? SQLITE_IGNORE : SQLITE_OK;
  }
  // SQLite's documented way to register an extension entry point of this signature.
  static void (*entry_point())() { return reinterpret_cast<void (*)()>(on_open); }

  static inline std::string before_;
  static inline std::string pragma_;
};

std::string refusal(const std::function<void()>& f) {
  try {
    f();
  } catch (const sqlite::not_durable& e) {
    return e.what();
  }
  return "(no refusal)";
}

bool contains(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

}  // namespace

TEST_CASE("durability_problem names each setting that is not WAL with synchronous=FULL") {
  temp_dir t;
  sqlite::db d(t / "x.db", sqlite::open_mode::create);
  CHECK(sqlite::durability_problem(d) == "journal_mode is 'delete', not 'wal'");
  d.exec("PRAGMA journal_mode = WAL");
  d.exec("PRAGMA synchronous = FULL");
  CHECK(sqlite::durability_problem(d).empty());
  d.exec("PRAGMA synchronous = NORMAL");
  CHECK(sqlite::durability_problem(d) == "synchronous is 1 (NORMAL), not 2 (FULL)");
  d.exec("PRAGMA synchronous = OFF");
  CHECK(sqlite::durability_problem(d) == "synchronous is 0 (OFF), not 2 (FULL)");
  d.exec("PRAGMA synchronous = EXTRA");
  CHECK(sqlite::durability_problem(d) == "synchronous is 3 (EXTRA), not 2 (FULL)");
  d.exec("PRAGMA journal_mode = TRUNCATE");
  CHECK(sqlite::durability_problem(d) ==
        "journal_mode is 'truncate', not 'wal'; synchronous is 3 (EXTRA), not 2 (FULL)");
}

TEST_CASE("a journal opened for writing is WAL with synchronous=FULL") {
  journal_fixture f;
  auto d = journal::open_for_writing(f.db);
  CHECK(sqlite::durability_problem(d).empty());
}

TEST_CASE("a journal that stays out of WAL mode is refused before anything is written") {
  journal_fixture f;
  {
    pragma_saboteur s("", "journal_mode");
    auto why = refusal([&] { (void)journal::open_for_writing(f.db); });
    CHECK(contains(why, f.db.string() + ": refusing to write: journal_mode is 'delete', not 'wal'"));
    CHECK(contains(why, "power loss"));
  }
  sqlite::db d(f.db, sqlite::open_mode::read_only);
  CHECK_FALSE(d.table_exists("journal"));  // not even migrated
  CHECK(d.scalar_int("PRAGMA user_version") == 0);
}

TEST_CASE("the writer refuses a journal connection whose synchronous is not FULL") {
  journal_fixture f;
  for (const char* level : {"OFF", "NORMAL"}) {
    pragma_saboteur s(std::string("PRAGMA synchronous = ") + level, "synchronous");
    auto why = refusal([&] { (void)f.open(); });
    INFO(why);
    CHECK(contains(why, "refusing to write: synchronous is "));
    CHECK(contains(why, std::string("(") + level + "), not 2 (FULL)"));
  }
  // Without the hook the same file opens and takes appends.
  auto w = f.open();
  CHECK(w->append_sync(rsgate::test::sample_entry()).ok());
}

TEST_CASE("an in-memory journal is refused: nothing of it would survive") {
  auto why = refusal([] { (void)journal::open_for_writing(":memory:"); });
  CHECK(contains(why, "journal_mode is 'memory', not 'wal'"));
}
