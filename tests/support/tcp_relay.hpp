// Test support: a TCP relay on 127.0.0.1 (an ephemeral port) in front of another loopback
// port — the customer's network between an agent and its gateway, which a test can break:
// cut() closes every relayed connection (both ends see the close at once), refuse(true) closes
// every new connection as soon as it is accepted (a gateway that cannot be reached), and
// stall(true) stops moving bytes without closing anything (a pulled cable: only the
// keepalives can tell). Blocking sockets, two threads per relayed connection; stop() (or the
// destructor) ends everything.
#pragma once
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cstdint>
#include <mutex>
#include <thread>
#include <vector>

#include "tests/support/echo_server.hpp"
#include "tests/support/loopback.hpp"

namespace rsgate::test {

class tcp_relay {
 public:
  explicit tcp_relay(std::uint16_t upstream) : upstream_(upstream) {
    fd_ = listen_loopback(port_, "tcp_relay");
    acceptor_ = std::thread([this] { accept_loop(); });
  }
  ~tcp_relay() { stop(); }
  tcp_relay(const tcp_relay&) = delete;
  tcp_relay& operator=(const tcp_relay&) = delete;

  [[nodiscard]] std::uint16_t port() const { return port_; }
  // Connections accepted so far (refused ones included).
  [[nodiscard]] int accepted() const { return accepted_; }
  void refuse(bool on) { refusing_ = on; }
  // Where new connections go from now on (a gateway restarted on another port).
  void set_upstream(std::uint16_t port) { upstream_ = port; }
  void stall(bool on) { stalled_ = on; }
  // Closes every relayed connection now; the relay goes on accepting.
  void cut() {
    std::lock_guard lock(mu_);
    for (auto& p : pairs_) {
      ::shutdown(p.first, SHUT_RDWR);
      ::shutdown(p.second, SHUT_RDWR);
    }
  }
  void stop() {
    if (stopped_.exchange(true)) return;
    ::shutdown(fd_, SHUT_RDWR);
    ::close(fd_);
    acceptor_.join();
    cut();
    std::lock_guard lock(mu_);
    for (auto& t : workers_) t.join();
    for (auto& p : pairs_) {
      ::close(p.first);
      ::close(p.second);
    }
  }

 private:
  void accept_loop() {
    for (;;) {
      int c = ::accept4(fd_, nullptr, nullptr, SOCK_CLOEXEC);
      if (c < 0) return;
      ++accepted_;
      int u = refusing_ ? -1 : connect_local(upstream_);
      if (u < 0) {
        ::close(c);
        continue;
      }
      std::lock_guard lock(mu_);
      pairs_.emplace_back(c, u);
      workers_.emplace_back([this, c, u] { pump(c, u); });
      workers_.emplace_back([this, c, u] { pump(u, c); });
    }
  }
  // Moves bytes from `from` to `to` until either fails; then both directions end.
  void pump(int from, int to) {
    char buf[65536];
    while (!stopped_) {
      pollfd p{from, POLLIN, 0};
      if (stalled_ || ::poll(&p, 1, 100) <= 0) {
        if (stalled_) std::this_thread::sleep_for(std::chrono::milliseconds(50));
        continue;
      }
      auto n = ::read(from, buf, sizeof buf);
      if (n <= 0) break;
      for (ssize_t off = 0; off < n;) {
        auto w = ::send(to, buf + off, static_cast<size_t>(n - off), MSG_NOSIGNAL);
        if (w <= 0) {
          n = -1;
          break;
        }
        off += w;
      }
      if (n < 0) break;
    }
    ::shutdown(from, SHUT_RDWR);
    ::shutdown(to, SHUT_RDWR);
  }

  std::atomic<std::uint16_t> upstream_;
  int fd_ = -1;
  std::uint16_t port_ = 0;
  std::atomic<bool> stopped_{false}, refusing_{false}, stalled_{false};
  std::atomic<int> accepted_{0};
  std::thread acceptor_;
  std::mutex mu_;
  std::vector<std::pair<int, int>> pairs_;
  std::vector<std::thread> workers_;
};

}  // namespace rsgate::test
