// Both sides of CHAP in memory (no sockets): the agent's handshake against the gateway's,
// with the failure cases SPEC §2.3 names — wrong secret, replayed or relayed response,
// MD5 refused unless enabled, lock-out after repeated failures — and the agent refusing a
// gateway that cannot prove it knows the machine's verifier.
#include "protocol/agent_handshake.hpp"

#include <catch2/catch.hpp>
#include <map>
#include <random>

#include "protocol/gateway_handshake.hpp"

using namespace rsgate;
using namespace rsgate::tunnel;
using rsgate::agent::agent_handshake;
using rsgate::agent::identity;

namespace {

constexpr const char* kMachine = "9009-42A*7801234";
constexpr const char* kSecret = "correct secret for the machine";

struct world {
  std::mt19937 gen{42};
  auth::limit_policy policy;
  auth::failure_limiter limiter{policy};
  std::map<std::string, machine_record> machines;
  micros now = 1'000'000'000;

  world() {
    machine_record r;
    r.machine = kMachine;
    r.verifier = auth::scram::make_verifier(kSecret, bytes(16, 5), 4096);
    machines[kMachine] = r;
  }
  random_fill rng() {
    return [this](std::span<std::uint8_t> out) {
      for (auto& b : out) b = static_cast<std::uint8_t>(gen());
    };
  }
  machine_lookup lookup() {
    return [this](const std::string& m) -> std::optional<machine_record> {
      auto it = machines.find(m);
      if (it == machines.end()) return std::nullopt;
      return it->second;
    };
  }
  gateway_handshake gateway(const bytes& exporter) { return {exporter, lookup(), limiter, rng()}; }
};

identity agent_id(std::string secret = kSecret, std::vector<std::string> mech = {"scram-sha-256"}) {
  identity id;
  id.machine = kMachine;
  id.secret = std::move(secret);
  id.mechanisms = std::move(mech);
  id.scopes = {{"hmc", "HMC"}};
  return id;
}

struct outcome {
  bool gateway_ok = false;
  bool agent_ok = false;
  gateway_handshake::step last;
};

// Runs HELLO -> CHALLENGE -> RESPONSE -> SUCCESS/FAILURE through the real serialisers.
outcome run(world& w, agent_handshake& a, gateway_handshake& g) {
  std::string why;
  outcome o;
  auto h = parse_hello(to_payload(a.make_hello()), why);
  REQUIRE(h);
  auto s1 = g.on_hello(*h, w.now);
  if (!s1.send_challenge) {
    o.last = s1;
    return o;
  }
  auto c = parse_challenge(to_payload(*s1.send_challenge), why);
  REQUIRE(c);
  auto r = a.on_challenge(*c, why);
  REQUIRE(r);
  g.set_session("S-test");
  auto s2 = g.on_response(*parse_response(to_payload(*r), why), w.now);
  o.last = s2;
  o.gateway_ok = s2.auth_ok.value_or(false);
  if (s2.send_success) o.agent_ok = a.on_success(*parse_success(to_payload(*s2.send_success), why), why);
  return o;
}

}  // namespace

TEST_CASE("SCRAM: the right secret authenticates both ways") {
  world w;
  bytes exporter(32, 1);
  agent_handshake a(agent_id(), exporter, agent::make_client_nonce());
  auto g = w.gateway(exporter);
  auto o = run(w, a, g);
  CHECK(o.gateway_ok);
  CHECK(o.agent_ok);
  CHECK(g.current() == gateway_handshake::state::authenticated);
  CHECK(o.last.send_success->session == "S-test");
}

TEST_CASE("SCRAM: a wrong secret is refused, and so is an unknown machine, alike") {
  world w;
  bytes exporter(32, 1);
  agent_handshake a(agent_id("wrong"), exporter, agent::make_client_nonce());
  auto g = w.gateway(exporter);
  auto o = run(w, a, g);
  CHECK_FALSE(o.gateway_ok);
  REQUIRE(o.last.send_failure);
  auto wrong_reason = o.last.send_failure->reason;

  w.machines.clear();
  agent_handshake a2(agent_id(), exporter, agent::make_client_nonce());
  auto g2 = w.gateway(exporter);
  auto o2 = run(w, a2, g2);  // an unknown machine still gets a challenge...
  CHECK_FALSE(o2.gateway_ok);
  REQUIRE(o2.last.send_failure);
  CHECK(o2.last.send_failure->reason == wrong_reason);  // ...and the same answer
}

TEST_CASE("a response relayed to another TLS connection, or replayed, fails") {
  world w;
  bytes exporter_a(32, 1), exporter_b(32, 2);
  std::string why;
  // The victim's agent answers a challenge on connection A...
  agent_handshake victim(agent_id(), exporter_a, agent::make_client_nonce());
  auto ga = w.gateway(exporter_a);
  auto ca = ga.on_hello(*parse_hello(to_payload(victim.make_hello()), why), w.now).send_challenge;
  REQUIRE(ca);
  auto ra = victim.on_challenge(*ca, why);
  REQUIRE(ra);
  // ...and an attacker relays HELLO and that RESPONSE over its own connection B.
  auto gb = w.gateway(exporter_b);
  auto cb = gb.on_hello(*parse_hello(to_payload(victim.make_hello()), why), w.now).send_challenge;
  REQUIRE(cb);
  auto relayed = *ra;
  relayed.id = cb->id;
  auto s = gb.on_response(relayed, w.now);
  CHECK_FALSE(s.auth_ok.value_or(true));
  // Replaying on A itself after A's challenge was answered fails too.
  CHECK(ga.on_response(*ra, w.now).auth_ok.value_or(false));
  auto replay = ga.on_response(*ra, w.now);
  CHECK_FALSE(replay.auth_ok.value_or(true));
}

TEST_CASE("MD5 only when enabled for the machine") {
  world w;
  bytes exporter(32, 1);
  {
    agent_handshake a(agent_id(kSecret, {"md5"}), exporter, agent::make_client_nonce());
    auto g = w.gateway(exporter);
    auto o = run(w, a, g);
    CHECK_FALSE(o.gateway_ok);
    CHECK(o.last.send_failure.has_value());
  }
  w.machines[kMachine].md5_enabled = true;
  w.machines[kMachine].md5_secret = kSecret;
  {
    agent_handshake a(agent_id(kSecret, {"md5"}), exporter, agent::make_client_nonce());
    auto g = w.gateway(exporter);
    auto o = run(w, a, g);
    CHECK(o.gateway_ok);
    CHECK(o.agent_ok);
    CHECK(g.mechanism() == "md5");
  }
  {
    // An agent that offers both still gets SCRAM when it prefers it.
    agent_handshake a(agent_id(kSecret, {"scram-sha-256", "md5"}), exporter, agent::make_client_nonce());
    auto g = w.gateway(exporter);
    CHECK(run(w, a, g).gateway_ok);
    CHECK(g.mechanism() == "scram-sha-256");
  }
}

TEST_CASE("five failures lock the machine out, the right secret is refused while locked") {
  world w;
  w.policy = {};
  bytes exporter(32, 1);
  for (int i = 0; i < 5; ++i) {
    agent_handshake a(agent_id("wrong"), exporter, agent::make_client_nonce());
    auto g = w.gateway(exporter);
    auto o = run(w, a, g);
    CHECK_FALSE(o.gateway_ok);
    CHECK(o.last.lockout_started == (i == 4));
    w.now += 1'000'000;
  }
  agent_handshake a(agent_id(), exporter, agent::make_client_nonce());
  auto g = w.gateway(exporter);
  auto o = run(w, a, g);
  CHECK_FALSE(o.gateway_ok);
  REQUIRE(o.last.send_failure);
  CHECK(o.last.send_failure->retry_after_seconds > 25 * 60);
  // After the lock-out the right secret works again.
  w.now += 31LL * 60 * 1'000'000;
  agent_handshake a2(agent_id(), exporter, agent::make_client_nonce());
  auto g2 = w.gateway(exporter);
  CHECK(run(w, a2, g2).gateway_ok);
}

TEST_CASE("the agent refuses a gateway that cannot prove the verifier or alters the nonce") {
  world w;
  bytes exporter(32, 1);
  std::string why;
  agent_handshake a(agent_id(), exporter, agent::make_client_nonce());
  auto g = w.gateway(exporter);
  auto c = *g.on_hello(*parse_hello(to_payload(a.make_hello()), why), w.now).send_challenge;
  auto bad_nonce = c;
  bad_nonce.nonce = (c.nonce[0] == 'X' ? "Y" : "X") + c.nonce.substr(1);  // always a different nonce
  CHECK_FALSE(a.on_challenge(bad_nonce, why));
  CHECK_THAT(why, Catch::Contains("nonce"));
  auto r = a.on_challenge(c, why);
  REQUIRE(r);
  g.set_session("S");
  auto s = *g.on_response(*r, w.now).send_success;
  s.server_signature[0] ^= 1;
  CHECK_FALSE(a.on_success(s, why));
  CHECK_THAT(why, Catch::Contains("server signature"));
}

// Both sides of a tunnel that authenticated; answer_rechallenge() is the agent's RESPONSE to
// the gateway's next re-challenge.
struct live_tunnel {
  world w;
  bytes exporter = bytes(32, 1);
  agent_handshake a{agent_id(), exporter, agent::make_client_nonce()};
  gateway_handshake g = w.gateway(exporter);
  live_tunnel() { REQUIRE(run(w, a, g).gateway_ok); }
  response answer_rechallenge() {
    auto c = g.rechallenge(w.now).send_challenge;
    REQUIRE(c);
    std::string why;
    auto r = a.on_challenge(*c, why);
    REQUIRE(r);
    return *r;
  }
};

TEST_CASE("re-challenge on an authenticated tunnel") {
  live_tunnel t;
  std::string why;
  auto r2 = t.answer_rechallenge();
  auto s2 = t.g.on_response(r2, t.w.now);
  CHECK(s2.auth_ok.value_or(false));
  CHECK(t.a.on_success(*s2.send_success, why));
  // Out-of-order messages fail the handshake.
  auto g3 = t.w.gateway(t.exporter);
  CHECK_FALSE(g3.on_response(r2, t.w.now).auth_ok.value_or(true));
}

TEST_CASE("a re-challenge is not ended by a lock-out others caused, nor does it clear their failures") {
  live_tunnel t;
  // Someone who knows only the machine's name locks it out by guessing.
  while (t.w.limiter.allowed(kMachine, t.w.now)) t.w.limiter.record_failure(kMachine, t.w.now);
  auto s = t.g.on_response(t.answer_rechallenge(), t.w.now);
  CHECK(s.auth_ok.value_or(false));  // the live tunnel goes on
  CHECK_FALSE(t.w.limiter.allowed(kMachine, t.w.now));  // and the lock-out stands for newcomers
  // A wrong answer to a re-challenge fails and counts.
  auto r2 = t.answer_rechallenge();
  r2.proof[0] ^= 1;
  auto f = t.g.on_response(r2, t.w.now);
  CHECK_FALSE(f.auth_ok.value_or(false));
  CHECK(f.reason == "wrong response");
}

TEST_CASE("an unknown machine's decoy salt is stable, like a real machine's") {
  world w;
  w.machines.clear();
  bytes exporter(32, 1);
  std::string why;
  auto salt_for = [](const std::string& m) { return bytes(16, static_cast<std::uint8_t>(m.size())); };
  auto challenge_salt = [&] {
    tunnel::gateway_handshake g(exporter, w.lookup(), w.limiter, w.rng(), salt_for);
    agent_handshake a(agent_id(), exporter, agent::make_client_nonce());
    return g.on_hello(*parse_hello(to_payload(a.make_hello()), why), w.now).send_challenge->salt;
  };
  CHECK(challenge_salt() == challenge_salt());
}
