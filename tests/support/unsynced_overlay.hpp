// Test support: what the operating system's page cache holds of one file and the disk does not
// yet, kept in the process's own memory so that SIGKILL throws it away as a power cut would.
// Writes and truncations land in the overlay (reads see them); sync() writes them through to
// the real file, in one go, and then syncs the real file. Used by the SQLite VFS shim
// (faulty_vfs.cpp, power-cut mode) for the journal's database and WAL files; only sqlite3.h
// and the standard library inside, so it can be loaded into any process.
//
// One overlay per path and process, shared by every handle opened on that path (as the page
// cache is); its methods may be called from any thread. Another process opening the same file
// sees only what was synced: the mode is for a process that owns its files.
#pragma once
#include <sqlite3.h>

#include <array>
#include <cstdint>
#include <limits>
#include <map>
#include <mutex>
#include <string>

namespace rsgate::test {

class unsynced_overlay {
 public:
  // Each call takes the real file (any open handle of the overlay's path) and answers as an
  // sqlite3_io_methods function would: SQLITE_OK, SQLITE_IOERR_SHORT_READ (rest zero-filled)
  // or the real file's error.
  int read(sqlite3_file* real, void* out, int n, sqlite3_int64 offset);
  int write(sqlite3_file* real, const void* in, int n, sqlite3_int64 offset);
  int truncate(sqlite3_file* real, sqlite3_int64 size);
  int file_size(sqlite3_file* real, sqlite3_int64* size);
  // Applies what is pending to the real file (truncation, then every written block), then
  // calls the real file's xSync with `flags`. Only then is the overlay empty.
  int sync(sqlite3_file* real, int flags);
  // The file was deleted: nothing of it is pending any more.
  void forget();
  // Bytes held in memory that the real file does not have yet (whole blocks).
  [[nodiscard]] std::uint64_t pending_bytes() const;

  // The overlay of `path` in this process, created on first use, never freed (a handful of
  // files per process).
  static unsynced_overlay& of(const std::string& path);

 private:
  static constexpr sqlite3_int64 kBlock = 4096;
  static constexpr sqlite3_int64 kNoCut = std::numeric_limits<sqlite3_int64>::max();
  using block = std::array<unsigned char, kBlock>;

  int ensure_dirty(sqlite3_file* real);
  int read_logical(sqlite3_file* real, unsigned char* out, sqlite3_int64 n, sqlite3_int64 offset);
  int read_real(sqlite3_file* real, unsigned char* out, sqlite3_int64 n, sqlite3_int64 offset);
  int materialize(sqlite3_file* real, sqlite3_int64 index, block*& out);
  int write_through(sqlite3_file* real);

  mutable std::mutex mu_;
  bool dirty_ = false;                 // false: the real file is the whole truth
  std::map<sqlite3_int64, block> blocks_;  // block index -> its logical content
  sqlite3_int64 size_ = 0;             // logical size, when dirty_
  sqlite3_int64 real_size_ = 0;        // the real file's size when the overlay became dirty
  sqlite3_int64 cut_ = kNoCut;         // real bytes at or past this offset were truncated away
};

}  // namespace rsgate::test
