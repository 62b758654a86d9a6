// Test support: run real programs (rsgate, sqlite3, curl, prlimit) and talk to long-running
// children through pipes, with deadlines, so integration tests never hang. Children are
// always stopped by PID.
#pragma once
#include <signal.h>
#include <sys/types.h>

#include <chrono>
#include <deque>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

namespace rsgate::test {

struct run_result {
  int exit_code = -1;  // -1 when killed by a signal
  int signal = 0;
  std::string out;
  std::string err;
};

// Runs argv[0] (looked up in PATH) to completion, feeding `input` on stdin. Kills it with
// SIGKILL after `timeout`.
run_result run(const std::vector<std::string>& argv, const std::string& input = "",
               std::chrono::milliseconds timeout = std::chrono::seconds(60));

// A child whose stdout is read line by line; stderr goes to a file for diagnostics.
class child {
 public:
  explicit child(const std::vector<std::string>& argv,
                 const std::filesystem::path& stderr_file = "/dev/null");
  ~child();  // SIGKILL and reap if still running
  child(const child&) = delete;
  child& operator=(const child&) = delete;

  // Next line of stdout without the newline; nullopt at EOF or when the deadline passes.
  std::optional<std::string> read_line(std::chrono::milliseconds timeout);
  // Reads lines until one contains `needle`; returns that line.
  std::optional<std::string> wait_for(const std::string& needle, std::chrono::milliseconds timeout);
  // For a failing test's message: the last lines read from stdout and the end of the stderr
  // file, which is gone with the test's temporary directory.
  [[nodiscard]] std::string recent_output() const;
  void signal(int sig);
  // Waits for exit; returns exit code (or -signal) or nullopt on timeout.
  std::optional<int> wait(std::chrono::milliseconds timeout);
  [[nodiscard]] pid_t pid() const { return pid_; }

 private:
  pid_t pid_ = -1;
  int out_fd_ = -1;
  std::string buffer_;
  std::filesystem::path stderr_file_;
  std::deque<std::string> recent_;  // the last lines read_line returned
  bool reaped_ = false;
  int status_ = 0;
};

class temp_dir {
 public:
  temp_dir();
  ~temp_dir();
  temp_dir(const temp_dir&) = delete;
  temp_dir& operator=(const temp_dir&) = delete;
  [[nodiscard]] const std::filesystem::path& path() const { return path_; }
  std::filesystem::path operator/(const std::string& s) const { return path_ / s; }

 private:
  std::filesystem::path path_;
};

// Paths of the binaries under test (set by CMake).
std::string rsgate_binary();
std::string agent_binary();
std::string helper_binary(const std::string& name);
// A file of the source tree, e.g. "tests/integration/verify_journal.py".
std::string source_path(const std::string& relative);

// Counts lines of `text`.
std::size_t line_count(const std::string& text);

}  // namespace rsgate::test
