// See process.hpp. posix_spawnp with pipes; poll() for deadlines.
#include "tests/support/process.hpp"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <iterator>
#include <stdexcept>
#include <thread>

extern char** environ;

namespace rsgate::test {
namespace {

using clk = std::chrono::steady_clock;

pid_t spawn(const std::vector<std::string>& argv, int in_fd, int out_fd, int err_fd) {
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  if (in_fd >= 0) posix_spawn_file_actions_adddup2(&fa, in_fd, 0);
  if (out_fd >= 0) posix_spawn_file_actions_adddup2(&fa, out_fd, 1);
  if (err_fd >= 0) posix_spawn_file_actions_adddup2(&fa, err_fd, 2);
  std::vector<char*> args;
  for (auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  pid_t pid = -1;
  int rc = posix_spawnp(&pid, args[0], &fa, nullptr, args.data(), environ);
  posix_spawn_file_actions_destroy(&fa);
  if (rc != 0) throw std::runtime_error("cannot spawn " + argv[0]);
  return pid;
}

int decode(int status, int* sig) {
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (sig) *sig = WIFSIGNALED(status) ? WTERMSIG(status) : 0;
  return -1;
}

}  // namespace

run_result run(const std::vector<std::string>& argv, const std::string& input,
               std::chrono::milliseconds timeout) {
  int in[2], out[2], err[2];
  if (pipe2(in, O_CLOEXEC) || pipe2(out, O_CLOEXEC) || pipe2(err, O_CLOEXEC))
    throw std::runtime_error("pipe");
  pid_t pid = spawn(argv, in[0], out[1], err[1]);
  close(in[0]);
  close(out[1]);
  close(err[1]);
  // Small inputs only: write all, then close.
  if (!input.empty()) {
    ::signal(SIGPIPE, SIG_IGN);
    [[maybe_unused]] auto n = write(in[1], input.data(), input.size());
  }
  close(in[1]);
  run_result r;
  auto deadline = clk::now() + timeout;
  pollfd fds[2] = {{out[0], POLLIN, 0}, {err[0], POLLIN, 0}};
  int open_fds = 2;
  bool killed = false;
  while (open_fds > 0) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - clk::now()).count();
    if (left <= 0) {
      kill(pid, SIGKILL);
      killed = true;
      break;
    }
    if (poll(fds, 2, static_cast<int>(std::min<long long>(left, 1000))) < 0) continue;
    for (auto& p : fds) {
      if (p.fd < 0 || !(p.revents & (POLLIN | POLLHUP | POLLERR))) continue;
      char buf[65536];
      ssize_t n = read(p.fd, buf, sizeof buf);
      if (n <= 0) {
        close(p.fd);
        p.fd = -1;
        --open_fds;
      } else {
        (&p == &fds[0] ? r.out : r.err).append(buf, static_cast<size_t>(n));
      }
    }
  }
  for (auto& p : fds)
    if (p.fd >= 0) close(p.fd);
  int status = 0;
  waitpid(pid, &status, 0);
  r.exit_code = decode(status, &r.signal);
  if (killed) r.err += "\n[test support: killed after timeout]";
  return r;
}

child::child(const std::vector<std::string>& argv, const std::filesystem::path& stderr_file) {
  int out[2];
  if (pipe2(out, O_CLOEXEC)) throw std::runtime_error("pipe");
  int errfd = open(stderr_file.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
  int devnull = open("/dev/null", O_RDONLY | O_CLOEXEC);
  pid_ = spawn(argv, devnull, out[1], errfd);
  close(out[1]);
  close(errfd);
  close(devnull);
  out_fd_ = out[0];
  stderr_file_ = stderr_file;
}

child::~child() {
  if (!reaped_ && pid_ > 0) {
    kill(pid_, SIGKILL);
    waitpid(pid_, &status_, 0);
  }
  if (out_fd_ >= 0) close(out_fd_);
}

std::optional<std::string> child::read_line(std::chrono::milliseconds timeout) {
  auto deadline = clk::now() + timeout;
  for (;;) {
    auto nl = buffer_.find('\n');
    if (nl != std::string::npos) {
      auto line = buffer_.substr(0, nl);
      buffer_.erase(0, nl + 1);
      recent_.push_back(line);
      if (recent_.size() > 40) recent_.pop_front();
      return line;
    }
    if (out_fd_ < 0) return std::nullopt;
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - clk::now()).count();
    if (left <= 0) return std::nullopt;
    pollfd p{out_fd_, POLLIN, 0};
    if (poll(&p, 1, static_cast<int>(left)) <= 0) continue;
    char buf[4096];
    ssize_t n = read(out_fd_, buf, sizeof buf);
    if (n <= 0) {
      close(out_fd_);
      out_fd_ = -1;
      if (buffer_.empty()) return std::nullopt;
      auto rest = buffer_;
      buffer_.clear();
      return rest;
    }
    buffer_.append(buf, static_cast<size_t>(n));
  }
}

std::optional<std::string> child::wait_for(const std::string& needle,
                                           std::chrono::milliseconds timeout) {
  auto deadline = clk::now() + timeout;
  while (clk::now() < deadline) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - clk::now());
    auto line = read_line(left);
    if (!line) return std::nullopt;
    if (line->find(needle) != std::string::npos) return line;
  }
  return std::nullopt;
}

std::string child::recent_output() const {
  std::string out = "--- its last lines on stdout:\n";
  for (auto& l : recent_) out += l + "\n";
  out += buffer_;
  std::ifstream in(stderr_file_, std::ios::binary);
  std::string err((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (err.size() > 4096) err.erase(0, err.size() - 4096).insert(0, "…");
  out += "--- the end of its stderr (" + stderr_file_.string() + "):\n" + err;
  return out;
}

void child::signal(int sig) {
  if (!reaped_ && pid_ > 0) kill(pid_, sig);
}

std::optional<int> child::wait(std::chrono::milliseconds timeout) {
  auto deadline = clk::now() + timeout;
  while (!reaped_) {
    pid_t r = waitpid(pid_, &status_, WNOHANG);
    if (r == pid_) {
      reaped_ = true;
      break;
    }
    if (clk::now() >= deadline) return std::nullopt;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  int sig = 0;
  int code = decode(status_, &sig);
  return code >= 0 ? code : -sig;
}

temp_dir::temp_dir() {
  auto base = std::filesystem::temp_directory_path() / "rsgate-test-XXXXXX";
  std::string tmpl = base.string();
  if (!mkdtemp(tmpl.data())) throw std::runtime_error("mkdtemp");
  path_ = tmpl;
}

temp_dir::~temp_dir() {
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
}

// RSGATE_TEST_RSGATE / RSGATE_TEST_AGENT point the tests at other builds, e.g. an older
// commit's, to show that a regression test fails there.
std::string rsgate_binary() {
  const char* o = std::getenv("RSGATE_TEST_RSGATE");
  return o && *o ? o : RSGATE_BINARY;
}
std::string agent_binary() {
  const char* o = std::getenv("RSGATE_TEST_AGENT");
  return o && *o ? o : RSGATE_AGENT_BINARY;
}
std::string helper_binary(const std::string& name) {
  return std::string(RSGATE_HELPER_DIR) + "/" + name;
}

std::string source_path(const std::string& relative) {
  return std::string(RSGATE_SOURCE_DIR) + "/" + relative;
}

std::size_t line_count(const std::string& text) {
  std::size_t n = 0;
  for (char c : text) n += c == '\n';
  return n;
}

}  // namespace rsgate::test
