// Opening journal databases: for the writer (create, migrate, WAL, synchronous=FULL) and for
// readers (read-only, refusing files that are not rsgate journals).
#pragma once
#include <filesystem>
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

[[nodiscard]] sqlite::db open_for_writing(const std::filesystem::path& path);
// Throws not_a_journal, or std::runtime_error when the file is missing or unreadable.
[[nodiscard]] sqlite::db open_for_reading(const std::filesystem::path& path);

// Records gateway name, public key and creation time on first open; later opens keep them.
void ensure_meta(sqlite::db& d, const std::string& gateway, const public_key& pk, micros now);

struct chain_tail {
  std::int64_t seq = 0;
  micros ts = 0;
  std::string hash;  // kGenesisHash for an empty journal
};
[[nodiscard]] chain_tail read_chain_tail(sqlite::db& d);

}  // namespace rsgate::journal
