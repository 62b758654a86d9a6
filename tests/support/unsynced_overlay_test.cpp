// The power-cut overlay of the VFS shim against a model: random writes, truncations and reads
// over a real file opened with SQLite's default VFS. Reads and sizes always show the logical
// file (everything written); the real file changes only at sync, and then equals it.
#include "tests/support/unsynced_overlay.hpp"

#include <catch2/catch.hpp>
#include <cstddef>
#include <fstream>
#include <iterator>
#include <memory>
#include <random>
#include <sstream>
#include <string>

#include "tests/support/process.hpp"

using rsgate::test::temp_dir;
using rsgate::test::unsynced_overlay;

namespace {

// A file opened through SQLite's default VFS (unix), as the shim's wrapped file is.
class real_file {
 public:
  explicit real_file(std::string path) : path_(std::move(path)) {
    auto* vfs = sqlite3_vfs_find(nullptr);
    mem_ = std::make_unique<std::max_align_t[]>(vfs->szOsFile / sizeof(std::max_align_t) + 1);
    file_ = reinterpret_cast<sqlite3_file*>(mem_.get());
    int out = 0;
    int rc = vfs->xOpen(vfs, path_.c_str(), file_,
                        SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_MAIN_DB, &out);
    REQUIRE(rc == SQLITE_OK);
  }
  ~real_file() { file_->pMethods->xClose(file_); }
  real_file(const real_file&) = delete;
  real_file& operator=(const real_file&) = delete;
  [[nodiscard]] sqlite3_file* get() const { return file_; }
  // The bytes on disk, read around SQLite.
  [[nodiscard]] std::string on_disk() const {
    std::ifstream in(path_, std::ios::binary);
    return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
  }

 private:
  std::string path_;  // SQLite keeps a pointer to it while the file is open
  std::unique_ptr<std::max_align_t[]> mem_;
  sqlite3_file* file_ = nullptr;
};

std::string random_bytes(std::mt19937& rng, std::size_t n) {
  std::string s(n, '\0');
  for (auto& c : s) c = static_cast<char>(rng() & 0xff);
  return s;
}

}  // namespace

TEST_CASE("unsynced overlay: the real file changes only at sync") {
  temp_dir t;
  real_file f((t / "db").string());
  REQUIRE(f.get()->pMethods->xWrite(f.get(), "old-bytes", 9, 0) == SQLITE_OK);
  unsynced_overlay o;
  REQUIRE(o.write(f.get(), "NEW", 3, 0) == SQLITE_OK);
  REQUIRE(o.write(f.get(), "tail", 4, 5000) == SQLITE_OK);
  CHECK(f.on_disk() == "old-bytes");
  CHECK(o.pending_bytes() == 8192);
  char buf[9];
  REQUIRE(o.read(f.get(), buf, 9, 0) == SQLITE_OK);
  CHECK(std::string(buf, 9) == "NEW-bytes");
  sqlite3_int64 size = 0;
  REQUIRE(o.file_size(f.get(), &size) == SQLITE_OK);
  CHECK(size == 5004);
  REQUIRE(o.truncate(f.get(), 4) == SQLITE_OK);
  CHECK(f.on_disk() == "old-bytes");
  REQUIRE(o.sync(f.get(), SQLITE_SYNC_NORMAL) == SQLITE_OK);
  CHECK(f.on_disk() == "NEW-");
  CHECK(o.pending_bytes() == 0);
}

TEST_CASE("unsynced overlay: random writes, truncations, reads and syncs against a model") {
  temp_dir t;
  real_file f((t / "db").string());
  unsynced_overlay o;
  std::mt19937 rng(8);  // fixed: a failure repeats
  std::string logical = random_bytes(rng, 10000);
  REQUIRE(f.get()->pMethods->xWrite(f.get(), logical.data(), static_cast<int>(logical.size()), 0) == SQLITE_OK);
  std::string synced = logical;
  auto pick = [&](int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng); };
  for (int step = 0; step < 3000; ++step) {
    INFO("step " << step);
    int what = pick(0, 99);
    if (what < 45) {  // write, often past the end, often across blocks
      auto off = static_cast<std::size_t>(pick(0, 40000));
      auto data = random_bytes(rng, static_cast<std::size_t>(pick(1, 9000)));
      REQUIRE(o.write(f.get(), data.data(), static_cast<int>(data.size()), static_cast<sqlite3_int64>(off)) == SQLITE_OK);
      if (logical.size() < off + data.size()) logical.resize(off + data.size(), '\0');
      logical.replace(off, data.size(), data);
    } else if (what < 55) {  // truncate, shrinking or growing
      auto to = static_cast<std::size_t>(pick(0, 40000));
      REQUIRE(o.truncate(f.get(), static_cast<sqlite3_int64>(to)) == SQLITE_OK);
      logical.resize(to, '\0');
    } else if (what < 95) {  // read, sometimes past the end: short read, zero-filled
      auto off = static_cast<std::size_t>(pick(0, 42000));
      auto n = static_cast<std::size_t>(pick(1, 9000));
      std::string got(n, 'x');
      int rc = o.read(f.get(), got.data(), static_cast<int>(n), static_cast<sqlite3_int64>(off));
      std::string want = off < logical.size() ? logical.substr(off, n) : std::string();
      bool short_read = want.size() < n;
      want.resize(n, '\0');
      CHECK(rc == (short_read ? SQLITE_IOERR_SHORT_READ : SQLITE_OK));
      CHECK(got == want);
      sqlite3_int64 size = -1;
      REQUIRE(o.file_size(f.get(), &size) == SQLITE_OK);
      CHECK(size == static_cast<sqlite3_int64>(logical.size()));
    } else {  // sync: the disk catches up
      REQUIRE(o.sync(f.get(), SQLITE_SYNC_NORMAL) == SQLITE_OK);
      synced = logical;
      CHECK(o.pending_bytes() == 0);
    }
    if (step % 50 == 0) REQUIRE(f.on_disk() == synced);  // a kill now would leave this
  }
}
