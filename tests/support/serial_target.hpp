// Test support: a customer target that serves one TCP connection at a time (as sockperf's
// server and many appliance daemons do): the next connection is accepted only once the
// current one has ended. What it does with a connection is its `behaviour`, chosen before
// the connection arrives; it counts the bytes it read and wrote and records how each
// connection ended, so a test can wait until the target saw its end of a channel go away.
// One thread; poll() with short timeouts so stop() (or the destructor) always ends it.
#pragma once
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "tests/support/loopback.hpp"

namespace rsgate::test {

class serial_target {
 public:
  enum class behaviour {
    echo,             // sends back what it reads; half-closes after the peer's EOF
    reply_after_eof,  // reads to EOF, then sends everything back and closes
    reset_on_data,    // resets the connection (SO_LINGER 0) once it has read something
    stall,            // neither reads nor writes; waits for the peer to hang up or reset
    eof_then_reset,   // once it has read something: half-closes, then resets 300 ms later
    flood_then_reset, // once it has read something: writes until the peer takes nothing, then resets
  };
  // How the last connection ended, from the target's side.
  enum class ending { none, eof, reset, hangup, by_target };

  serial_target() {
    fd_ = listen_loopback(port_, "serial_target");
    thread_ = std::thread([this] { serve(); });
  }
  ~serial_target() { stop(); }
  serial_target(const serial_target&) = delete;
  serial_target& operator=(const serial_target&) = delete;

  [[nodiscard]] std::uint16_t port() const { return port_; }
  void set_behaviour(behaviour b) { behaviour_ = b; }  // for connections accepted from now on
  [[nodiscard]] int accepted() const { return accepted_; }
  [[nodiscard]] int ended() const { return ended_; }
  [[nodiscard]] ending last_ending() const { return last_ending_; }
  [[nodiscard]] std::size_t received() const { return received_; }  // by the current/last connection
  [[nodiscard]] std::size_t sent() const { return sent_; }
  void stop() {
    if (stopping_.exchange(true)) return;
    thread_.join();
    ::close(fd_);
  }

 private:
  // Waits for `events` on `fd` in short slices; false when stopping.
  bool wait(int fd, short events, short& revents) {
    while (!stopping_) {
      pollfd p{fd, events, 0};
      if (::poll(&p, 1, 50) > 0) {
        revents = p.revents;
        return true;
      }
    }
    return false;
  }
  void serve() {
    short rev = 0;
    while (wait(fd_, POLLIN, rev)) {
      int c = ::accept4(fd_, nullptr, nullptr, SOCK_CLOEXEC);
      if (c < 0) continue;
      received_ = 0;
      sent_ = 0;
      ++accepted_;
      auto how = handle(c, behaviour_.load());
      ::close(c);
      last_ending_ = how;
      ++ended_;
    }
  }
  ending handle(int c, behaviour b) {
    if (b == behaviour::stall) {
      short rev = 0;
      // POLLRDHUP: a FIN; POLLHUP/POLLERR: a reset. Data alone does not end the wait.
      while (wait(c, POLLRDHUP, rev))
        if (rev & (POLLERR | POLLHUP)) return ending::reset;
        else if (rev & POLLRDHUP) return ending::hangup;
      return ending::none;
    }
    std::vector<char> got;
    char buf[65536];
    short rev = 0;
    while (wait(c, POLLIN, rev)) {
      auto n = ::read(c, buf, sizeof buf);
      if (n < 0 && (errno == EAGAIN || errno == EINTR)) continue;
      if (n < 0) return ending::reset;
      if (n == 0) break;
      received_ += static_cast<std::size_t>(n);
      if (b == behaviour::eof_then_reset) {
        ::shutdown(c, SHUT_WR);
        std::this_thread::sleep_for(std::chrono::milliseconds(300));
      }
      if (b == behaviour::flood_then_reset) flood(c);
      if (b == behaviour::reset_on_data || b == behaviour::eof_then_reset || b == behaviour::flood_then_reset) {
        linger l{1, 0};
        ::setsockopt(c, SOL_SOCKET, SO_LINGER, &l, sizeof l);
        return ending::by_target;
      }
      if (b == behaviour::reply_after_eof) {
        got.insert(got.end(), buf, buf + n);
        continue;
      }
      if (!write_all(c, buf, static_cast<std::size_t>(n))) return ending::reset;
    }
    if (stopping_) return ending::none;
    if (b == behaviour::reply_after_eof && !write_all(c, got.data(), got.size())) return ending::reset;
    ::shutdown(c, SHUT_WR);
    return ending::eof;
  }
  // Writes until nothing more is taken for half a second (at most 1 GiB).
  void flood(int c) {
    std::vector<char> chunk(65536, 'x');
    while (!stopping_ && sent_ < (1u << 30)) {
      pollfd p{c, POLLOUT, 0};
      if (::poll(&p, 1, 500) <= 0) return;
      auto w = ::send(c, chunk.data(), chunk.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
      if (w < 0 && (errno == EAGAIN || errno == EINTR)) continue;
      if (w <= 0) return;
      sent_ += static_cast<std::size_t>(w);
    }
  }
  bool write_all(int c, const char* p, std::size_t n) {
    for (std::size_t off = 0; off < n;) {
      short rev = 0;
      if (!wait(c, POLLOUT, rev)) return false;
      auto w = ::send(c, p + off, n - off, MSG_NOSIGNAL | MSG_DONTWAIT);
      if (w < 0 && (errno == EAGAIN || errno == EINTR)) continue;
      if (w <= 0) return false;
      off += static_cast<std::size_t>(w);
      sent_ += static_cast<std::size_t>(w);
    }
    return true;
  }

  int fd_ = -1;
  std::uint16_t port_ = 0;
  std::atomic<behaviour> behaviour_{behaviour::echo};
  std::atomic<bool> stopping_{false};
  std::atomic<int> accepted_{0}, ended_{0};
  std::atomic<ending> last_ending_{ending::none};
  std::atomic<std::size_t> received_{0}, sent_{0};
  std::thread thread_;
};

}  // namespace rsgate::test
