// The gateway's tunnel listener against duplicate and hostile agents, through the real
// `rsgate serve`: one live tunnel per machine (a second agent refused and shown to the
// first; a silent tunnel replaced), PINGs without reading, floods of unauthenticated HELLOs
// and idle handshakes, abandoned challenges, the challenge's mechanism, malformed KEY_OFFERs
// (docs/protocol.md §1.1, §4, §9.1, §11). Scripted agents are wire_peers; other loopback
// addresses (127.0.0.2 ...) stand for other sources.
#include <catch2/catch.hpp>
#include <csignal>
#include <fstream>
#include <set>
#include <thread>

#include "protocol/agent_handshake.hpp"
#include "protocol/profile.hpp"
#include "auth/session_key.hpp"
#include "protocol/messages.hpp"
#include "tests/integration/gateway_fixture.hpp"
#include "tests/integration/scripted_agent.hpp"
#include "tests/support/wire_peer.hpp"

using namespace rsgate;
using namespace rsgate::test;
using namespace std::chrono_literals;
namespace json = boost::json;

namespace {

using steady = std::chrono::steady_clock;

std::unique_ptr<wire_peer> open_tunnel(gateway_fixture& f, const std::string& from = "") {
  wire_peer::client_options o;
  o.bind_address = from;
  o.timeout = 10s;
  return wire_peer::connect(f.tunnel, o);
}

tunnel::hello hello_for(const std::string& machine, std::vector<std::string> mechanisms, std::size_t scopes = 1) {
  tunnel::hello h;
  h.agent = "flood/1";
  h.machine = machine;
  h.mechanisms = std::move(mechanisms);
  h.client_nonce = agent::make_client_nonce();
  for (std::size_t i = 0; i < scopes; ++i) {
    auto n = std::to_string(i);
    h.scopes.push_back({n + std::string(tunnel::kMaxNameBytes - n.size(), 'a'), std::string(128, 'L')});
  }
  return h;
}

// Reads `c`'s lines until `quiet` passes without one; counts those holding `needle`.
int count_lines(child& c, const std::string& needle, std::chrono::milliseconds quiet) {
  int n = 0;
  while (auto l = c.read_line(quiet))
    if (l->find(needle) != std::string::npos) ++n;
  return n;
}

std::string field(const std::string& line, const char* name) {
  auto o = json::parse(line).as_object();
  return o.contains(name) ? std::string(o[name].as_string()) : std::string();
}

long status_kb(pid_t pid, const std::string& key) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  std::string l;
  while (std::getline(in, l))
    if (l.starts_with(key + ":")) return std::stol(l.substr(key.size() + 1));
  return -1;
}

long metric(gateway_fixture& f, const std::string& name) {
  auto r = run({"curl", "-sS", "--max-time", "20", "--cacert", (f.dir / "ca.pem").string(), "https://" + f.https + "/metrics"});
  std::istringstream in(r.out);
  std::string l;
  while (std::getline(in, l))
    if (l.starts_with(name + " ")) return std::stol(l.substr(name.size() + 1));
  return -1;
}

// Entries and logical size (pages) of the gateway's journal, read-only.
std::pair<long, long> journal_size(gateway_fixture& f) {
  auto r = run({"sqlite3", "-readonly", (f.dir / "journal.db").string(),
                "SELECT count(*) FROM journal; PRAGMA page_count; PRAGMA page_size;"});
  std::istringstream in(r.out);
  long entries = 0, pages = 0, page = 0;
  in >> entries >> pages >> page;
  return {entries, pages * page};
}

}  // namespace

TEST_CASE("one live tunnel per machine: a second agent is refused, the first is told and keeps its session") {
  gateway_fixture f;
  auto profile = f.enroll("7801301");
  auto sess = start_and_attach(f, profile, "alice", "TS000000071");
  auto& first = *sess.agent;
  wait_line(first, "alice attached");
  // Six attempts with the right secret: each refused as a duplicate; none counts towards the
  // lock-out (five failures would lock the machine).
  for (int i = 0; i < 6; ++i) {
    auto r = run({agent_binary(), "start", "--profile", profile.string(), "--control", (f.t / ("dup.sock")).string()},
                 "", kWait);
    INFO(r.err);
    CHECK(r.exit_code == 1);
    CHECK(r.err.find("this machine already has a live tunnel (from 127.0.0.1:") != std::string::npos);
  }
  // The first agent was shown the refusals: three per minute at most (rate-limited).
  CHECK(count_lines(first, "refused", 2s) == tunnel::kRefusedNoticesPerWindow);
  auto st = run({agent_binary(), "status", "--json", "--control", sess.control});
  REQUIRE(st.exit_code == 0);
  CHECK(json::parse(st.out).as_object()["state"].as_string() == "active");
  auto key = run({agent_binary(), "key", "--control", sess.control}, "", 20s);
  CHECK(key.exit_code == 0);
  CHECK(key.out.starts_with("Session key: "));

  auto ok = f.kinds("tunnel.auth", "ok");
  REQUIRE(ok.size() == 1);
  auto live_source = field(ok[0], "source");
  auto denied = f.kinds("tunnel.auth", "denied");
  CHECK(denied.size() == 6);
  for (auto& d : denied) {
    auto o = detail(d);
    CHECK(o["reason"].as_string() == "duplicate");
    CHECK(o["live_source"].as_string() == live_source);
    CHECK(o["mechanism"].as_string() == "scram-sha-256");
    CHECK_FALSE(o.contains("lockout"));
  }
  CHECK(f.kinds("tunnel.close", "denied").size() == 6);
  // One slot for the machine however many newcomers it refused.
  CHECK(metric(f, "rsgate_tunnel_machines") == 1);
  // Not locked out: once the first agent stops, the machine connects again.
  REQUIRE(run({agent_binary(), "stop", "--control", sess.control}).exit_code == 0);
  CHECK(first.wait(20s) == 0);
  child again({agent_binary(), "start", "--profile", profile.string(), "--control", (f.t / "again.sock").string()},
              f.t / "again.err");
  wait_line(again, "Session key: ");
  REQUIRE(run({agent_binary(), "stop", "--control", (f.t / "again.sock").string()}).exit_code == 0);
  CHECK(again.wait(20s) == 0);
  // The machine's slot goes with its last tunnel: slots do not pile up for every machine ever
  // connected, each keeping its ended tunnel's memory (docs/performance.md, scale).
  CHECK(eventually([&] { return metric(f, "rsgate_tunnels_active") == 0; }));
  CHECK(eventually([&] { return metric(f, "rsgate_tunnel_machines") == 0; }));
}

TEST_CASE("one live tunnel per machine: a tunnel that does not answer is replaced, and both ends are journaled") {
  std::signal(SIGPIPE, SIG_IGN);
  gateway_fixture f;
  auto profile = f.enroll("7801302");
  auto old = authenticate_agent(open_tunnel(f), profile);
  const auto old_addr = old.peer->local_address();
  // From now on the old tunnel neither reads nor answers (its agent hangs, its network is gone).
  auto started = steady::now();
  child agent({agent_binary(), "start", "--profile", profile.string(), "--control", (f.t / "a.sock").string()},
              f.t / "agent.err");
  auto connected = wait_line(agent, "Connected to ");
  CHECK(steady::now() - started >= std::chrono::seconds(tunnel::kLivenessProbeSeconds));  // it was asked first
  CHECK(connected.find(old.session) != std::string::npos);  // the same session
  wait_line(agent, "Session key: ");

  // The old tunnel was told (best effort) and closed.
  auto err = old.peer->recv_until(tunnel::frame_type::error, 10s);
  REQUIRE(err);
  std::string why;
  auto em = tunnel::parse_error(err->payload, why);
  REQUIRE(em);
  CHECK(em->code == "replaced");
  CHECK_FALSE(old.peer->recv(10s));
  CHECK(old.peer->closed());

  auto closes = f.kinds("tunnel.close", "error");
  REQUIRE(closes.size() == 1);
  CHECK(field(closes[0], "source") == old_addr);
  CHECK(field(closes[0], "session_id") == old.session);
  auto reason = std::string(detail(closes[0])["reason"].as_string());
  CHECK(reason.find("replaced by a new tunnel from 127.0.0.1:") != std::string::npos);
  CHECK(reason.find("after not answering") != std::string::npos);
  auto auths = f.kinds("tunnel.auth", "ok");
  REQUIRE(auths.size() == 2);
  CHECK_FALSE(detail(auths[0]).contains("replaced"));
  CHECK(detail(auths[1])["replaced"].as_string() == old_addr);
  CHECK(detail(auths[1])["scopes"].as_array().size() == 2);  // recorded once authenticated
  // The old tunnel's end is journaled before the new one's authentication.
  auto seq = [](const std::string& l) { return json::parse(l).as_object()["seq"].as_int64(); };
  CHECK(seq(closes[0]) < seq(auths[1]));
  CHECK(metric(f, "rsgate_tunnel_machines") == 1);  // the replaced tunnel's end kept the newcomer's slot
  REQUIRE(run({agent_binary(), "stop", "--control", (f.t / "a.sock").string()}).exit_code == 0);
  CHECK(agent.wait(20s) == 0);
  CHECK(eventually([&] { return metric(f, "rsgate_tunnel_machines") == 0; }));
}

TEST_CASE("an agent that floods PINGs without reading is closed, the gateway's memory stays bounded") {
  std::signal(SIGPIPE, SIG_IGN);
  gateway_fixture f;
  auto profile = f.enroll("7801303");
  auto a = authenticate_agent(open_tunnel(f), profile);
  const auto rss_before = status_kb(f.gw->pid(), "VmRSS");
  REQUIRE(rss_before > 0);
  // 1024 PINGs a record, up to 4 million (48 MB) or 10 s; the flooder never reads.
  std::vector<std::uint8_t> burst;
  for (int i = 0; i < 1024; ++i) {
    auto p = tunnel::encode(tunnel::frame_type::ping, 0, {});
    burst.insert(burst.end(), p.begin(), p.end());
  }
  std::size_t sent = 0;
  const auto until = steady::now() + 10s;
  while (sent < 4'000'000 && steady::now() < until && a.peer->send_raw(burst)) sent += 1024;
  // Whatever the gateway sent before it gave up, then the end of the connection.
  std::size_t frames = 0;
  while (frames < 10'000'000 && a.peer->recv(10s)) ++frames;
  CHECK(a.peer->closed());
  const auto peak = status_kb(f.gw->pid(), "VmHWM");
  INFO("PINGs sent " << sent << ", frames back " << frames << ", RSS before " << rss_before << " kB, peak " << peak << " kB");
  CHECK(peak - rss_before < 16 * 1024);  // 16 MiB
  std::vector<std::string> closes;
  REQUIRE(eventually([&] { return !(closes = f.kinds("tunnel.close", "error")).empty(); }));
  CHECK(std::string(detail(closes[0])["reason"].as_string()).find("does not read") != std::string::npos);
  CHECK(eventually([&] { return metric(f, "rsgate_tunnels_active") == 0; }));
}

TEST_CASE("a flood of unauthenticated HELLOs: the journal grows within its bound and a real agent gets in") {
  std::signal(SIGPIPE, SIG_IGN);
  gateway_fixture f;
  auto profile = f.enroll("7801304");
  const auto [entries_before, bytes_before] = journal_size(f);
  // Two sources, each opening TLS connections with a maximum-size HELLO for an unknown
  // machine and dropping them once answered, for 5 s.
  const std::vector<std::string> sources = {"127.0.0.2", "127.0.0.3"};
  std::vector<std::size_t> attempts(sources.size());
  std::vector<std::thread> flood;
  const auto until = steady::now() + 5s;
  for (std::size_t i = 0; i < sources.size(); ++i)
    flood.emplace_back([&, i] {
      for (int n = 0; steady::now() < until && n < 20'000; ++n) {
        ++attempts[i];
        try {
          auto p = open_tunnel(f, sources[i]);
          auto h = hello_for("9009-42A*9" + std::to_string(100000 + n), {"scram-sha-256"}, tunnel::kMaxScopes);
          (void)p->send(tunnel::frame_type::hello, tunnel::to_payload(h));
          (void)p->recv(5s);  // CHALLENGE (or FAILURE): the gateway has read the HELLO
          p->drop();
        } catch (const std::exception&) {  // refused at accept: its TLS handshake fails
        }
      }
    });
  std::this_thread::sleep_for(2s);
  child agent({agent_binary(), "start", "--profile", profile.string(), "--control", (f.t / "a.sock").string()},
              f.t / "agent.err");
  wait_line(agent, "Session key: ");  // a real agent gets in during the flood
  for (auto& t : flood) t.join();
  REQUIRE(run({agent_binary(), "stop", "--control", (f.t / "a.sock").string()}).exit_code == 0);
  CHECK(agent.wait(20s) == 0);
  // Every connection is accounted for, however abruptly it went (defect 15's counters).
  CHECK(eventually([&] { return metric(f, "rsgate_tunnels_active") == 0; }));

  // Per source and minute: 5 connections journaled one by one (at most 4 entries each) and
  // one summary; the agent's own entries: tunnel.connect, tunnel.auth, session.key_issued,
  // session.end, tunnel.close; a checkpoint or two.
  const auto [entries_after, bytes_after] = journal_size(f);
  const long bound = static_cast<long>(sources.size()) * (tunnel::kJournalBurstPerSource * 4 + 1) + 5 + 2;
  INFO("flood connections: " << attempts[0] << " + " << attempts[1] << "; entries " << entries_before << " -> "
                             << entries_after << ", bytes " << bytes_before << " -> " << bytes_after);
  CHECK(attempts[0] + attempts[1] > 100);  // the flood was one
  CHECK(entries_after - entries_before <= bound);
  CHECK(bytes_after - bytes_before <= bound * 2048);
  CHECK(f.kinds("tunnel.auth", "ok").size() == 1);

  // At shutdown the rest becomes one summary per source, which accounts for every connection.
  f.gw->signal(SIGTERM);
  REQUIRE(f.gw->wait(20s).has_value());
  f.gw.reset();
  auto connects = f.kinds("tunnel.connect", "denied");
  for (std::size_t i = 0; i < sources.size(); ++i) {
    INFO(sources[i]);
    std::uint64_t summarized = 0;
    for (auto& c : connects)
      if (field(c, "source") == sources[i] && detail(c).contains("summary"))
        summarized += detail(c)["connections"].to_number<std::uint64_t>();
    std::set<std::string> individual;  // connections journaled one by one, by ip:port
    for (auto kind : {"tunnel.connect", "tunnel.auth", "tunnel.close"})
      for (auto outcome : {"ok", "denied", "error"})
        for (auto& e : f.kinds(kind, outcome))
          if (field(e, "source").starts_with(sources[i] + ":")) individual.insert(field(e, "source"));
    CHECK(individual.size() == static_cast<std::size_t>(tunnel::kJournalBurstPerSource));
    CHECK(summarized + individual.size() == attempts[i]);
  }
  // No entry of an unauthenticated connection holds the scope list.
  for (auto& c : f.kinds("tunnel.connect", "ok")) CHECK_FALSE(detail(c).contains("scopes"));
}

TEST_CASE("unauthenticated connections are limited per source, other sources and real agents still get in") {
  std::signal(SIGPIPE, SIG_IGN);
  gateway_fixture f;
  auto profile = f.enroll("7801305");
  std::vector<std::unique_ptr<wire_peer>> idle;  // TLS done, no HELLO: a slow handshake each
  for (std::size_t i = 0; i < tunnel::kMaxPreAuthPerSource; ++i) idle.push_back(open_tunnel(f, "127.0.0.5"));
  CHECK_THROWS(open_tunnel(f, "127.0.0.5"));  // closed at accept
  auto other = open_tunnel(f, "127.0.0.6");
  child agent({agent_binary(), "start", "--profile", profile.string(), "--control", (f.t / "a.sock").string()},
              f.t / "agent.err");
  wait_line(agent, "Session key: ");
  std::vector<std::string> refused;
  REQUIRE(eventually([&] { return !(refused = f.kinds("tunnel.connect", "denied")).empty(); }));
  REQUIRE(refused.size() == 1);
  CHECK(field(refused[0], "source").starts_with("127.0.0.5:"));
  CHECK(detail(refused[0])["reason"].as_string() == "too many unauthenticated connections from this address");
  idle.clear();
  other.reset();
  REQUIRE(run({agent_binary(), "stop", "--control", (f.t / "a.sock").string()}).exit_code == 0);
  CHECK(agent.wait(20s) == 0);
  CHECK(eventually([&] { return metric(f, "rsgate_tunnels_active") == 0; }));
}

TEST_CASE("challenges left unanswered count towards the machine's lock-out") {
  std::signal(SIGPIPE, SIG_IGN);
  gateway_fixture f;
  auto profile = f.enroll("7801306");
  const auto machine = agent::load_profile(profile).machine();
  for (int i = 0; i < 5; ++i) {
    auto p = open_tunnel(f);
    REQUIRE(p->send(tunnel::frame_type::hello, tunnel::to_payload(hello_for(machine, {"scram-sha-256"}))));
    REQUIRE(p->recv_until(tunnel::frame_type::challenge, 10s));
    p->drop();  // and never answer
  }
  std::vector<std::string> denied;
  REQUIRE(eventually([&] { return (denied = f.kinds("tunnel.auth", "denied")).size() >= 6; }));
  int abandoned = 0, lockouts = 0;
  for (auto& d : denied) {
    auto o = detail(d);
    if (o.contains("lockout")) ++lockouts;
    else if (o["reason"].as_string() == "abandoned challenge") ++abandoned;
  }
  CHECK(abandoned == 5);
  CHECK(lockouts == 1);
  // The machine is locked: even its own agent is refused now.
  auto r = run({agent_binary(), "start", "--profile", profile.string(), "--control", (f.t / "a.sock").string()}, "", 20s);
  INFO(r.err);
  CHECK(r.exit_code == 1);
  CHECK(r.err.find("locked out") != std::string::npos);
}

TEST_CASE("the challenge's mechanism does not tell MD5-enabled machines from unknown names") {
  gateway_fixture f;
  const auto md5_machine = agent::load_profile(f.enroll("7801307", true)).machine();
  const auto scram_machine = agent::load_profile(f.enroll("7801308")).machine();
  for (auto [offer, expected] : {std::pair{std::vector<std::string>{"md5", "scram-sha-256"}, "scram-sha-256"},
                                 std::pair{std::vector<std::string>{"md5"}, "md5"}}) {
    for (const auto& machine : {md5_machine, scram_machine, std::string("9009-42A*7809999")}) {
      INFO(machine << " offering " << offer.front() << " first, " << offer.size() << " in all");
      auto p = open_tunnel(f);
      REQUIRE(p->send(tunnel::frame_type::hello, tunnel::to_payload(hello_for(machine, offer))));
      auto c = p->recv_until(tunnel::frame_type::challenge, 10s);
      REQUIRE(c);
      std::string why;
      auto ch = tunnel::parse_challenge(c->payload, why);
      REQUIRE(ch);
      CHECK(ch->mechanism == expected);
    }
  }
}

TEST_CASE("a malformed KEY_OFFER is a protocol error: ERROR bad_key_offer, the tunnel closed and journaled") {
  std::signal(SIGPIPE, SIG_IGN);
  gateway_fixture f;
  auto profile = f.enroll("7801309");
  auto a = authenticate_agent(open_tunnel(f), profile);
  auto key = auth::generate_session_key();
  key.back() = key.back() == 'A' ? 'B' : 'A';  // a wrong check symbol
  REQUIRE(a.peer->send(tunnel::frame_type::key_offer, tunnel::to_payload(tunnel::key_offer{key, 3600})));
  auto err = a.peer->recv_until(tunnel::frame_type::error, 10s);
  REQUIRE(err);
  std::string why;
  auto em = tunnel::parse_error(err->payload, why);
  REQUIRE(em);
  CHECK(em->code == "bad_key_offer");
  CHECK_FALSE(a.peer->recv(10s));
  CHECK(a.peer->closed());
  std::vector<std::string> closes;
  REQUIRE(eventually([&] { return !(closes = f.kinds("tunnel.close", "error")).empty(); }));
  CHECK(std::string(detail(closes[0])["reason"].as_string()).starts_with("bad_key_offer: "));
  CHECK(f.kinds("session.key_issued", "ok").empty());
}
