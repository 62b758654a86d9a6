// Test support: "the disk is full" on demand. Lowers this process's file-size limit
// (RLIMIT_FSIZE) so every write past `bytes` fails with EFBIG — SQLite reports a write error
// exactly as on a full disk — and restores it on lift() or destruction. SIGXFSZ is ignored so
// the failure is an error code, not a signal.
#pragma once
#include <signal.h>
#include <sys/resource.h>

#include <stdexcept>

namespace rsgate::test {

class fsize_limit {
 public:
  explicit fsize_limit(rlim_t bytes) {
    ::signal(SIGXFSZ, SIG_IGN);
    ::getrlimit(RLIMIT_FSIZE, &saved_);
    rlimit l = saved_;
    l.rlim_cur = bytes;
    if (::setrlimit(RLIMIT_FSIZE, &l) != 0) throw std::runtime_error("setrlimit(RLIMIT_FSIZE) failed");
  }
  void lift() { ::setrlimit(RLIMIT_FSIZE, &saved_); }
  ~fsize_limit() { lift(); }
  fsize_limit(const fsize_limit&) = delete;
  fsize_limit& operator=(const fsize_limit&) = delete;

 private:
  rlimit saved_{};
};

}  // namespace rsgate::test
