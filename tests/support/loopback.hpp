// Test support: a listening TCP socket on 127.0.0.1 with an ephemeral port, for the stand-in
// targets, gateways and listeners the tests run. Throws naming `who` when it cannot listen.
#pragma once
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdint>
#include <stdexcept>
#include <string>

namespace rsgate::test {

// Returns the listening socket; `port` is set to its port. `flags` are added to the socket's
// type (SOCK_NONBLOCK, for example).
inline int listen_loopback(std::uint16_t& port, const std::string& who, int backlog = 16, int flags = 0) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | flags, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  if (fd < 0 || ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 || ::listen(fd, backlog) != 0 ||
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) != 0) {
    if (fd >= 0) ::close(fd);
    throw std::runtime_error(who + ": cannot listen");
  }
  port = ntohs(a.sin_port);
  return fd;
}

}  // namespace rsgate::test
