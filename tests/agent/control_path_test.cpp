// The control socket's location and checks (issue 7, defect 18): the default is
// $XDG_RUNTIME_DIR or a private ~/.rsgate created 0700, never a guessable name under /tmp; a
// private directory with the wrong mode, a directory others can write to, and a file that is
// not this account's socket are refused.
#include "agent/control_path.hpp"

#include <catch2/catch.hpp>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "tests/support/process.hpp"

using namespace rsgate;
using namespace rsgate::agent;
namespace fs = std::filesystem;

namespace {

// Sets an environment variable for one scope (Catch2 runs a test case on one thread).
struct scoped_env {
  std::string name;
  std::optional<std::string> old;
  scoped_env(std::string n, const char* value) : name(std::move(n)) {
    if (const char* o = std::getenv(name.c_str())) old = o;
    if (value)
      ::setenv(name.c_str(), value, 1);
    else
      ::unsetenv(name.c_str());
  }
  ~scoped_env() {
    if (old)
      ::setenv(name.c_str(), old->c_str(), 1);
    else
      ::unsetenv(name.c_str());
  }
};

mode_t mode_of(const fs::path& p) {
  struct stat s{};
  REQUIRE(::stat(p.c_str(), &s) == 0);
  return s.st_mode & 07777;
}

void make_socket_file(const fs::path& p) {
  int fd = ::socket(AF_UNIX, SOCK_STREAM, 0);
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  std::snprintf(a.sun_path, sizeof a.sun_path, "%s", p.c_str());
  REQUIRE(::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
  ::close(fd);
}

}  // namespace

TEST_CASE("control path: XDG_RUNTIME_DIR first, else a private ~/.rsgate, never /tmp") {
  test::temp_dir t;
  scoped_env home("HOME", t.path().c_str());
  {
    scoped_env xdg("XDG_RUNTIME_DIR", "/run/user/4242");
    CHECK(default_control_path() == "/run/user/4242/rsgate-agent.sock");
  }
  scoped_env xdg("XDG_RUNTIME_DIR", nullptr);
  CHECK(default_control_path() == (t / ".rsgate/rsgate-agent.sock").string());
  CHECK(default_control_path().find("/tmp/rsgate-agent-") == std::string::npos);
}

TEST_CASE("control path: the private directory is created 0700 and refused with a wider mode") {
  test::temp_dir t;
  scoped_env home("HOME", t.path().c_str());
  scoped_env xdg("XDG_RUNTIME_DIR", nullptr);
  auto sock = default_control_path();
  CHECK(check_control_dir(sock, false).find("does not exist") != std::string::npos);  // commands never create it
  CHECK(check_control_dir(sock, true).empty());
  CHECK(mode_of(t / ".rsgate") == 0700);
  CHECK(check_control_dir(sock, false).empty());
  ::chmod((t / ".rsgate").c_str(), 0755);
  CHECK(check_control_dir(sock, true).find("mode 0700") != std::string::npos);
  CHECK(check_control_dir(sock, false).find("mode 0700") != std::string::npos);
  ::chmod((t / ".rsgate").c_str(), 0700);
  fs::remove(t / ".rsgate");
  fs::create_directory_symlink(t.path(), t / ".rsgate");  // a symbolic link is not the directory
  CHECK_FALSE(check_control_dir(sock, true).empty());
}

TEST_CASE("control path: another directory must not be writable by others unless sticky") {
  test::temp_dir t;
  auto d = t / "d";
  fs::create_directory(d);
  ::chmod(d.c_str(), 0700);
  CHECK(check_control_dir((d / "a.sock").string(), true).empty());
  ::chmod(d.c_str(), 0777);
  CHECK(check_control_dir((d / "a.sock").string(), true).find("writable by others") != std::string::npos);
  ::chmod(d.c_str(), 01777);  // like /tmp: others cannot remove or replace this account's socket
  CHECK(check_control_dir((d / "a.sock").string(), true).empty());
  CHECK_FALSE(check_control_dir((t / "missing/a.sock").string(), true).empty());
  CHECK_FALSE(check_control_dir("", true).empty());
}

TEST_CASE("control path: only a socket of this account is used or replaced") {
  test::temp_dir t;
  auto p = t / "agent.sock";
  CHECK(check_control_socket(p.string(), false).empty());  // absent: start may bind there
  CHECK_FALSE(check_control_socket(p.string(), true).empty());
  std::ofstream(p) << "not a socket";
  CHECK(check_control_socket(p.string(), false).find("is not a socket") != std::string::npos);
  fs::remove(p);
  make_socket_file(p);
  CHECK(check_control_socket(p.string(), true).empty());
  if (::getuid() == 0) {  // root can play the other account
    REQUIRE(::chown(p.c_str(), 65534, 65534) == 0);
    CHECK(check_control_socket(p.string(), true).find("belongs to another account") != std::string::npos);
    CHECK(check_control_socket(p.string(), false).find("belongs to another account") != std::string::npos);
  }
}
