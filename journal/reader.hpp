// Reading journals: filtered, keyset-paginated queries merged by time across several journal
// files (one per gateway), counts, and full verification of the chain and signatures.
// A reader holds read-only connections; one reader is used by one thread at a time.
#pragma once
#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "core/sqlite.hpp"
#include "journal/entry.hpp"
#include "journal/keys.hpp"

namespace rsgate::journal {

// A position in the merged order (ts, gateway, seq). Text form: "<ts>.<seq>.<hex(gateway)>".
struct cursor {
  micros ts = 0;
  std::int64_t seq = 0;
  std::string gateway;
  [[nodiscard]] std::string encode() const;
  [[nodiscard]] static std::optional<cursor> decode(std::string_view text);
  friend bool operator==(const cursor&, const cursor&) = default;
};

struct filter {
  std::optional<std::string> pmr, session_id, actor, machine, kind, secret_hmac, subject;
  std::optional<outcome> result;
  std::optional<micros> since;  // inclusive
  std::optional<micros> until;  // exclusive
  std::optional<cursor> after;  // strictly after (or before, when descending) this position
  bool descending = false;
  std::size_t limit = 100;
  // Leave out audit.query entries (who looked something up), e.g. for what happened under a
  // PMR; with `pmr` set it reads the index journal_by_pmr_access.
  bool exclude_audit = false;
};

inline constexpr std::size_t kMaxQueryLimit = 100000;

struct page {
  std::vector<entry> entries;
  std::optional<cursor> next;  // set when more entries may follow
};

class reader {
 public:
  // Opens every file read-only; throws not_a_journal / std::runtime_error naming the file.
  // `for_verify`: accept a file of ours whose tables are damaged, for verify() to judge.
  explicit reader(const std::vector<std::filesystem::path>& files, bool for_verify = false);

  [[nodiscard]] page query(const filter& f);
  [[nodiscard]] std::int64_t count(const filter& f);
  // Entries with seq > after_seq of the first (or only) file, oldest first, at most `limit`.
  [[nodiscard]] std::vector<entry> since_seq(std::size_t file, std::int64_t after_seq,
                                             std::size_t limit);
  // The newest `limit` entries of one file with seq <= up_to_seq, newest first.
  [[nodiscard]] std::vector<entry> latest(std::size_t file, std::int64_t up_to_seq, std::size_t limit);
  [[nodiscard]] std::size_t files() const { return dbs_.size(); }
  [[nodiscard]] const std::filesystem::path& path(std::size_t i) const { return paths_[i]; }
  [[nodiscard]] sqlite::db& db(std::size_t i) { return dbs_[i]; }

 private:
  std::vector<std::filesystem::path> paths_;
  std::vector<sqlite::db> dbs_;
  std::vector<std::string> columns_;  // entry_columns() of each file
  // query()'s prepared statements by file and SQL text: a reader kept by a thread (the
  // gateway's API workers) parses each shape of query once. At most kStatementCache each.
  static constexpr std::size_t kStatementCache = 32;
  std::vector<std::map<std::string, sqlite::stmt>> statements_;
  std::vector<bool> has_subject_;     // false: written before migration 0002
};

struct verify_result {
  bool ok = true;
  std::int64_t entries = 0;
  std::int64_t checkpoints = 0;
  std::string head_hash;           // hash of the last entry (kGenesisHash when empty)
  std::int64_t head_seq = 0;
  std::int64_t signed_through = 0;  // highest seq covered by a valid signature (with a key)
  std::int64_t first_bad_seq = 0;   // when !ok
  std::string problem;              // when !ok: what is wrong at first_bad_seq
  bool signatures_checked = false;
};

// Walks the whole chain in seq order. With a public key, also checks every checkpoint's
// signature and the signed head, and that no entry lies beyond the signed head. A table or
// column that was dropped is a failed check (docs/journal.md §10 step 0); only a file SQLite
// cannot read throws.
[[nodiscard]] verify_result verify(sqlite::db& d, const std::optional<public_key>& pk);

// Reads one row of `SELECT <entry columns>` into an entry (subject from column 16 if present).
[[nodiscard]] entry entry_from_row(const sqlite::stmt& s);
inline constexpr std::string_view kEntryColumns =
    "seq, ts, gateway, kind, actor, source, session_id, pmr, machine, access_type, scope, "
    "outcome, secret_hmac, detail, prev_hash, hash, subject";

}  // namespace rsgate::journal
