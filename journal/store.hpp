// Opening journal databases: for the writer (create, migrate, WAL, synchronous=FULL) and for
// readers (read-only, refusing files that are not rsgate journals).
#pragma once
#include <filesystem>
#include <optional>
#include <string>

#include "core/clock.hpp"
#include "core/sqlite.hpp"
#include "journal/keys.hpp"

namespace rsgate::journal {

// Thrown when a file exists but is not an rsgate journal (or is damaged beyond reading).
class not_a_journal : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Thrown when journal_meta records a gateway name that breaks is_valid_gateway_name: the
// table is not protected by the chain, so someone edited it, and nothing may be signed or
// shown with that name.
class bad_gateway_name : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Creates and migrates the file if needed. Throws sqlite::not_durable, before writing
// anything, when the connection does not end up in WAL mode with synchronous=FULL.
[[nodiscard]] sqlite::db open_for_writing(const std::filesystem::path& path);
// Throws not_a_journal, or std::runtime_error when the file is missing or unreadable.
// `structure_checked_later`: verification opens any file whose application_id is rsgJ and
// judges a missing table itself (a failed check, not an unreadable file).
[[nodiscard]] sqlite::db open_for_reading(const std::filesystem::path& path,
                                          bool structure_checked_later = false);

// journal_meta's `gateway`, when recorded. Throws bad_gateway_name when it is not a valid
// gateway name (the message shows it escaped: it may hold terminal escapes).
[[nodiscard]] std::optional<std::string> meta_gateway(sqlite::db& d);

[[nodiscard]] bool has_column(sqlite::db& d, std::string_view table, std::string_view column);
// The SELECT list for entry_from_row (reader.hpp) on this file: kEntryColumns, or, for a
// journal written before migration 0002, the same with `'' AS subject`.
[[nodiscard]] std::string entry_columns(sqlite::db& d);

// Records gateway name, public key and creation time on first open; later opens keep them.
void ensure_meta(sqlite::db& d, const std::string& gateway, const public_key& pk, micros now);

struct chain_tail {
  std::int64_t seq = 0;
  micros ts = 0;
  std::string hash;  // kGenesisHash for an empty journal
};
[[nodiscard]] chain_tail read_chain_tail(sqlite::db& d);

}  // namespace rsgate::journal
