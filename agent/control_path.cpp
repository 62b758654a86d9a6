// See control_path.hpp.
#include "agent/control_path.hpp"

#include <fmt/format.h>
#include <pwd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>

namespace rsgate::agent {
namespace {

std::string home_dir() {
  if (const char* h = std::getenv("HOME"); h && *h) return h;
  if (const passwd* pw = ::getpwuid(::getuid()); pw && pw->pw_dir && *pw->pw_dir) return pw->pw_dir;
  return {};
}

std::string parent_of(const std::string& path) {
  auto p = std::filesystem::path(path).parent_path();
  return p.empty() ? std::string(".") : p.string();
}

std::string check_private_dir(const std::string& dir, bool create) {
  struct stat s{};
  if (::lstat(dir.c_str(), &s) != 0) {
    if (errno != ENOENT) return fmt::format("cannot check {}: {}", dir, std::strerror(errno));
    if (!create) return fmt::format("{} does not exist (is an agent running?)", dir);
    if (::mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST)
      return fmt::format("cannot create {}: {}", dir, std::strerror(errno));
    if (::lstat(dir.c_str(), &s) != 0) return fmt::format("cannot check {}: {}", dir, std::strerror(errno));
  }
  if (!S_ISDIR(s.st_mode) || s.st_uid != ::getuid() || (s.st_mode & 077) != 0)
    return fmt::format("{} must be a directory of this account with mode 0700 (no access for group or others)", dir);
  return {};
}

}  // namespace

std::string private_dir() {
  auto home = home_dir();
  return home.empty() ? std::string() : home + "/.rsgate";
}

std::string default_control_path() {
  if (const char* d = std::getenv("XDG_RUNTIME_DIR"); d && *d) return std::string(d) + "/rsgate-agent.sock";
  auto dir = private_dir();
  return dir.empty() ? std::string() : dir + "/rsgate-agent.sock";
}

std::string check_control_dir(const std::string& socket_path, bool create) {
  if (socket_path.empty())
    return "no control socket path: set XDG_RUNTIME_DIR or HOME, or give --control PATH";
  auto dir = parent_of(socket_path);
  if (auto mine = private_dir(); !mine.empty() && std::filesystem::path(dir) == std::filesystem::path(mine))
    return check_private_dir(dir, create);
  struct stat s{};
  if (::stat(dir.c_str(), &s) != 0) return fmt::format("cannot use the directory {}: {}", dir, std::strerror(errno));
  if (!S_ISDIR(s.st_mode)) return fmt::format("{} is not a directory", dir);
  if (s.st_uid != ::getuid() && s.st_uid != 0)
    return fmt::format("the control socket's directory {} belongs to another account", dir);
  if ((s.st_mode & (S_IWGRP | S_IWOTH)) && !(s.st_mode & S_ISVTX))
    return fmt::format("the control socket's directory {} is writable by others", dir);
  return {};
}

std::string check_control_socket(const std::string& socket_path, bool must_exist) {
  struct stat s{};
  if (::lstat(socket_path.c_str(), &s) != 0) {
    if (errno == ENOENT && !must_exist) return {};
    return fmt::format("no running agent at {} ({})", socket_path, std::strerror(errno));
  }
  if (!S_ISSOCK(s.st_mode)) return fmt::format("{} is not a socket", socket_path);
  if (s.st_uid != ::getuid()) return fmt::format("the socket {} belongs to another account", socket_path);
  return {};
}

std::optional<unsigned> peer_uid(int fd) {
  ucred c{};
  socklen_t len = sizeof c;
  if (::getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &c, &len) != 0) return std::nullopt;
  return static_cast<unsigned>(c.uid);
}

}  // namespace rsgate::agent
