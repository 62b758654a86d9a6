// A real peer through the whole path: OpenSSH's sshd on loopback is the customer's target,
// the real ssh and scp clients go through `rsgate connect` -> gateway -> tunnel -> agent ->
// sshd. A file of several hundred MiB copied with scp arrives with the same SHA-256.
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <fstream>
#include <map>
#include <thread>

#include "core/files.hpp"
#include "tests/integration/common.hpp"
#include "tests/support/echo_server.hpp"

using namespace rsgate;
using namespace rsgate::test;
namespace json = boost::json;

namespace {

constexpr auto kWait = std::chrono::seconds(60);

std::uint16_t free_port() {
  int s = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  ::bind(s, reinterpret_cast<sockaddr*>(&a), sizeof a);
  ::getsockname(s, reinterpret_cast<sockaddr*>(&a), &len);
  ::close(s);
  return ntohs(a.sin_port);
}

bool port_open(std::uint16_t port) {
  int s = connect_local(port);
  if (s < 0) return false;
  ::close(s);
  return true;
}

std::string sha256_of(const std::filesystem::path& p) {
  auto r = run({"sha256sum", p.string()}, "", std::chrono::seconds(120));
  REQUIRE(r.exit_code == 0);
  return r.out.substr(0, 64);
}

}  // namespace

TEST_CASE("OpenSSH through rsgate connect: ssh runs a command, scp copies 300 MiB intact") {
  temp_dir t;
  // The customer's target: sshd on loopback, key authentication only.
  REQUIRE(std::filesystem::exists("/usr/sbin/sshd"));
  std::filesystem::create_directories("/run/sshd");  // sshd's privilege-separation directory
  REQUIRE(run({"ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", (t / "host_key").string()}).exit_code == 0);
  REQUIRE(run({"ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", (t / "id_ed25519").string()}).exit_code == 0);
  std::filesystem::copy_file(t / "id_ed25519.pub", t / "authorized_keys");
  auto sshd_port = free_port();
  std::ofstream(t / "sshd_config") << "Port " << sshd_port << "\nListenAddress 127.0.0.1\nHostKey "
                                   << (t / "host_key").string() << "\nPidFile " << (t / "sshd.pid").string()
                                   << "\nAuthorizedKeysFile " << (t / "authorized_keys").string()
                                   << "\nPasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\n"
                                      "StrictModes no\nPermitRootLogin prohibit-password\nSubsystem sftp internal-sftp\n";
  child sshd({"/usr/sbin/sshd", "-D", "-e", "-f", (t / "sshd_config").string()}, t / "sshd.err");
  for (int i = 0; i < 200 && !port_open(sshd_port); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(50));
  REQUIRE(port_open(sshd_port));

  // The gateway, the enrolled machine offering sshd as scope "hmc", the agent, an owner.
  auto dir = t / "gw";
  init_data_dir(dir, "gw-ssh", true);
  auto cfg = read_file(dir / "rsgate.toml");
  for (auto port : {"8443", "4433"}) {
    auto from = std::string("listen = \"127.0.0.1:") + port + "\"";
    cfg.replace(cfg.find(from), from.size(), "listen = \"127.0.0.1:0\"");
  }
  // Two I/O threads: the 300 MiB cross between threads (the default, one, is what the flow
  // tests and the benchmark run).
  auto t1 = cfg.find("threads = 1 ");
  REQUIRE(t1 != std::string::npos);
  cfg.replace(t1, 11, "threads = 2");
  std::ofstream(dir / "rsgate.toml") << cfg;
  child gw({rsgate_binary(), "serve", "--config", (dir / "rsgate.toml").string()}, t / "gw.err");
  auto tline = gw.wait_for("tunnel: ", kWait);
  REQUIRE(tline);
  auto tunnel = tline->substr(tline->find("tunnel: ") + 8);
  auto cline = gw.wait_for("console: https://", kWait);
  REQUIRE(cline);
  auto https = cline->substr(cline->find("https://") + 8);
  https.pop_back();
  REQUIRE(rsgate_cmd({"machine", "enroll", "--type", "9009", "--model", "42A", "--serial", "SSH0001", "--scope",
                      "hmc=127.0.0.1:" + std::to_string(sshd_port), "--gateway", tunnel, "--profile-out",
                      (t / "m.toml").string(), "--data", dir.string()}).exit_code == 0);
  REQUIRE(rsgate_cmd({"user", "add", "alice", "--role", "representative", "--password-stdin", "--data", dir.string()},
                     "a long enough password\n").exit_code == 0);
  auto tok = rsgate_cmd({"token", "create", "--user", "alice", "--data", dir.string()});
  auto token = tok.out.substr(0, tok.out.size() - 1);
  child agent({agent_binary(), "start", "--profile", (t / "m.toml").string(), "--control", (t / "a.sock").string()},
              t / "agent.err");
  auto kline = agent.wait_for("Session key: ", kWait);
  REQUIRE(kline);
  auto key = kline->substr(kline->find(": ") + 2);
  auto att = run({"curl", "-sS", "--cacert", (dir / "ca.pem").string(), "-H", "Authorization: Bearer " + token, "--data",
                  json::serialize(json::object{{"session_key", key}, {"pmr", "TS000000044"}}),
                  "https://" + https + "/api/v1/sessions/attach"});
  REQUIRE(att.exit_code == 0);
  auto sid = std::string(json::parse(att.out).as_object()["id"].as_string());
  child conn({rsgate_binary(), "connect", "--gateway", "https://" + https, "--token", token, "--session", sid,
              "--scope", "hmc", "--access-type", "ssh", "--listen", "127.0.0.1:0", "--ca", (dir / "ca.pem").string()},
             t / "connect.err");
  auto lline = conn.wait_for("listening on 127.0.0.1:", kWait);
  REQUIRE(lline);
  auto local_port = lline->substr(lline->find("127.0.0.1:") + 10);
  local_port = local_port.substr(0, local_port.find(' '));

  std::vector<std::string> ssh_opts = {"-i", (t / "id_ed25519").string(), "-o", "StrictHostKeyChecking=no", "-o",
                                       "UserKnownHostsFile=/dev/null", "-o", "BatchMode=yes", "-o", "LogLevel=ERROR"};
  std::vector<std::string> ssh = {"ssh", "-p", local_port};
  ssh.insert(ssh.end(), ssh_opts.begin(), ssh_opts.end());
  ssh.insert(ssh.end(), {"root@127.0.0.1", "echo", "hello-through-rsgate"});
  auto r = run(ssh, "", std::chrono::seconds(120));
  INFO(r.err);
  REQUIRE(r.exit_code == 0);
  CHECK(r.out == "hello-through-rsgate\n");

  // 300 MiB with scp, checked end to end.
  REQUIRE(run({"sh", "-c", "head -c 314572800 /dev/urandom > " + (t / "big.bin").string()}, "", std::chrono::seconds(120))
              .exit_code == 0);
  std::vector<std::string> scp = {"scp", "-q", "-P", local_port};
  scp.insert(scp.end(), ssh_opts.begin(), ssh_opts.end());
  scp.insert(scp.end(), {(t / "big.bin").string(), "root@127.0.0.1:" + (t / "copy.bin").string()});
  auto c = run(scp, "", std::chrono::seconds(600));
  INFO(c.err);
  REQUIRE(c.exit_code == 0);
  CHECK(std::filesystem::file_size(t / "copy.bin") == 314572800);
  CHECK(sha256_of(t / "copy.bin") == sha256_of(t / "big.bin"));

  auto q = rsgate_cmd({"journal", "query", "--data", dir.string(), "--kind", "channel.close", "--format", "json"});
  CHECK(line_count(q.out) == 2);  // the ssh command and the scp
  CHECK(q.out.find("\"access_type\":\"ssh\"") != std::string::npos);
  conn.signal(SIGTERM);
  (void)conn.wait(std::chrono::seconds(20));
  agent.signal(SIGTERM);
  CHECK(agent.wait(std::chrono::seconds(20)) == 0);
  gw.signal(SIGTERM);
  CHECK(gw.wait(std::chrono::seconds(20)) == 0);
  sshd.signal(SIGTERM);
  (void)sshd.wait(std::chrono::seconds(20));
}
