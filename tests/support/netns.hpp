// Test support: network namespaces and interfaces for the network-fault tests, configured with
// the classic ioctls (no iproute2 needed). Each returns an empty string on success, else what
// failed with errno's text, so a test can say why its environment cannot run it.
#pragma once
#include <arpa/inet.h>
#include <fcntl.h>
#include <linux/if_tun.h>
#include <net/if.h>
#include <netinet/in.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>

namespace rsgate::test {

inline std::string errno_text(const std::string& what) { return what + ": " + std::strerror(errno); }

// Brings `name` up; with `addr` (IPv4 literal) it first gets that address with a /24 mask
// (the kernel adds the /24's route through it).
inline std::string interface_up(const std::string& name, const char* addr = nullptr) {
  int s = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (s < 0) return errno_text("socket");
  ifreq ifr{};
  std::strncpy(ifr.ifr_name, name.c_str(), IFNAMSIZ - 1);
  auto fail = [&](const std::string& what) {
    auto e = errno_text(what + " " + name);
    ::close(s);
    return e;
  };
  if (addr) {
    sockaddr_in sa{};
    sa.sin_family = AF_INET;
    if (::inet_pton(AF_INET, addr, &sa.sin_addr) != 1) return fail(std::string("bad address ") + addr + " for");
    std::memcpy(&ifr.ifr_addr, &sa, sizeof sa);
    if (::ioctl(s, SIOCSIFADDR, &ifr) != 0) return fail("SIOCSIFADDR");
    sa.sin_addr.s_addr = htonl(0xffffff00u);
    std::memcpy(&ifr.ifr_netmask, &sa, sizeof sa);
    if (::ioctl(s, SIOCSIFNETMASK, &ifr) != 0) return fail("SIOCSIFNETMASK");
  }
  if (::ioctl(s, SIOCGIFFLAGS, &ifr) != 0) return fail("SIOCGIFFLAGS");
  ifr.ifr_flags = static_cast<short>(ifr.ifr_flags | IFF_UP | IFF_RUNNING);
  if (::ioctl(s, SIOCSIFFLAGS, &ifr) != 0) return fail("SIOCSIFFLAGS");
  ::close(s);
  return {};
}

// A layer-3 TUN device named `name` in the calling thread's network namespace; its file
// descriptor (non-blocking) in `fd`.
inline std::string open_tun(const std::string& name, int& fd) {
  fd = ::open("/dev/net/tun", O_RDWR | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0) return errno_text("open /dev/net/tun");
  ifreq ifr{};
  ifr.ifr_flags = IFF_TUN | IFF_NO_PI;
  std::strncpy(ifr.ifr_name, name.c_str(), IFNAMSIZ - 1);
  if (::ioctl(fd, TUNSETIFF, &ifr) != 0) {
    auto e = errno_text("TUNSETIFF " + name);
    ::close(fd);
    fd = -1;
    return e;
  }
  return {};
}

}  // namespace rsgate::test
