// Test support: a scripted agent for the integration tests, a wire_peer that authenticated
// through the real gateway's CHAP with an enrolled profile's secret (protocol/agent_handshake).
#pragma once
#include <catch2/catch.hpp>

#include <chrono>
#include <filesystem>
#include <memory>
#include <string>

#include "protocol/agent_handshake.hpp"
#include "protocol/messages.hpp"
#include "protocol/profile.hpp"
#include "tests/support/wire_peer.hpp"

namespace rsgate::test {

struct scripted_agent {
  std::unique_ptr<wire_peer> peer;
  std::string session;
  tunnel::success success;  // as the gateway sent it: its timings (docs/protocol.md §4.4)
};

// HELLO, CHALLENGE, RESPONSE and SUCCESS (its server signature verified) on `peer`, a fresh
// tunnel connection, as the machine of `profile`.
inline scripted_agent authenticate_agent(std::unique_ptr<wire_peer> peer, const std::filesystem::path& profile) {
  using namespace std::chrono_literals;
  auto prof = agent::load_profile(profile);
  scripted_agent a;
  a.peer = std::move(peer);
  agent::identity id;
  id.machine = prof.machine();
  id.secret = prof.secret;
  for (auto& s : prof.scopes)  // as the real agent offers them (docs/protocol.md §8.1)
    if (s.policy != agent::scope_policy::deny) id.scopes.push_back({s.name, "", s.policy == agent::scope_policy::ask});
  id.approval_seconds = prof.approval_seconds;
  agent::agent_handshake hs(id, a.peer->exporter(), agent::make_client_nonce());
  REQUIRE(a.peer->send(tunnel::frame_type::hello, tunnel::to_payload(hs.make_hello())));
  auto c = a.peer->recv_until(tunnel::frame_type::challenge, 10s);
  REQUIRE(c);
  std::string why;
  auto ch = tunnel::parse_challenge(c->payload, why);
  REQUIRE(ch);
  auto r = hs.on_challenge(*ch, why);
  REQUIRE(r);
  REQUIRE(a.peer->send(tunnel::frame_type::response, tunnel::to_payload(*r)));
  auto s = a.peer->recv(15s);
  REQUIRE(s);
  REQUIRE(s->header.type == tunnel::frame_type::success);
  auto ok = tunnel::parse_success(s->payload, why);
  REQUIRE(ok);
  REQUIRE(hs.on_success(*ok, why));
  a.session = ok->session;
  a.success = *ok;
  return a;
}

}  // namespace rsgate::test
