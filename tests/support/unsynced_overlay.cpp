// See unsynced_overlay.hpp. The overlay keeps whole 4 KiB blocks: the first write to a block
// copies what the file logically holds there, later writes and reads use the copy. A
// truncation is remembered as a cut (real bytes past it are gone) plus the new size, and
// reaches the real file only with the next sync, like the writes.
#include "tests/support/unsynced_overlay.hpp"

#include <algorithm>
#include <cstring>
#include <memory>

namespace rsgate::test {

unsynced_overlay& unsynced_overlay::of(const std::string& path) {
  static std::mutex mu;
  static std::map<std::string, std::unique_ptr<unsynced_overlay>> all;
  std::lock_guard lock(mu);
  auto& o = all[path];
  if (!o) o = std::make_unique<unsynced_overlay>();
  return *o;
}

int unsynced_overlay::ensure_dirty(sqlite3_file* real) {
  if (dirty_) return SQLITE_OK;
  sqlite3_int64 s = 0;
  if (int rc = real->pMethods->xFileSize(real, &s); rc != SQLITE_OK) return rc;
  real_size_ = size_ = s;
  cut_ = kNoCut;
  dirty_ = true;
  return SQLITE_OK;
}

// The real file's bytes as the logical file sees them: past the real end, or truncated away
// and not yet written again, they read as zeros.
int unsynced_overlay::read_real(sqlite3_file* real, unsigned char* out, sqlite3_int64 n,
                                sqlite3_int64 offset) {
  std::memset(out, 0, static_cast<std::size_t>(n));
  sqlite3_int64 end = std::min({offset + n, cut_, real_size_});
  if (end <= offset) return SQLITE_OK;
  int rc = real->pMethods->xRead(real, out, static_cast<int>(end - offset), offset);
  return rc == SQLITE_IOERR_SHORT_READ ? SQLITE_OK : rc;
}

int unsynced_overlay::read_logical(sqlite3_file* real, unsigned char* out, sqlite3_int64 n,
                                   sqlite3_int64 offset) {
  for (sqlite3_int64 pos = offset, end = offset + n; pos < end;) {
    sqlite3_int64 within = pos % kBlock;
    sqlite3_int64 len = std::min(kBlock - within, end - pos);
    auto it = blocks_.find(pos / kBlock);
    if (it != blocks_.end()) {
      std::memcpy(out + (pos - offset), it->second.data() + within, static_cast<std::size_t>(len));
    } else if (int rc = read_real(real, out + (pos - offset), len, pos); rc != SQLITE_OK) {
      return rc;
    }
    pos += len;
  }
  if (offset + n > size_) {  // past the logical end: zeros, whatever lies beyond
    sqlite3_int64 from = std::max<sqlite3_int64>(size_ - offset, 0);
    std::memset(out + from, 0, static_cast<std::size_t>(n - from));
  }
  return SQLITE_OK;
}

int unsynced_overlay::materialize(sqlite3_file* real, sqlite3_int64 index, block*& out) {
  auto it = blocks_.find(index);
  if (it == blocks_.end()) {
    block b{};
    if (int rc = read_logical(real, b.data(), kBlock, index * kBlock); rc != SQLITE_OK) return rc;
    it = blocks_.emplace(index, b).first;
  }
  out = &it->second;
  return SQLITE_OK;
}

int unsynced_overlay::read(sqlite3_file* real, void* out, int n, sqlite3_int64 offset) {
  std::lock_guard lock(mu_);
  if (!dirty_) return real->pMethods->xRead(real, out, n, offset);
  if (int rc = read_logical(real, static_cast<unsigned char*>(out), n, offset); rc != SQLITE_OK)
    return rc;
  return offset + n > size_ ? SQLITE_IOERR_SHORT_READ : SQLITE_OK;
}

int unsynced_overlay::write(sqlite3_file* real, const void* in, int n, sqlite3_int64 offset) {
  std::lock_guard lock(mu_);
  if (int rc = ensure_dirty(real); rc != SQLITE_OK) return rc;
  auto* src = static_cast<const unsigned char*>(in);
  for (sqlite3_int64 pos = offset, end = offset + n; pos < end;) {
    sqlite3_int64 within = pos % kBlock;
    sqlite3_int64 len = std::min(kBlock - within, end - pos);
    block* b = nullptr;
    if (int rc = materialize(real, pos / kBlock, b); rc != SQLITE_OK) return rc;
    std::memcpy(b->data() + within, src + (pos - offset), static_cast<std::size_t>(len));
    pos += len;
  }
  size_ = std::max(size_, offset + n);
  return SQLITE_OK;
}

int unsynced_overlay::truncate(sqlite3_file* real, sqlite3_int64 size) {
  std::lock_guard lock(mu_);
  if (int rc = ensure_dirty(real); rc != SQLITE_OK) return rc;
  cut_ = std::min(cut_, size);
  size_ = size;
  blocks_.erase(blocks_.lower_bound((size + kBlock - 1) / kBlock), blocks_.end());
  if (auto it = blocks_.find(size / kBlock); it != blocks_.end() && size % kBlock != 0)
    std::memset(it->second.data() + size % kBlock, 0, static_cast<std::size_t>(kBlock - size % kBlock));
  return SQLITE_OK;
}

int unsynced_overlay::file_size(sqlite3_file* real, sqlite3_int64* size) {
  std::lock_guard lock(mu_);
  if (!dirty_) return real->pMethods->xFileSize(real, size);
  *size = size_;
  return SQLITE_OK;
}

// Keeps the overlay consistent after each step, so a failure half-way leaves it describing
// the file correctly over whatever reached the real file.
int unsynced_overlay::write_through(sqlite3_file* real) {
  if (cut_ < real_size_) {
    if (int rc = real->pMethods->xTruncate(real, cut_); rc != SQLITE_OK) return rc;
    real_size_ = cut_;
  }
  cut_ = kNoCut;
  for (auto& [index, b] : blocks_) {
    sqlite3_int64 start = index * kBlock;
    auto len = static_cast<int>(std::min(kBlock, size_ - start));
    if (int rc = real->pMethods->xWrite(real, b.data(), len, start); rc != SQLITE_OK) return rc;
    real_size_ = std::max(real_size_, start + len);
  }
  if (real_size_ < size_) {  // extended by a truncation past the end
    if (int rc = real->pMethods->xTruncate(real, size_); rc != SQLITE_OK) return rc;
    real_size_ = size_;
  }
  blocks_.clear();
  dirty_ = false;
  return SQLITE_OK;
}

int unsynced_overlay::sync(sqlite3_file* real, int flags) {
  std::lock_guard lock(mu_);
  if (dirty_)
    if (int rc = write_through(real); rc != SQLITE_OK) return rc;
  return real->pMethods->xSync(real, flags);
}

void unsynced_overlay::forget() {
  std::lock_guard lock(mu_);
  blocks_.clear();
  dirty_ = false;
  cut_ = kNoCut;
}

std::uint64_t unsynced_overlay::pending_bytes() const {
  std::lock_guard lock(mu_);
  return blocks_.size() * static_cast<std::uint64_t>(kBlock);
}

}  // namespace rsgate::test
