// A bad customer network between the agent and the gateway, at the IP layer. The test moves
// itself (and so the gateway, curl and `rsgate connect`) into a network namespace of its own;
// the agent and its target run in a second namespace; tests/support/net_impair joins the two
// with TUN devices and loses, delays and reorders the IP packets between them, as `tc netem`
// would (this class of machine's kernel has no netem). Real TCP on both sides copes:
// - under loss, delay with jitter and reordering, channels carry data intact (SHA-256 equal
//   byte for byte), on one tunnel, with no reconnect;
// - a blackout shorter than the dead-peer bound (a cable pulled and put back) is ridden out
//   by TCP: the transfer in flight completes intact, the tunnel stays up;
// - a blackout longer than it ends the tunnel on both sides (journaled); when the link is
//   back the agent resumes its session (same id, owner and grants), and channels work again.
// Needs root and /dev/net/tun; without them it prints why and exits 77 (CTest: skipped).
#include <sched.h>

#include <catch2/catch.hpp>
#include <csignal>
#include <fcntl.h>
#include <future>
#include <iostream>

#include "tests/integration/gateway_fixture.hpp"
#include "tests/support/netns.hpp"

using namespace rsgate;
using namespace rsgate::test;
using namespace std::chrono_literals;
namespace json = boost::json;

namespace {

constexpr int kBound = 6;  // tunnel.keepalive: the smallest allowed, so the long blackout is short
constexpr const char* kGatewayAddr = "10.77.0.2";

[[noreturn]] void skip(const std::string& why) {
  std::cout << "skipped: the network-fault test cannot run here: " << why << std::endl;
  std::_Exit(77);
}

// This process in a network namespace of its own, with loopback up.
void own_namespace() {
  if (::geteuid() != 0) skip("it needs root (network namespaces, TUN devices)");
  if (::access("/dev/net/tun", R_OK | W_OK) != 0) skip(errno_text("/dev/net/tun"));
  if (::unshare(CLONE_NEWNET) != 0) skip(errno_text("unshare(CLONE_NEWNET)"));
  if (auto e = interface_up("lo"); !e.empty()) skip(e);
}

// The bad link and the agent's namespace behind it.
struct impaired_link {
  std::unique_ptr<child> proc;
  std::string ns;  // /proc/PID/ns/net of the agent's side

  impaired_link(const temp_dir& t, double loss, int delay_ms, int jitter_ms, double reorder) {
    proc = std::make_unique<child>(
        std::vector<std::string>{helper_binary("net_impair"), "--outer", kGatewayAddr, "--inner", "10.77.0.1",
                                 "--loss", std::to_string(loss), "--delay-ms", std::to_string(delay_ms),
                                 "--jitter-ms", std::to_string(jitter_ms), "--reorder", std::to_string(reorder),
                                 "--seed", "7"},
        t / "impair.err");
    auto ready = proc->wait_for("ready ", 10s);
    INFO(read_file(t / "impair.err"));
    REQUIRE(ready);
    ns = "/proc/" + ready->substr(6) + "/ns/net";
  }
  void blackout(bool on) {
    proc->signal(on ? SIGUSR1 : SIGUSR2);
    REQUIRE(proc->wait_for(on ? "blackout on" : "blackout off", 10s));
  }
  // Stops it; its counters by name.
  std::map<std::string, unsigned long long> stop() {
    proc->signal(SIGTERM);
    auto line = proc->wait_for("stats ", 10s);
    REQUIRE(line);
    std::map<std::string, unsigned long long> n;
    std::istringstream in(line->substr(6));
    for (std::string kv; in >> kv;) n[kv.substr(0, kv.find('='))] = std::stoull(kv.substr(kv.find('=') + 1));
    return n;
  }
};

// A call of `fn` with the calling thread in the network namespace `ns`; the thread is a new
// one, so the caller's namespace does not change. Sockets made there stay in `ns`.
template <typename Fn>
auto in_namespace(const std::string& ns, Fn fn) {
  return std::async(std::launch::async, [&] {
           int fd = ::open(ns.c_str(), O_RDONLY | O_CLOEXEC);
           if (fd < 0 || ::setns(fd, CLONE_NEWNET) != 0) throw std::runtime_error(errno_text("setns " + ns));
           ::close(fd);
           return fn();
         })
      .get();
}

// `count` channels at once, each `n` bytes to the echo target and back; how many came back
// intact (SHA-256 of what came back equal to what was sent; compared as bytes).
int parallel_round_trips(gateway_fixture& f, const std::string& sid, int count, std::size_t n) {
  std::vector<std::future<bool>> runs;
  for (int i = 0; i < count; ++i)
    runs.push_back(std::async(std::launch::async, [&] { return channel_round_trip(f, "dave", sid, "hmc", n); }));
  int intact = 0;
  for (auto& r : runs) intact += r.get() ? 1 : 0;
  return intact;
}

}  // namespace

TEST_CASE("a lossy, delaying, reordering network: channels arrive intact, blackouts are ridden out or resumed") {
  own_namespace();
  temp_dir t;
  impaired_link link(t, 0.02, 15, 10, 0.05);  // 2% loss, 15-25 ms each way, 5% reordered
  std::unique_ptr<echo_server> target;
  in_namespace(link.ns, [&] {
    if (auto e = interface_up("lo"); !e.empty()) throw std::runtime_error(e);
    target = std::make_unique<echo_server>();  // on the agent's side, as a customer's target is
    return 0;
  });

  gateway_fixture f(1, "keepalive = " + std::to_string(kBound), nullptr, "", std::string(kGatewayAddr) + ":0");
  const auto port = std::to_string(port_of(f.tunnel));
  auto profile = f.enroll("7801500", false, {"hmc=127.0.0.1:" + std::to_string(target->port())},
                          std::string(kGatewayAddr) + ":" + port);
  auto agent = std::make_unique<child>(std::vector<std::string>{"nsenter", "--net=" + link.ns, "--", agent_binary(),
                                                                "start", "--profile", profile.string(), "--control",
                                                                (f.t / "a.sock").string()},
                                       f.t / "agent.err");
  auto key_line = wait_line(*agent, "Session key: ");
  auto att = f.api("POST", "/api/v1/sessions/attach", "alice",
                   json::serialize(json::object{{"session_key", key_line.substr(key_line.find(": ") + 2)},
                                                {"pmr", "TS000000500"}}));
  REQUIRE(att.status == 201);
  const std::string sid(att.body["id"].as_string());
  REQUIRE(f.api("POST", "/api/v1/sessions/" + sid + "/grants", "alice",
                R"({"user":"dave","scopes":["hmc"],"access_types":["ssh"]})")
              .status == 201);

  // The customer stops the agent (its receipt comes over the bad link too), the gateway stops,
  // the journal verifies; then the link's counters.
  auto finish = [&] {
    REQUIRE(run({agent_binary(), "stop", "--control", (f.t / "a.sock").string()}).exit_code == 0);
    (void)wait_line(*agent, "Receipt: ");
    CHECK(agent->wait(30s) == 0);
    CHECK(f.stop() == 0);
    auto v = rsgate_cmd({"journal", "verify", "--data", f.dir.string(), "--pubkey",
                         (f.dir / "keys/journal-signing.pub").string()});
    INFO(v.out << v.err);
    CHECK(v.exit_code == 0);
    return link.stop();
  };

  SECTION("loss, delay and reordering") {
    // Four channels at once, 2 MiB each way.
    CHECK(parallel_round_trips(f, sid, 4, 2u << 20) == 4);
    CHECK(f.kinds("tunnel.close", "error").empty());
    CHECK(f.kinds("tunnel.reauth", "ok").empty());  // one tunnel all along
    CHECK(target->connections() == 4);
    auto n = finish();
    INFO("forwarded " << n["forwarded"] << ", lost " << n["dropped"] << ", reordered " << n["reordered"]);
    CHECK(n["dropped"] > 100);  // the faults happened, and TCP repaired them
    CHECK(n["reordered"] > 100);
    CHECK(n["forwarded"] > 5000);
  }

  SECTION("a blackout shorter than the dead-peer bound: the transfer in flight completes") {
    auto transfer = std::async(std::launch::async, [&] { return channel_round_trip(f, "dave", sid, "hmc", 4u << 20); });
    REQUIRE(eventually([&] { return target->connections() == 1; }, 30s));
    std::this_thread::sleep_for(500ms);
    link.blackout(true);
    REQUIRE(transfer.wait_for(0s) == std::future_status::timeout);  // cut in mid-transfer
    std::this_thread::sleep_for(std::chrono::seconds(kBound / 2));
    link.blackout(false);
    CHECK(transfer.get());
    CHECK(f.kinds("tunnel.close", "error").empty());
    CHECK(f.kinds("tunnel.reauth", "ok").empty());
    CHECK(finish()["blackout_dropped"] > 0);
  }

  SECTION("a blackout past the dead-peer bound: both sides give the tunnel up; the session resumes") {
    link.blackout(true);
    const auto t0 = std::chrono::steady_clock::now();
    std::vector<std::string> closes;
    REQUIRE(eventually([&] { return !(closes = f.kinds("tunnel.close", "error")).empty(); }, 30s));
    CHECK(std::chrono::steady_clock::now() - t0 <= std::chrono::seconds(kBound + 3));
    CHECK(detail(closes[0])["reason"].as_string().find("the tunnel is dead") != std::string::npos);
    REQUIRE(eventually([&] { return read_file(f.t / "agent.err").find("the tunnel is dead") != std::string::npos; },
                       std::chrono::seconds(kBound * 3)));
    link.blackout(false);
    auto back = wait_line(*agent, "Reconnected to ");
    CHECK(back.find("session " + sid + " resumed") != std::string::npos);
    auto s = f.api("GET", "/api/v1/sessions/" + sid, "alice");
    REQUIRE(s.status == 200);
    CHECK(s.body["owner"].as_string() == "alice");
    CHECK(s.body["state"].as_string() == "active");
    auto resumes = f.kinds("tunnel.reauth", "ok");
    REQUIRE(resumes.size() == 1);
    CHECK(detail(resumes[0])["trigger"].as_string() == "resume");
    CHECK(f.kinds("session.end", "ok").empty());
    // dave's grant survived: a channel works again, over the still lossy link.
    CHECK(parallel_round_trips(f, sid, 2, 1u << 20) == 2);
    CHECK(finish()["blackout_dropped"] > 0);
  }
}
