// A thin RAII layer over the SQLite C API: a connection, prepared statements with typed
// binds and columns, and migrations from embedded SQL files. Errors throw sqlite::error,
// which keeps SQLite's extended result code so callers can tell "disk full" from "corrupt".
// A connection is owned by one thread at a time (SQLite's default serialized mode is not
// relied upon).
#pragma once
#include <cstdint>
#include <filesystem>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>

#include "core/embedded.hpp"

struct sqlite3;
struct sqlite3_stmt;

namespace rsgate::sqlite {

class error : public std::runtime_error {
 public:
  error(int code, const std::string& what) : std::runtime_error(what), code_(code) {}
  [[nodiscard]] int code() const { return code_; }  // extended result code

 private:
  int code_;
};

enum class open_mode { read_only, read_write, create };

class stmt;

class db {
 public:
  db() = default;
  db(const std::filesystem::path& path, open_mode mode);
  ~db();
  db(db&& o) noexcept : h_(o.h_) { o.h_ = nullptr; }
  db& operator=(db&& o) noexcept;
  db(const db&) = delete;
  db& operator=(const db&) = delete;

  void exec(std::string_view sql);
  [[nodiscard]] stmt prepare(std::string_view sql);
  [[nodiscard]] std::int64_t scalar_int(std::string_view sql);
  [[nodiscard]] bool table_exists(std::string_view name);
  [[nodiscard]] sqlite3* handle() const { return h_; }
  [[nodiscard]] std::string last_error() const;
  [[noreturn]] void fail(int rc, std::string_view what) const;
  void close();

 private:
  sqlite3* h_ = nullptr;
};

class stmt {
 public:
  stmt() = default;
  stmt(const db& owner, sqlite3_stmt* s) : db_(&owner), s_(s) {}
  ~stmt();
  stmt(stmt&& o) noexcept : db_(o.db_), s_(o.s_) { o.s_ = nullptr; }
  stmt& operator=(stmt&& o) noexcept;
  stmt(const stmt&) = delete;
  stmt& operator=(const stmt&) = delete;

  stmt& bind(int idx, std::int64_t v);
  stmt& bind(int idx, std::string_view v);
  stmt& bind_null(int idx);
  // Steps once: true when a row is available, false when done. Throws on error.
  bool step();
  void reset();  // reset and clear bindings
  [[nodiscard]] std::int64_t col_int(int idx) const;
  [[nodiscard]] std::string_view col_text(int idx) const;
  [[nodiscard]] bool col_is_null(int idx) const;

 private:
  const db* db_ = nullptr;
  sqlite3_stmt* s_ = nullptr;
};

// Thrown when a connection that must keep every committed write across a power loss is not
// in WAL mode with synchronous=FULL.
class not_durable : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Empty when `d` is in WAL mode with synchronous=FULL (2): a COMMIT that returned is on disk,
// the WAL synced before it returns. Otherwise what is wrong, for an error message.
[[nodiscard]] std::string durability_problem(db& d);
// Sets journal_mode=WAL and synchronous=FULL, then reads both back: a setting can fail to take
// silently (journal_mode=WAL on a file system without shared memory, an in-memory database).
// Throws not_durable naming `file` when they did not take.
void make_durable(db& d, const std::filesystem::path& file);

// Applies, in name order, every migration whose number (the file name's leading digits) is
// above the database's `PRAGMA user_version`, each in its own transaction, and sets
// user_version to it. `application_id` marks the file as one of ours; a database with a
// different non-zero application_id is refused. Returns the resulting version.
int migrate(db& d, std::span<const embedded_file> migrations, std::int32_t application_id);

// The highest migration number in the set (what a fully migrated database reports).
[[nodiscard]] int latest_version(std::span<const embedded_file> migrations);

}  // namespace rsgate::sqlite
