// Test support: a TCP echo server on 127.0.0.1 (an ephemeral port) that sends back every
// byte it reads and half-closes when its peer does — a stand-in customer target for channel
// tests. Blocking sockets, one thread per connection; stop() (or the destructor) ends it.
#pragma once
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <mutex>
#include <stdexcept>
#include <thread>
#include <vector>

#include "tests/support/loopback.hpp"

namespace rsgate::test {

class echo_server {
 public:
  echo_server() {
    fd_ = listen_loopback(port_, "echo_server");
    acceptor_ = std::thread([this] { accept_loop(); });
  }
  ~echo_server() { stop(); }
  echo_server(const echo_server&) = delete;
  echo_server& operator=(const echo_server&) = delete;
  [[nodiscard]] std::uint16_t port() const { return port_; }
  // Connections accepted so far.
  [[nodiscard]] std::size_t connections() {
    std::lock_guard lock(mu_);
    return conns_.size();
  }
  void stop() {
    if (stopped_.exchange(true)) return;
    ::shutdown(fd_, SHUT_RDWR);
    ::close(fd_);
    acceptor_.join();
    std::lock_guard lock(mu_);
    for (int c : conns_) ::shutdown(c, SHUT_RDWR);
    for (auto& t : workers_) t.join();
    for (int c : conns_) ::close(c);
  }

 private:
  void accept_loop() {
    for (;;) {
      int c = ::accept4(fd_, nullptr, nullptr, SOCK_CLOEXEC);
      if (c < 0) return;
      std::lock_guard lock(mu_);
      conns_.push_back(c);
      workers_.emplace_back([c] {
        char buf[65536];
        for (;;) {
          auto n = ::read(c, buf, sizeof buf);
          if (n <= 0) break;
          for (ssize_t off = 0; off < n;) {
            auto w = ::write(c, buf + off, static_cast<size_t>(n - off));
            if (w <= 0) return;
            off += w;
          }
        }
        ::shutdown(c, SHUT_WR);
      });
    }
  }
  int fd_ = -1;
  std::uint16_t port_ = 0;
  std::atomic<bool> stopped_{false};
  std::thread acceptor_;
  std::mutex mu_;
  std::vector<int> conns_;
  std::vector<std::thread> workers_;
};

// Connects to 127.0.0.1:port; -1 on failure.
inline int connect_local(std::uint16_t port) {
  int s = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(s, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    ::close(s);
    return -1;
  }
  return s;
}

// Writes all of `data` to `s`; false at the first failure.
inline bool write_all(int s, const std::vector<std::uint8_t>& data) {
  for (size_t off = 0; off < data.size();) {
    auto w = ::write(s, data.data() + off, data.size() - off);
    if (w <= 0) return false;
    off += static_cast<size_t>(w);
  }
  return true;
}

// Sends `data` (then half-closes) while reading everything back until EOF; returns it.
inline std::vector<std::uint8_t> round_trip(int s, const std::vector<std::uint8_t>& data) {
  std::vector<std::uint8_t> got;
  std::thread reader([&] {
    std::uint8_t buf[65536];
    for (;;) {
      auto n = ::read(s, buf, sizeof buf);
      if (n <= 0) break;
      got.insert(got.end(), buf, buf + n);
    }
  });
  (void)write_all(s, data);  // a short write shows in what comes back
  ::shutdown(s, SHUT_WR);
  reader.join();
  return got;
}

// Sends `data` while reading as many bytes back; the connection stays open.
inline std::vector<std::uint8_t> echo_back(int s, const std::vector<std::uint8_t>& data) {
  std::vector<std::uint8_t> got;
  std::thread reader([&] {
    std::uint8_t buf[65536];
    while (got.size() < data.size()) {
      auto n = ::read(s, buf, std::min(sizeof buf, data.size() - got.size()));
      if (n <= 0) break;
      got.insert(got.end(), buf, buf + n);
    }
  });
  (void)write_all(s, data);
  reader.join();
  return got;
}

}  // namespace rsgate::test
