// Test support: a SQLite VFS shim that makes chosen database files fail on demand, in a real
// process (SQLite's own test_vfs.c idea). Loaded with LD_PRELOAD into `rsgate serve`, its
// constructor registers a VFS that wraps the default one and becomes the default, so every
// connection the process opens goes through it. It does nothing unless RSGATE_FAULT_DIR or
// RSGATE_POWER_CUT is set.
//
// For a database file named NAME (its basename: "state.db", "journal.db", and their -wal and
// -shm files count as NAME too), the presence of a file in RSGATE_FAULT_DIR selects a fault,
// checked on every operation:
//   NAME.ioerr     reads, writes, syncs, truncations and locks fail with SQLITE_IOERR_* (a bad
//                  disk; in WAL mode every transaction fails, also one the page cache answers)
//   NAME.readonly  writes, syncs and truncations fail with SQLITE_READONLY (a read-only mount)
//   NAME.busy      every lock, file and shared-memory, is refused with SQLITE_BUSY (another
//                  process holds the database)
//   NAME.nowal     (checked when the file is opened) no shared memory, as on a file system
//                  where SQLite cannot use WAL: `PRAGMA journal_mode=WAL` leaves a rollback-
//                  journal database in its mode, and a WAL database cannot be opened
// Removing the file ends the fault.
//
// Power-cut mode, RSGATE_POWER_CUT=NAME: the database file NAME and its WAL keep every write
// and truncation in the process's memory (unsynced_overlay.hpp, which reads see) until SQLite
// calls xSync on that file, which writes them through and syncs the real file. A SIGKILL then
// loses exactly what was never synced, as a power cut loses the page cache. The -shm file is
// left alone: it is memory SQLite rebuilds from the WAL when the first connection opens the
// database after a crash. Memory-mapped reads are refused for NAME (they would bypass the
// overlay). Only sqlite3.h: no rsgate code inside.
#include <sqlite3.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "tests/support/unsynced_overlay.hpp"

namespace {

using rsgate::test::unsynced_overlay;

struct faulty_file {
  sqlite3_file base;   // must be first: SQLite sees a sqlite3_file
  sqlite3_file* real;  // the wrapped file, allocated right after this struct
  char name[128];      // the database's basename, without -wal / -shm
  unsynced_overlay* overlay;  // power-cut mode: unsynced writes of this file; else null
};

sqlite3_vfs* g_real = nullptr;
const char* g_dir = nullptr;
const char* g_power_cut = nullptr;  // the database name whose unsynced writes a kill loses

bool fault(const faulty_file* f, const char* kind) {
  char path[1024];
  if (!g_dir || !f->name[0]) return false;
  std::snprintf(path, sizeof path, "%s/%s.%s", g_dir, f->name, kind);
  return ::access(path, F_OK) == 0;
}

faulty_file* FF(sqlite3_file* f) { return reinterpret_cast<faulty_file*>(f); }
sqlite3_file* REAL(sqlite3_file* f) { return FF(f)->real; }

int f_close(sqlite3_file* f) {
  int rc = REAL(f)->pMethods ? REAL(f)->pMethods->xClose(REAL(f)) : SQLITE_OK;
  return rc;
}
int f_read(sqlite3_file* f, void* p, int n, sqlite3_int64 off) {
  if (fault(FF(f), "ioerr")) return SQLITE_IOERR_READ;
  if (FF(f)->overlay) return FF(f)->overlay->read(REAL(f), p, n, off);
  return REAL(f)->pMethods->xRead(REAL(f), p, n, off);
}
int f_write(sqlite3_file* f, const void* p, int n, sqlite3_int64 off) {
  if (fault(FF(f), "ioerr")) return SQLITE_IOERR_WRITE;
  if (fault(FF(f), "readonly")) return SQLITE_READONLY;
  if (FF(f)->overlay) return FF(f)->overlay->write(REAL(f), p, n, off);
  return REAL(f)->pMethods->xWrite(REAL(f), p, n, off);
}
int f_truncate(sqlite3_file* f, sqlite3_int64 size) {
  if (fault(FF(f), "ioerr")) return SQLITE_IOERR_TRUNCATE;
  if (fault(FF(f), "readonly")) return SQLITE_READONLY;
  if (FF(f)->overlay) return FF(f)->overlay->truncate(REAL(f), size);
  return REAL(f)->pMethods->xTruncate(REAL(f), size);
}
int f_sync(sqlite3_file* f, int flags) {
  if (fault(FF(f), "ioerr")) return SQLITE_IOERR_FSYNC;
  if (fault(FF(f), "readonly")) return SQLITE_READONLY;
  if (FF(f)->overlay) return FF(f)->overlay->sync(REAL(f), flags);
  return REAL(f)->pMethods->xSync(REAL(f), flags);
}
int f_size(sqlite3_file* f, sqlite3_int64* size) {
  if (FF(f)->overlay) return FF(f)->overlay->file_size(REAL(f), size);
  return REAL(f)->pMethods->xFileSize(REAL(f), size);
}
int f_lock(sqlite3_file* f, int level) {
  if (fault(FF(f), "ioerr")) return SQLITE_IOERR_LOCK;
  if (fault(FF(f), "busy")) return SQLITE_BUSY;
  return REAL(f)->pMethods->xLock(REAL(f), level);
}
int f_unlock(sqlite3_file* f, int level) { return REAL(f)->pMethods->xUnlock(REAL(f), level); }
int f_check(sqlite3_file* f, int* out) { return REAL(f)->pMethods->xCheckReservedLock(REAL(f), out); }
int f_fcntl(sqlite3_file* f, int op, void* arg) {
  // A size hint may grow the real file at once (with a chunk size set): in power-cut mode the
  // size changes only through the overlay. It is a hint; ignoring it is allowed.
  if (FF(f)->overlay && op == SQLITE_FCNTL_SIZE_HINT) return SQLITE_OK;
  return REAL(f)->pMethods->xFileControl(REAL(f), op, arg);
}
int f_sector(sqlite3_file* f) { return REAL(f)->pMethods->xSectorSize(REAL(f)); }
int f_dev(sqlite3_file* f) { return REAL(f)->pMethods->xDeviceCharacteristics(REAL(f)); }
int f_shm_map(sqlite3_file* f, int pg, int sz, int extend, void volatile** pp) {
  if (fault(FF(f), "ioerr")) return SQLITE_IOERR_SHMMAP;
  return REAL(f)->pMethods->xShmMap(REAL(f), pg, sz, extend, pp);
}
int f_shm_lock(sqlite3_file* f, int offset, int n, int flags) {
  // Every transaction takes a shared-memory lock in WAL mode, even one answered from the page
  // cache: failing here makes the fault visible at once.
  if ((flags & SQLITE_SHM_LOCK) && fault(FF(f), "ioerr")) return SQLITE_IOERR_SHMLOCK;
  if ((flags & SQLITE_SHM_LOCK) && fault(FF(f), "busy")) return SQLITE_BUSY;
  return REAL(f)->pMethods->xShmLock(REAL(f), offset, n, flags);
}
void f_shm_barrier(sqlite3_file* f) { REAL(f)->pMethods->xShmBarrier(REAL(f)); }
int f_shm_unmap(sqlite3_file* f, int del) { return REAL(f)->pMethods->xShmUnmap(REAL(f), del); }
int f_fetch(sqlite3_file* f, sqlite3_int64 off, int n, void** pp) {
  if (FF(f)->overlay || fault(FF(f), "ioerr")) {
    *pp = nullptr;  // no memory mapping: every read goes through f_read
    return SQLITE_OK;
  }
  return REAL(f)->pMethods->xFetch(REAL(f), off, n, pp);
}
int f_unfetch(sqlite3_file* f, sqlite3_int64 off, void* p) { return REAL(f)->pMethods->xUnfetch(REAL(f), off, p); }

const sqlite3_io_methods g_methods = {3,        f_close,       f_read,      f_write,  f_truncate, f_sync,
                                      f_size,   f_lock,        f_unlock,    f_check,  f_fcntl,    f_sector,
                                      f_dev,    f_shm_map,     f_shm_lock,  f_shm_barrier, f_shm_unmap,
                                      f_fetch,  f_unfetch};
// Version 1 has no shared memory: SQLite cannot use WAL on such a file.
const sqlite3_io_methods g_methods_no_wal = {1,      f_close,  f_read,  f_write, f_truncate, f_sync,
                                             f_size, f_lock,   f_unlock, f_check, f_fcntl,   f_sector,
                                             f_dev,  nullptr,  nullptr, nullptr, nullptr,   nullptr,
                                             nullptr};

// Power-cut mode covers the database file and its WAL (a rollback journal is not used in WAL
// mode, temporary files do not outlive the process anyway).
bool power_cut(const char* name, int flags) {
  return g_power_cut && (flags & (SQLITE_OPEN_MAIN_DB | SQLITE_OPEN_WAL)) &&
         std::strcmp(name, g_power_cut) == 0;
}

void base_name(const char* path, char* out, std::size_t n) {
  const char* slash = path ? std::strrchr(path, '/') : nullptr;
  const char* b = slash ? slash + 1 : (path ? path : "");
  std::size_t len = std::strlen(b);
  if (len > 4 && std::strcmp(b + len - 4, "-wal") == 0) len -= 4;
  else if (len > 4 && std::strcmp(b + len - 4, "-shm") == 0) len -= 4;
  else if (len > 8 && std::strcmp(b + len - 8, "-journal") == 0) len -= 8;
  if (len >= n) len = n - 1;
  std::memcpy(out, b, len);
  out[len] = 0;
}

int v_open(sqlite3_vfs* vfs, const char* name, sqlite3_file* file, int flags, int* out_flags) {
  auto* f = FF(file);
  (void)vfs;
  f->base.pMethods = nullptr;
  f->real = reinterpret_cast<sqlite3_file*>(f + 1);
  base_name(name, f->name, sizeof f->name);
  f->overlay = name && power_cut(f->name, flags) ? &unsynced_overlay::of(name) : nullptr;
  int rc = g_real->xOpen(g_real, name, f->real, flags, out_flags);
  bool no_wal = (flags & SQLITE_OPEN_MAIN_DB) && fault(f, "nowal");
  f->base.pMethods = !f->real->pMethods ? nullptr : no_wal ? &g_methods_no_wal : &g_methods;
  return rc;
}
int v_delete(sqlite3_vfs* v, const char* n, int sync) {
  (void)v;
  char name[128];
  base_name(n, name, sizeof name);
  if (n && power_cut(name, SQLITE_OPEN_WAL)) unsynced_overlay::of(n).forget();
  return g_real->xDelete(g_real, n, sync);
}
int v_access(sqlite3_vfs* v, const char* n, int fl, int* out) { (void)v; return g_real->xAccess(g_real, n, fl, out); }
int v_full(sqlite3_vfs* v, const char* n, int sz, char* out) { (void)v; return g_real->xFullPathname(g_real, n, sz, out); }
void* v_dlopen(sqlite3_vfs* v, const char* n) { (void)v; return g_real->xDlOpen(g_real, n); }
void v_dlerror(sqlite3_vfs* v, int n, char* msg) { (void)v; g_real->xDlError(g_real, n, msg); }
void (*v_dlsym(sqlite3_vfs* v, void* h, const char* s))(void) { (void)v; return g_real->xDlSym(g_real, h, s); }
void v_dlclose(sqlite3_vfs* v, void* h) { (void)v; g_real->xDlClose(g_real, h); }
int v_random(sqlite3_vfs* v, int n, char* out) { (void)v; return g_real->xRandomness(g_real, n, out); }
int v_sleep(sqlite3_vfs* v, int us) { (void)v; return g_real->xSleep(g_real, us); }
int v_time(sqlite3_vfs* v, double* t) { (void)v; return g_real->xCurrentTime(g_real, t); }
int v_error(sqlite3_vfs* v, int n, char* s) { (void)v; return g_real->xGetLastError(g_real, n, s); }
int v_time64(sqlite3_vfs* v, sqlite3_int64* t) { (void)v; return g_real->xCurrentTimeInt64(g_real, t); }

sqlite3_vfs g_vfs;

}  // namespace

__attribute__((constructor)) static void faulty_vfs_init() {
  g_dir = getenv("RSGATE_FAULT_DIR");
  if (g_dir && !*g_dir) g_dir = nullptr;
  g_power_cut = getenv("RSGATE_POWER_CUT");
  if (g_power_cut && !*g_power_cut) g_power_cut = nullptr;
  if (!g_dir && !g_power_cut) return;
  g_real = sqlite3_vfs_find(nullptr);
  if (!g_real) return;
  // Said once on stderr, so a test can tell the shim was loaded.
  if (g_power_cut)
    std::fprintf(stderr, "faulty_vfs: power-cut mode: writes to %s reach the disk only when synced\n",
                 g_power_cut);
  g_vfs.iVersion = 2;
  g_vfs.szOsFile = static_cast<int>(sizeof(faulty_file)) + g_real->szOsFile;
  g_vfs.mxPathname = g_real->mxPathname;
  g_vfs.zName = "rsgate-faulty";
  g_vfs.xOpen = v_open;
  g_vfs.xDelete = v_delete;
  g_vfs.xAccess = v_access;
  g_vfs.xFullPathname = v_full;
  g_vfs.xDlOpen = v_dlopen;
  g_vfs.xDlError = v_dlerror;
  g_vfs.xDlSym = v_dlsym;
  g_vfs.xDlClose = v_dlclose;
  g_vfs.xRandomness = v_random;
  g_vfs.xSleep = v_sleep;
  g_vfs.xCurrentTime = v_time;
  g_vfs.xGetLastError = v_error;
  g_vfs.xCurrentTimeInt64 = v_time64;
  sqlite3_vfs_register(&g_vfs, 1);
}
