// Rekey and re-challenge of a live tunnel (docs/protocol.md §6), through real processes: the
// gateway with tunnel.rekey_interval = 1, the real agent, rsgate connect and an echo target.
// A transfer of 300 MiB each way runs across many rekeys and arrives intact (SHA-256); every
// rekey is a KeyUpdate each way and a re-challenge, journaled as tunnel.reauth. A scripted
// agent that answers a re-challenge wrongly loses its tunnel.
#include <openssl/evp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <csignal>
#include <thread>

#include "protocol/messages.hpp"
#include "tests/integration/gateway_fixture.hpp"
#include "tests/integration/scripted_agent.hpp"
#include "tests/support/echo_server.hpp"
#include "tests/support/wire_peer.hpp"

using namespace rsgate;
using namespace rsgate::test;
using namespace std::chrono_literals;
namespace json = boost::json;
using ft = rsgate::tunnel::frame_type;

namespace {

// SHA-256 over everything fed to it, as hex.
class sha256 {
 public:
  sha256() : ctx_(EVP_MD_CTX_new()) { EVP_DigestInit_ex(ctx_, EVP_sha256(), nullptr); }
  ~sha256() { EVP_MD_CTX_free(ctx_); }
  sha256(const sha256&) = delete;
  sha256& operator=(const sha256&) = delete;
  void update(const void* p, std::size_t n) { EVP_DigestUpdate(ctx_, p, n); }
  std::string hex() {
    unsigned char d[32];
    unsigned len = 0;
    EVP_DigestFinal_ex(ctx_, d, &len);
    static constexpr char kHex[] = "0123456789abcdef";
    std::string out;
    for (unsigned i = 0; i < len; ++i) {
      out += kHex[d[i] >> 4];
      out += kHex[d[i] & 15];
    }
    return out;
  }

 private:
  EVP_MD_CTX* ctx_;
};

std::int64_t seq_of(const std::string& line) { return json::parse(line).as_object()["seq"].as_int64(); }

// A scripted agent of a new machine, authenticated through a gateway that rekeys every second,
// that has just read the first REKEY and the re-challenge after it.
struct rechallenged {
  scripted_agent agent;
  tunnel::challenge challenge;
};
rechallenged first_rechallenge(gateway_fixture& f, const std::string& serial) {
  wire_peer::client_options o;
  o.timeout = 10s;
  rechallenged r{authenticate_agent(wire_peer::connect(f.tunnel, o), f.enroll(serial)), {}};
  REQUIRE(r.agent.peer->recv_until(ft::rekey, 10s));
  auto c = r.agent.peer->recv(10s);
  REQUIRE(c);
  REQUIRE(c->header.type == ft::challenge);
  std::string why;
  auto ch = tunnel::parse_challenge(c->payload, why);
  REQUIRE(ch);
  r.challenge = *ch;
  return r;
}

}  // namespace

TEST_CASE("rekey every second during a 300 MiB transfer: bytes intact, a KeyUpdate each way per re-challenge") {
  std::signal(SIGPIPE, SIG_IGN);
  gateway_fixture f(1, "rekey_interval = 1");
  echo_server echo;
  auto profile = f.enroll("7801360", false, {"echo=127.0.0.1:" + std::to_string(echo.port())});
  auto sess = start_and_attach(f, profile, "alice", "TS000000361");
  auto [conn, port] = connect_for(f, "alice", sess.sid, "echo", "other");
  int s = connect_local(port);
  REQUIRE(s >= 0);

  constexpr std::size_t kTotal = 300u << 20;
  constexpr std::size_t kChunk = 1u << 20;
  constexpr auto kAtLeast = 6s;  // paced, so that several rekeys fall inside the transfer
  const auto before = f.kinds("tunnel.reauth", "ok").size();
  const auto t0 = std::chrono::steady_clock::now();
  std::string sent_digest;
  std::thread writer([&] {
    sha256 h;
    std::vector<std::uint8_t> buf(kChunk);
    std::uint32_t x = 2463534242u;
    for (std::size_t off = 0; off < kTotal; off += kChunk) {
      for (auto& b : buf) {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        b = static_cast<std::uint8_t>(x);
      }
      h.update(buf.data(), buf.size());
      for (std::size_t w = 0; w < buf.size();) {
        auto n = ::write(s, buf.data() + w, buf.size() - w);
        if (n <= 0) return;
        w += static_cast<std::size_t>(n);
      }
      std::this_thread::sleep_until(t0 + kAtLeast * (off + kChunk) / kTotal);
    }
    sent_digest = h.hex();
    ::shutdown(s, SHUT_WR);
  });
  sha256 got;
  std::size_t received = 0;
  std::vector<std::uint8_t> buf(1 << 16);
  for (;;) {
    auto n = ::read(s, buf.data(), buf.size());
    if (n <= 0) break;
    got.update(buf.data(), static_cast<std::size_t>(n));
    received += static_cast<std::size_t>(n);
  }
  writer.join();
  ::close(s);
  const auto elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  INFO("transfer took " << elapsed << " s");
  CHECK(received == kTotal);
  CHECK(got.hex() == sent_digest);

  // About one tunnel.reauth per interval: never more than the elapsed seconds allow, and
  // several during the transfer (each waits for its answer, which queues behind the channel's
  // DATA, so a loaded sanitizer build gets fewer); never a new tunnel, no close.
  auto reauths = f.kinds("tunnel.reauth", "ok");
  const auto during = static_cast<double>(reauths.size() - before);
  INFO("re-challenges during the transfer: " << during);
  CHECK(during >= 3);
  CHECK(during <= elapsed + 2);
  CHECK(f.kinds("tunnel.auth", "ok").size() == 1);
  CHECK(f.kinds("tunnel.close", "ok").empty());
  CHECK(f.kinds("tunnel.close", "error").empty());
  CHECK(f.kinds("tunnel.reauth", "denied").empty());
  // Each re-challenge followed exactly one KeyUpdate from the gateway and the agent's answer
  // to it: the counts in the last entry equal the number of rekeys so far.
  REQUIRE_FALSE(reauths.empty());
  auto last = detail(reauths.back());
  CHECK(last["trigger"].as_string() == "rekey");
  CHECK(last["mechanism"].as_string() == "scram-sha-256");
  CHECK(last["key_update"].as_bool());
  const auto rekeys = last["rekeys"].as_int64();
  CHECK(rekeys == static_cast<std::int64_t>(reauths.size()));
  CHECK(last["key_updates_sent"].as_int64() == rekeys);
  CHECK(last["key_updates_received"].as_int64() == rekeys);
  // The entries come in order, one per rekey.
  for (std::size_t i = 1; i < reauths.size(); ++i) {
    CHECK(seq_of(reauths[i]) > seq_of(reauths[i - 1]));
    CHECK(detail(reauths[i])["rekeys"].as_int64() == detail(reauths[i - 1])["rekeys"].as_int64() + 1);
  }

  conn->signal(SIGTERM);
  (void)conn->wait(20s);
  REQUIRE(run({agent_binary(), "stop", "--control", sess.control}).exit_code == 0);
  CHECK(sess.agent->wait(20s) == 0);
}

TEST_CASE("a wrong answer to a re-challenge ends the tunnel: FAILURE, tunnel.reauth denied, tunnel.close") {
  gateway_fixture f(1, "rekey_interval = 1");
  auto [a, ch] = first_rechallenge(f, "7801362");
  std::string why;
  tunnel::response wrong;
  wrong.id = ch.id;
  wrong.proof = bytes(32, 0x5a);
  REQUIRE(a.peer->send(ft::response, tunnel::to_payload(wrong)));
  auto fl = a.peer->recv_until(ft::failure, 10s);
  REQUIRE(fl);
  auto failure = tunnel::parse_failure(fl->payload, why);
  REQUIRE(failure);
  CHECK(failure->id == ch.id);
  // Then the gateway closes the connection.
  while (a.peer->recv(10s)) {
  }
  CHECK(a.peer->closed());
  std::vector<std::string> denied, closes;
  REQUIRE(eventually([&] { return !(closes = f.kinds("tunnel.close", "denied")).empty(); }));
  denied = f.kinds("tunnel.reauth", "denied");
  REQUIRE(denied.size() == 1);
  CHECK(detail(denied[0])["reason"].as_string() == "wrong response");
  CHECK(detail(denied[0])["trigger"].as_string() == "rekey");
  CHECK(detail(closes[0])["reason"].as_string() == "re-challenge failed: wrong response");
  CHECK(f.kinds("tunnel.reauth", "ok").empty());
}

TEST_CASE("a re-challenge left unanswered ends the tunnel after the handshake bound") {
  gateway_fixture f(1, "rekey_interval = 1");
  auto [a, ch] = first_rechallenge(f, "7801363");
  std::string why;
  const auto t0 = std::chrono::steady_clock::now();
  auto fl = a.peer->recv_until(ft::failure, 30s);  // no answer: FAILURE after 20 s
  const auto waited = std::chrono::steady_clock::now() - t0;
  REQUIRE(fl);
  CHECK(waited >= 19s);
  CHECK(waited <= 25s);
  auto failure = tunnel::parse_failure(fl->payload, why);
  REQUIRE(failure);
  CHECK(failure->id == ch.id);
  CHECK(failure->reason == "the re-challenge was not answered within 20 s");
  while (a.peer->recv(10s)) {
  }
  CHECK(a.peer->closed());
  std::vector<std::string> closes;
  REQUIRE(eventually([&] { return !(closes = f.kinds("tunnel.close", "denied")).empty(); }));
  CHECK(detail(closes[0])["reason"].as_string() == "re-challenge not answered");
  auto denied = f.kinds("tunnel.reauth", "denied");
  REQUIRE(denied.size() == 1);
  CHECK(detail(denied[0])["reason"].as_string() == "abandoned challenge");
}
