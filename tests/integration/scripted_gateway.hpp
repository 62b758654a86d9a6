// A scripted, possibly hostile, gateway for the real `rsgate-agent`: a TLS listener with a
// certificate from a CA the test made (so the agent's pinned CA and name check pass, as they
// would for an attacker holding such a certificate), an agent profile pointing at it, and the
// steps of the handshake one by one. It knows the machine's secret, so it can also complete a
// correct SCRAM exchange when a test needs an authenticated tunnel. The scope `hmc` maps to a
// local port the test chooses; `silent_target` is a listener that must never see a connection.
#pragma once
#include <catch2/catch.hpp>
#include <fcntl.h>
#include <sys/socket.h>

#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "protocol/profile.hpp"
#include "auth/scram.hpp"
#include "core/files.hpp"
#include "core/timefmt.hpp"
#include "gateway/pki.hpp"
#include "protocol/messages.hpp"
#include "tests/support/echo_server.hpp"
#include "tests/support/process.hpp"
#include "tests/support/wire_peer.hpp"
#include "tests/support/loopback.hpp"

namespace rsgate::test {

inline constexpr const char* kHostileMachine = "9009-42A*7801234";
inline constexpr const char* kHostileSecret = "Zk4v0VQ9u2c8mB1xH7rT3pL6sN5yW0aE";

// A listening socket nobody accepts on: a connection the agent makes still completes in the
// kernel's backlog, so a non-blocking accept tells whether one was ever made.
class silent_target {
 public:
  silent_target() {
    fd_ = listen_loopback(port_, "silent_target", 16, SOCK_NONBLOCK);
  }
  ~silent_target() { ::close(fd_); }
  silent_target(const silent_target&) = delete;
  silent_target& operator=(const silent_target&) = delete;
  [[nodiscard]] std::uint16_t port() const { return port_; }
  // Connections made to it so far.
  int connections() {
    int n = 0;
    for (int c; (c = ::accept4(fd_, nullptr, nullptr, SOCK_CLOEXEC)) >= 0; ++n) ::close(c);
    return n;
  }

 private:
  int fd_ = -1;
  std::uint16_t port_ = 0;
};

inline std::string rfc3339_in(std::int64_t seconds) {
  return format_rfc3339(system_clock::instance().now() + seconds * 1'000'000);
}

struct scripted_gateway {
  temp_dir t;
  gateway::issued_pair ca = gateway::make_ca("hostile test CA", 2);
  gateway::issued_pair cert = gateway::make_server_cert(ca, "localhost", {"localhost", "127.0.0.1"}, 2);
  std::unique_ptr<wire_listener> listener;
  std::filesystem::path profile = t / "agent.toml", control = t / "agent.sock", err_file = t / "agent.err";
  std::unique_ptr<child> agent;
  std::unique_ptr<wire_peer> peer;
  tunnel::hello hello;
  tunnel::challenge challenge;
  auth::scram::verifier verifier = auth::scram::make_verifier(kHostileSecret, bytes(16, 7), 4096);
  std::vector<tunnel::frame> received;  // every frame the agent sent, in order

  // `alpn`: what the listener selects ("" selects none). `scope_port`: where scope hmc points.
  explicit scripted_gateway(std::uint16_t scope_port, const std::string& alpn = "rsgate/1") {
    ::signal(SIGPIPE, SIG_IGN);  // the agent may close while this side still writes
    std::ofstream(t / "cert.pem") << cert.cert_pem;
    std::ofstream(t / "key.pem") << cert.key_pem;
    listener = std::make_unique<wire_listener>((t / "cert.pem").string(), (t / "key.pem").string(), alpn);
    agent::profile p;
    p.primary = "127.0.0.1:" + std::to_string(listener->port());
    p.server_name = "localhost";
    p.ca_pem = ca.cert_pem;
    p.type = "9009";
    p.model = "42A";
    p.serial = "7801234";
    p.secret = kHostileSecret;
    p.scopes = {{"hmc", "127.0.0.1", scope_port}};
    write_file_atomic(profile, agent::to_toml(p), 0600);
  }

  // `rsgate-agent start` against this gateway, then the TLS connection it makes. `program`:
  // the command line before `start` (default: the agent binary).
  void start_agent(std::vector<std::string> program = {}, bool with_control = true) {
    std::vector<std::string> argv = program.empty() ? std::vector<std::string>{agent_binary()} : std::move(program);
    for (auto a : {std::string("start"), std::string("--profile"), profile.string()}) argv.push_back(a);
    if (with_control) {
      argv.push_back("--control");
      argv.push_back(control.string());
    }
    agent = std::make_unique<child>(argv, err_file);
    peer = listener->accept(std::chrono::seconds(10));
    REQUIRE(peer);
  }

  std::optional<tunnel::frame> next(std::chrono::milliseconds timeout = std::chrono::seconds(10)) {
    auto f = peer->recv(timeout);
    if (f) received.push_back(*f);
    return f;
  }
  tunnel::frame expect(tunnel::frame_type type) {
    auto f = next();
    REQUIRE(f);
    REQUIRE(tunnel::name_of(f->header.type) == tunnel::name_of(type));
    return *f;
  }

  void read_hello() {
    std::string why;
    auto h = tunnel::parse_hello(expect(tunnel::frame_type::hello).payload, why);
    REQUIRE(h);
    hello = *h;
  }
  void send_challenge() {
    challenge.id = 7;
    challenge.mechanism = std::string(tunnel::kMechanismScram);
    challenge.nonce = hello.client_nonce + "ScriptedGatewayNonce0123456789";
    challenge.salt = verifier.salt;
    challenge.iterations = verifier.iterations;
    REQUIRE(peer->send(tunnel::frame_type::challenge, tunnel::to_payload(challenge)));
  }
  std::string auth_message() const {
    return tunnel::scram_auth_message(kHostileMachine, hello.client_nonce, challenge, peer->exporter());
  }
  // Reads RESPONSE and checks the proof: the agent really holds the secret.
  void read_response() {
    std::string why;
    auto r = tunnel::parse_response(expect(tunnel::frame_type::response).payload, why);
    REQUIRE(r);
    REQUIRE(r->proof.size() == 32);
    auth::scram::key proof{};
    std::copy(r->proof.begin(), r->proof.end(), proof.begin());
    REQUIRE(auth::scram::verify_proof(verifier, auth_message(), proof));
  }
  void send_success(bool right_signature = true) {
    tunnel::success s;
    s.id = challenge.id;
    auto sig = auth::scram::server_signature(verifier, auth_message());
    if (!right_signature) sig[0] ^= 1;
    s.server_signature.assign(sig.begin(), sig.end());
    s.session = "S-2026-11-27-SCRIPTED";
    REQUIRE(peer->send(tunnel::frame_type::success, tunnel::to_payload(s)));
  }
  // HELLO, CHALLENGE, RESPONSE, SUCCESS; then the agent's KEY_OFFER, acknowledged, and its
  // "Session key:" line.
  tunnel::key_offer authenticate_and_ack_key() {
    read_hello();
    send_challenge();
    read_response();
    send_success();
    auto k = read_key_offer();
    REQUIRE(peer->send(tunnel::frame_type::key_ack, tunnel::to_payload(tunnel::key_ack{rfc3339_in(k.expires_in)})));
    REQUIRE(agent->wait_for("Session key: " + k.key, std::chrono::seconds(10)));
    return k;
  }
  tunnel::key_offer read_key_offer() {
    std::string why;
    auto k = tunnel::parse_key_offer(expect(tunnel::frame_type::key_offer).payload, why);
    REQUIRE(k);
    return *k;
  }

  // The agent's exit code (nullopt if it is still running after `timeout`).
  std::optional<int> wait_exit(std::chrono::milliseconds timeout = std::chrono::seconds(10)) {
    return agent->wait(timeout);
  }
  // Everything else the agent sends until it closes the connection.
  void read_until_closed(std::chrono::milliseconds timeout = std::chrono::seconds(5)) {
    while (next(timeout)) {
    }
  }
  // ERROR codes among the frames received.
  std::vector<std::string> error_codes() const {
    std::vector<std::string> out;
    for (auto& f : received) {
      if (f.header.type != tunnel::frame_type::error) continue;
      std::string why;
      auto e = tunnel::parse_error(f.payload, why);
      out.push_back(e ? e->code : "(malformed)");
    }
    return out;
  }
  bool received_type(tunnel::frame_type type) const {
    for (auto& f : received)
      if (f.header.type == type) return true;
    return false;
  }
  // The rest of the agent's standard output (after it exited).
  std::string rest_of_stdout() {
    std::string out;
    while (auto l = agent->read_line(std::chrono::seconds(2))) out += *l + "\n";
    return out;
  }
  std::string stderr_text() const { return read_file(err_file, 1 << 20); }
};

}  // namespace rsgate::test
