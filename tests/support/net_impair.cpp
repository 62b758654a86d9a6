// Test support: a bad network between two network namespaces, in user space. It stands in for
// `tc qdisc ... netem`, which this class of machine's kernel is built without
// (CONFIG_NET_SCH_NETEM is not set): the kernels on both sides run real TCP over a link that
// loses, delays and reorders IP packets, so TCP retransmits, backs off and reassembles exactly
// as it would over netem.
//
//   net_impair --outer ADDR --inner ADDR [--loss P] [--delay-ms D] [--jitter-ms J]
//              [--reorder P] [--seed N]
//
// It creates a TUN device `rsgo` with ADDR/24 in the caller's namespace, then moves itself into
// a new network namespace (loopback up) with a TUN device `rsgi` and the inner ADDR/24, and
// forwards every IP packet between the two devices:
// - each packet is lost with probability P (`--loss`);
// - the rest wait D ms plus a uniform 0..J ms (`--delay-ms`, `--jitter-ms`), in order within
//   their direction, except that with probability `--reorder` a packet goes at once, ahead of
//   those waiting;
// - at most 4096 packets wait per direction; beyond that they are dropped, as a router's queue
//   would.
// Programs run in the inner namespace with `nsenter --net=/proc/PID/ns/net` (PID: this one's).
//
// It prints `ready PID` once both devices are up. SIGUSR1 starts a blackout (every packet lost,
// as when a cable is pulled; prints `blackout on`), SIGUSR2 ends it (`blackout off`), SIGTERM
// prints `stats forwarded=N dropped=N reordered=N blackout_dropped=N overflow=N` and exits 0.
// It dies with its parent (PR_SET_PDEATHSIG).
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <random>
#include <string>
#include <vector>

#include "tests/support/netns.hpp"

namespace {

using clock_type = std::chrono::steady_clock;
using namespace rsgate::test;

constexpr std::size_t kMaxQueued = 4096;
constexpr std::size_t kMaxPacket = 65536;

struct options {
  std::string outer, inner;
  double loss = 0, reorder = 0;
  int delay_ms = 0, jitter_ms = 0;
  std::uint64_t seed = 1;
};

struct packet {
  clock_type::time_point due;
  std::vector<std::uint8_t> bytes;
};

struct counters {
  unsigned long long forwarded = 0, dropped = 0, reordered = 0, blackout_dropped = 0, overflow = 0;
};

[[noreturn]] void die(const std::string& why) {
  std::fprintf(stderr, "net_impair: %s\n", why.c_str());
  std::exit(2);
}

double parse_probability(const char* s) {
  char* end = nullptr;
  double v = std::strtod(s, &end);
  if (end == s || *end != '\0' || !(v >= 0 && v <= 1)) die(std::string("not a probability in [0, 1]: ") + s);
  return v;
}

int parse_ms(const char* s) {
  char* end = nullptr;
  long v = std::strtol(s, &end, 10);
  if (end == s || *end != '\0' || v < 0 || v > 10000) die(std::string("not a delay of 0-10000 ms: ") + s);
  return static_cast<int>(v);
}

options parse(int argc, char** argv) {
  options o;
  for (int i = 1; i < argc; i += 2) {
    std::string k = argv[i];
    if (i + 1 >= argc) die(k + " needs a value");
    const char* v = argv[i + 1];
    if (k == "--outer") o.outer = v;
    else if (k == "--inner") o.inner = v;
    else if (k == "--loss") o.loss = parse_probability(v);
    else if (k == "--reorder") o.reorder = parse_probability(v);
    else if (k == "--delay-ms") o.delay_ms = parse_ms(v);
    else if (k == "--jitter-ms") o.jitter_ms = parse_ms(v);
    else if (k == "--seed") o.seed = std::strtoull(v, nullptr, 10);
    else die("unknown option " + k);
  }
  if (o.outer.empty() || o.inner.empty()) die("--outer and --inner are required");
  return o;
}

void check(const std::string& error) {
  if (!error.empty()) die(error);
}

}  // namespace

int main(int argc, char** argv) {
  const options o = parse(argc, argv);
  ::prctl(PR_SET_PDEATHSIG, SIGKILL);
  sigset_t signals;
  sigemptyset(&signals);
  for (int s : {SIGUSR1, SIGUSR2, SIGTERM}) sigaddset(&signals, s);
  sigprocmask(SIG_BLOCK, &signals, nullptr);
  int sfd = ::signalfd(-1, &signals, SFD_CLOEXEC | SFD_NONBLOCK);
  if (sfd < 0) die(errno_text("signalfd"));

  int tun[2] = {-1, -1};  // 0: outer (the caller's namespace), 1: inner (the new one)
  check(open_tun("rsgo", tun[0]));
  check(interface_up("rsgo", o.outer.c_str()));
  if (::unshare(CLONE_NEWNET) != 0) die(errno_text("unshare(CLONE_NEWNET)"));
  check(interface_up("lo"));
  check(open_tun("rsgi", tun[1]));
  check(interface_up("rsgi", o.inner.c_str()));
  std::printf("ready %d\n", static_cast<int>(::getpid()));
  std::fflush(stdout);

  std::mt19937_64 rng(o.seed);
  std::uniform_real_distribution<double> coin(0.0, 1.0);
  std::uniform_int_distribution<int> jitter(0, o.jitter_ms * 1000);
  std::deque<packet> queue[2];  // queue[d]: packets read from tun[d], to be written to tun[1 - d]
  counters n;
  bool blackout = false;
  std::vector<std::uint8_t> buf(kMaxPacket);

  for (;;) {
    auto now = clock_type::now();
    int timeout = -1;
    for (auto& q : queue)
      if (!q.empty()) {
        auto ms = std::chrono::ceil<std::chrono::milliseconds>(q.front().due - now).count();
        int t = ms < 0 ? 0 : static_cast<int>(ms);
        timeout = timeout < 0 ? t : std::min(timeout, t);
      }
    pollfd p[3] = {{tun[0], POLLIN, 0}, {tun[1], POLLIN, 0}, {sfd, POLLIN, 0}};
    if (::poll(p, 3, timeout) < 0 && errno != EINTR) die(errno_text("poll"));

    if (p[2].revents & POLLIN) {
      signalfd_siginfo si{};
      while (::read(sfd, &si, sizeof si) == static_cast<ssize_t>(sizeof si)) {
        if (si.ssi_signo == SIGTERM) {
          std::printf("stats forwarded=%llu dropped=%llu reordered=%llu blackout_dropped=%llu overflow=%llu\n",
                      n.forwarded, n.dropped, n.reordered, n.blackout_dropped, n.overflow);
          std::fflush(stdout);
          return 0;
        }
        blackout = si.ssi_signo == SIGUSR1;
        std::printf("blackout %s\n", blackout ? "on" : "off");
        std::fflush(stdout);
      }
    }
    now = clock_type::now();
    for (int d = 0; d < 2; ++d) {
      if (!(p[d].revents & POLLIN)) continue;
      for (;;) {
        auto got = ::read(tun[d], buf.data(), buf.size());
        if (got <= 0) break;
        if (blackout) {
          ++n.blackout_dropped;
          continue;
        }
        if (coin(rng) < o.loss) {
          ++n.dropped;
          continue;
        }
        if (queue[d].size() >= kMaxQueued) {
          ++n.overflow;
          continue;
        }
        packet pk{now, std::vector<std::uint8_t>(buf.begin(), buf.begin() + got)};
        if (!queue[d].empty() && coin(rng) < o.reorder) {
          // Ahead of every packet waiting in this direction.
          ++n.reordered;
          queue[d].push_front(std::move(pk));
          continue;
        }
        pk.due = now + std::chrono::milliseconds(o.delay_ms) + std::chrono::microseconds(jitter(rng));
        // In order within the direction: never due before the packet ahead of it.
        if (!queue[d].empty() && pk.due < queue[d].back().due) pk.due = queue[d].back().due;
        queue[d].push_back(std::move(pk));
      }
    }
    now = clock_type::now();
    for (int d = 0; d < 2; ++d)
      while (!queue[d].empty() && queue[d].front().due <= now) {
        auto& pk = queue[d].front();
        if (::write(tun[1 - d], pk.bytes.data(), pk.bytes.size()) == static_cast<ssize_t>(pk.bytes.size()))
          ++n.forwarded;
        else
          ++n.dropped;  // the receiving side's queue is full: lost, as on a wire
        queue[d].pop_front();
      }
  }
}
