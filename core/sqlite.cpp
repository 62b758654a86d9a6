// See sqlite.hpp.
#include "core/sqlite.hpp"

#include <fmt/format.h>
#include <sqlite3.h>

#include <algorithm>
#include <charconv>
#include <vector>

namespace rsgate::sqlite {

namespace {

// SQLite counts its memory use under one process-wide mutex on every allocation unless told
// not to. Nothing here reads those counts, and with threads querying at once (the API's
// workers) that mutex was the most contended lock of a PMR lookup (docs/performance.md, the
// HTTPS API). It can only be set before SQLite initializes: at the first open.
void configure_once() {
  static const int rc = sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0);
  (void)rc;  // SQLITE_MISUSE when something else initialized SQLite first: the counts stay on
}

}  // namespace

db::db(const std::filesystem::path& path, open_mode mode) {
  configure_once();
  int flags = SQLITE_OPEN_NOMUTEX;
  switch (mode) {
    case open_mode::read_only: flags |= SQLITE_OPEN_READONLY; break;
    case open_mode::read_write: flags |= SQLITE_OPEN_READWRITE; break;
    case open_mode::create: flags |= SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE; break;
  }
  int rc = sqlite3_open_v2(path.c_str(), &h_, flags, nullptr);
  if (rc != SQLITE_OK) {
    std::string msg = h_ ? sqlite3_errmsg(h_) : sqlite3_errstr(rc);
    sqlite3_close_v2(h_);
    h_ = nullptr;
    throw error(rc, fmt::format("cannot open {}: {}", path.string(), msg));
  }
  sqlite3_extended_result_codes(h_, 1);
  sqlite3_busy_timeout(h_, 5000);
}

db::~db() { close(); }

db& db::operator=(db&& o) noexcept {
  if (this != &o) {
    close();
    h_ = o.h_;
    o.h_ = nullptr;
  }
  return *this;
}

void db::close() {
  if (h_) {
    sqlite3_close_v2(h_);
    h_ = nullptr;
  }
}

std::string db::last_error() const { return h_ ? sqlite3_errmsg(h_) : "no database"; }

void db::fail(int rc, std::string_view what) const {
  int ext = h_ ? sqlite3_extended_errcode(h_) : rc;
  throw error(ext ? ext : rc, fmt::format("{}: {}", what, h_ ? sqlite3_errmsg(h_) : sqlite3_errstr(rc)));
}

void db::exec(std::string_view sql) {
  std::string s(sql);
  char* msg = nullptr;
  int rc = sqlite3_exec(h_, s.c_str(), nullptr, nullptr, &msg);
  if (rc != SQLITE_OK) {
    std::string m = msg ? msg : sqlite3_errstr(rc);
    sqlite3_free(msg);
    throw error(sqlite3_extended_errcode(h_), m);
  }
}

stmt db::prepare(std::string_view sql) {
  sqlite3_stmt* s = nullptr;
  int rc = sqlite3_prepare_v3(h_, sql.data(), static_cast<int>(sql.size()), SQLITE_PREPARE_PERSISTENT,
                              &s, nullptr);
  if (rc != SQLITE_OK) fail(rc, "prepare");
  return stmt(*this, s);
}

std::int64_t db::scalar_int(std::string_view sql) {
  auto s = prepare(sql);
  if (!s.step()) return 0;
  return s.col_int(0);
}

bool db::table_exists(std::string_view name) {
  auto s = prepare("SELECT 1 FROM sqlite_schema WHERE type='table' AND name=?1");
  s.bind(1, name);
  return s.step();
}

stmt::~stmt() {
  if (s_) sqlite3_finalize(s_);
}

stmt& stmt::operator=(stmt&& o) noexcept {
  if (this != &o) {
    if (s_) sqlite3_finalize(s_);
    db_ = o.db_;
    s_ = o.s_;
    o.s_ = nullptr;
  }
  return *this;
}

stmt& stmt::bind(int idx, std::int64_t v) {
  int rc = sqlite3_bind_int64(s_, idx, v);
  if (rc != SQLITE_OK) db_->fail(rc, "bind");
  return *this;
}

stmt& stmt::bind(int idx, std::string_view v) {
  int rc = sqlite3_bind_text(s_, idx, v.data(), static_cast<int>(v.size()), SQLITE_TRANSIENT);
  if (rc != SQLITE_OK) db_->fail(rc, "bind");
  return *this;
}

stmt& stmt::bind_null(int idx) {
  int rc = sqlite3_bind_null(s_, idx);
  if (rc != SQLITE_OK) db_->fail(rc, "bind");
  return *this;
}

bool stmt::step() {
  int rc = sqlite3_step(s_);
  if (rc == SQLITE_ROW) return true;
  if (rc == SQLITE_DONE) return false;
  sqlite3_reset(s_);
  db_->fail(rc, "step");
}

void stmt::reset() {
  sqlite3_reset(s_);
  sqlite3_clear_bindings(s_);
}

std::int64_t stmt::col_int(int idx) const { return sqlite3_column_int64(s_, idx); }

std::string_view stmt::col_text(int idx) const {
  auto p = reinterpret_cast<const char*>(sqlite3_column_text(s_, idx));
  if (!p) return {};
  return {p, static_cast<size_t>(sqlite3_column_bytes(s_, idx))};
}

bool stmt::col_is_null(int idx) const { return sqlite3_column_type(s_, idx) == SQLITE_NULL; }

std::string durability_problem(db& d) {
  std::string why;
  auto mode = d.prepare("PRAGMA journal_mode");
  std::string m = mode.step() ? std::string(mode.col_text(0)) : std::string("unknown");
  if (m != "wal") why = fmt::format("journal_mode is '{}', not 'wal'", m);
  auto sync = d.prepare("PRAGMA synchronous");
  std::int64_t level = sync.step() ? sync.col_int(0) : -1;
  if (level != 2) {
    static constexpr const char* kNames[] = {"OFF", "NORMAL", "FULL", "EXTRA"};
    const char* name = level >= 0 && level <= 3 ? kNames[level] : "unknown";
    why += fmt::format("{}synchronous is {} ({}), not 2 (FULL)", why.empty() ? "" : "; ", level, name);
  }
  return why;
}

void make_durable(db& d, const std::filesystem::path& file) {
  d.exec("PRAGMA journal_mode = WAL");
  d.exec("PRAGMA synchronous = FULL");
  if (auto why = durability_problem(d); !why.empty())
    throw not_durable(fmt::format(
        "{}: refusing to write: {}; a committed write might not survive a power loss", file.string(),
        why));
}

namespace {
int migration_number(std::string_view name) {
  int n = 0;
  auto [p, ec] = std::from_chars(name.data(), name.data() + name.size(), n);
  if (ec != std::errc{} || p == name.data()) throw std::logic_error("bad migration name");
  return n;
}
}  // namespace

int latest_version(std::span<const embedded_file> migrations) {
  int v = 0;
  for (auto& m : migrations) v = std::max(v, migration_number(m.name));
  return v;
}

int migrate(db& d, std::span<const embedded_file> migrations, std::int32_t application_id) {
  auto app = d.scalar_int("PRAGMA application_id");
  if (app != 0 && app != application_id)
    throw error(SQLITE_NOTADB, "not an rsgate database of this kind (application_id mismatch)");
  std::vector<const embedded_file*> order;
  for (auto& m : migrations) order.push_back(&m);
  std::sort(order.begin(), order.end(), [](auto* a, auto* b) {
    return migration_number(a->name) < migration_number(b->name);
  });
  int version = static_cast<int>(d.scalar_int("PRAGMA user_version"));
  for (auto* m : order) {
    int n = migration_number(m->name);
    if (n <= version) continue;
    d.exec("BEGIN IMMEDIATE");
    try {
      d.exec(m->content);
      d.exec(fmt::format("PRAGMA application_id = {}", application_id));
      d.exec(fmt::format("PRAGMA user_version = {}", n));
      d.exec("COMMIT");
    } catch (...) {
      sqlite3_exec(d.handle(), "ROLLBACK", nullptr, nullptr, nullptr);
      throw;
    }
    version = n;
  }
  return version;
}

}  // namespace rsgate::sqlite
