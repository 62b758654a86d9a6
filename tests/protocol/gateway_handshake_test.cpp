// The gateway's CHAP state machine alone (docs/protocol.md §5), with the agent's side
// computed from the auth primitives: the challenge's mechanism depends on the HELLO only
// (never on whether the machine exists or may use MD5), an MD5 challenge to a machine without
// MD5 is a decoy refused after the response, and a challenge left unanswered counts towards
// the lock-out like a wrong answer.
#include "protocol/gateway_handshake.hpp"

#include <catch2/catch.hpp>
#include <map>

#include "auth/chap_md5.hpp"

using namespace rsgate;
using namespace rsgate::tunnel;

namespace {

constexpr const char* kScramOnly = "9009-42A*7801234";
constexpr const char* kMd5Machine = "9009-42A*7805555";
constexpr const char* kUnknown = "9009-42A*7809999";
constexpr const char* kSecret = "correct secret for the machine";

struct world {
  auth::failure_limiter limiter{auth::limit_policy{}};
  std::map<std::string, machine_record> machines;
  micros now = 1'000'000'000;
  std::uint8_t counter = 0;

  world() {
    machine_record r;
    r.machine = kScramOnly;
    r.verifier = auth::scram::make_verifier(kSecret, bytes(16, 5), 4096);
    machines[kScramOnly] = r;
    r.machine = kMd5Machine;
    r.md5_enabled = true;
    r.md5_secret = kSecret;
    machines[kMd5Machine] = r;
  }
  gateway_handshake gateway(const bytes& exporter = bytes(32, 1)) {
    return {exporter,
            [this](const std::string& m) -> std::optional<machine_record> {
              auto it = machines.find(m);
              if (it == machines.end()) return std::nullopt;
              return it->second;
            },
            limiter,
            [this](std::span<std::uint8_t> out) {
              for (auto& b : out) b = ++counter;
            },
            [](const std::string&) { return bytes(16, 9); }};
  }
};

hello hello_for(const std::string& machine, std::vector<std::string> mechanisms) {
  hello h;
  h.machine = machine;
  h.agent = "test-agent/1";
  h.mechanisms = std::move(mechanisms);
  h.client_nonce = "abcdefghijklmnopqrstuvwx";
  h.scopes = {{"hmc", ""}};
  return h;
}

response md5_answer(const challenge& c, const std::string& secret) {
  auto d = auth::chap_md5_response(static_cast<std::uint8_t>(c.id), secret, c.value);
  return response{c.id, bytes(d.begin(), d.end())};
}

}  // namespace

TEST_CASE("gateway handshake: the challenge's mechanism depends on the HELLO only") {
  world w;
  struct row {
    std::vector<std::string> offered;
    std::string_view expected;
  };
  for (auto r : {row{{"md5", "scram-sha-256"}, kMechanismScram}, row{{"scram-sha-256", "md5"}, kMechanismScram},
                 row{{"scram-sha-256"}, kMechanismScram}, row{{"md5"}, kMechanismMd5}}) {
    for (const char* machine : {kScramOnly, kMd5Machine, kUnknown}) {
      INFO(machine << " offering " << r.offered.size() << " mechanisms, first " << r.offered.front());
      auto g = w.gateway();
      auto s = g.on_hello(hello_for(machine, r.offered), w.now);
      REQUIRE(s.send_challenge);
      CHECK(s.send_challenge->mechanism == r.expected);
      CHECK(g.current() == gateway_handshake::state::challenged);
      // Same shape for every name: nothing in the challenge tells the machines apart.
      CHECK(s.send_challenge->value.size() == (r.expected == kMechanismMd5 ? 16u : 0u));
      CHECK(s.send_challenge->salt.size() == (r.expected == kMechanismScram ? 16u : 0u));
    }
  }
}

TEST_CASE("gateway handshake: MD5 succeeds only for a machine enrolled for it") {
  world w;
  {
    auto g = w.gateway();
    auto c = g.on_hello(hello_for(kMd5Machine, {"md5"}), w.now).send_challenge;
    REQUIRE(c);
    auto s = g.on_response(md5_answer(*c, kSecret), w.now);
    CHECK(s.auth_ok == true);
    CHECK(g.mechanism() == "md5");
  }
  for (const char* machine : {kScramOnly, kUnknown}) {
    INFO(machine);
    auto g = w.gateway();
    auto c = g.on_hello(hello_for(machine, {"md5"}), w.now).send_challenge;
    REQUIRE(c);
    // The right secret, and even an empty one (a machine without MD5 holds none), fail alike.
    for (const char* secret : {kSecret, ""}) {
      auto g2 = w.gateway();
      auto c2 = g2.on_hello(hello_for(machine, {"md5"}), w.now).send_challenge;
      REQUIRE(c2);
      auto s = g2.on_response(md5_answer(*c2, secret), w.now);
      CHECK(s.auth_ok == false);
      REQUIRE(s.send_failure);
      CHECK(s.send_failure->reason == "authentication failed");
      CHECK(s.reason == (std::string(machine) == kUnknown ? "unknown or revoked machine" : "md5 not enabled for this machine"));
    }
  }
}

TEST_CASE("gateway handshake: an abandoned challenge counts towards the lock-out") {
  world w;
  for (int i = 0; i < 4; ++i) {
    auto g = w.gateway();
    REQUIRE(g.on_hello(hello_for(kScramOnly, {"scram-sha-256"}), w.now).send_challenge);
    auto s = g.on_abandon(w.now);
    CHECK(s.auth_ok == false);
    CHECK(s.reason == "abandoned challenge");
    CHECK_FALSE(s.lockout_started);
    CHECK(g.current() == gateway_handshake::state::failed);
  }
  auto g = w.gateway();
  REQUIRE(g.on_hello(hello_for(kScramOnly, {"scram-sha-256"}), w.now).send_challenge);
  CHECK(g.on_abandon(w.now).lockout_started);  // the fifth
  auto locked = w.gateway().on_hello(hello_for(kScramOnly, {"scram-sha-256"}), w.now);
  CHECK_FALSE(locked.send_challenge);
  REQUIRE(locked.send_failure);
  CHECK(locked.send_failure->retry_after_seconds > 0);

  // Outside a pending challenge, abandoning is nothing: no failure counted.
  world w2;
  auto fresh = w2.gateway();
  auto none = fresh.on_abandon(w2.now);
  CHECK_FALSE(none.auth_ok.has_value());
  CHECK(fresh.current() == gateway_handshake::state::await_hello);
  CHECK(w2.limiter.tracked() == 0);
}
