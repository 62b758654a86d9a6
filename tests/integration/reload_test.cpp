// SIGHUP at the gateway (issue 9, docs/operations.md §7): the configuration and the
// certificate read again without dropping a tunnel; new connections get the new certificate
// and new tunnels the new timings; what needs a restart is named, not applied; a reload that
// cannot be done changes nothing. Each outcome journaled as gateway.reload.
#include <csignal>
#include <fstream>
#include <thread>

#include <catch2/catch.hpp>

#include "core/files.hpp"
#include "tests/integration/gateway_fixture.hpp"
#include "tests/integration/scripted_agent.hpp"

using namespace rsgate;
using namespace rsgate::test;
using namespace std::chrono_literals;
namespace json = boost::json;

namespace {

// The SHA-256 fingerprint, lower-case hex without colons, of a PEM certificate.
std::string fingerprint_of_pem(const std::filesystem::path& pem) {
  auto r = run({"openssl", "x509", "-in", pem.string(), "-noout", "-fingerprint", "-sha256"});
  REQUIRE(r.exit_code == 0);
  std::string hex;
  for (char c : r.out.substr(r.out.find('=') + 1))
    if (std::isxdigit(static_cast<unsigned char>(c))) hex += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return hex;
}

// What a new TLS connection to `hostport` is served (ALPN `alpn`), as a fingerprint.
std::string served_fingerprint(const temp_dir& t, const std::string& hostport, const std::string& alpn) {
  auto r = run({"openssl", "s_client", "-connect", hostport, "-servername", "localhost", "-alpn", alpn, "-showcerts"},
               "", 20s);
  auto begin = r.out.find("-----BEGIN CERTIFICATE-----");
  auto end = r.out.find("-----END CERTIFICATE-----");
  REQUIRE(begin != std::string::npos);
  REQUIRE(end != std::string::npos);
  auto file = t / ("served-" + std::to_string(std::hash<std::string>{}(r.out)) + ".pem");
  std::ofstream(file) << r.out.substr(begin, end + 25 - begin) << "\n";
  return fingerprint_of_pem(file);
}

// A new server certificate for localhost/127.0.0.1 from the data directory's own CA, put in
// place of DIR/server.pem and DIR/keys/server.key (as an operator renews one).
void renew_certificate(const std::filesystem::path& dir, const temp_dir& t) {
  auto key = t / "new.key", csr = t / "new.csr", pem = t / "new.pem", ext = t / "san.ext";
  std::ofstream(ext) << "subjectAltName=DNS:localhost,IP:127.0.0.1\n";
  REQUIRE(run({"openssl", "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout",
               key.string(), "-subj", "/CN=localhost", "-out", csr.string()})
              .exit_code == 0);
  REQUIRE(run({"openssl", "x509", "-req", "-in", csr.string(), "-CA", (dir / "ca.pem").string(), "-CAkey",
               (dir / "keys" / "ca.key").string(), "-CAcreateserial", "-days", "2", "-out", pem.string(), "-extfile",
               ext.string()})
              .exit_code == 0);
  std::filesystem::rename(key, dir / "keys" / "server.key");
  std::filesystem::rename(pem, dir / "server.pem");
}

std::vector<json::object> reloads(gateway_fixture& f) {
  auto r = rsgate_cmd({"journal", "query", "--data", f.dir.string(), "--kind", "gateway.reload", "--format", "json"});
  REQUIRE(r.exit_code == 0);
  std::vector<json::object> v;
  std::istringstream in(r.out);
  for (std::string l; std::getline(in, l);) v.push_back(json::parse(l).as_object());
  return v;
}

void set_in_config(const std::filesystem::path& cfg, const std::string& from, const std::string& to) {
  auto text = read_file(cfg);
  auto at = text.find(from);
  REQUIRE(at != std::string::npos);
  text.replace(at, from.size(), to);
  std::ofstream(cfg) << text;
}

}  // namespace

TEST_CASE("SIGHUP reloads the certificate and the tunnel timings without dropping a tunnel, journaled") {
  gateway_fixture f;
  const auto before = fingerprint_of_pem(f.dir / "server.pem");
  CHECK(served_fingerprint(f.t, f.https, "http/1.1") == before);
  auto sess = start_and_attach(f, f.enroll("7801398"), "alice", "TS000000398");

  renew_certificate(f.dir, f.t);
  const auto after = fingerprint_of_pem(f.dir / "server.pem");
  REQUIRE(after != before);
  const auto cfg = f.dir / "rsgate.toml";
  set_in_config(cfg, "keepalive = 90 ", "keepalive = 30 ");
  set_in_config(cfg, "max_connections = 1024", "max_connections = 1000");  // takes a restart
  f.gw->signal(SIGHUP);
  std::vector<json::object> r;
  REQUIRE(eventually([&] { return !(r = reloads(f)).empty(); }));
  REQUIRE(r.size() == 1);
  CHECK(r[0]["outcome"].as_string() == "ok");
  auto d = r[0]["detail"].as_object();
  CHECK(d["certificate_sha256"].as_string() == after);
  CHECK(json::serialize(d["restart_required"]) == R"(["http limits"])");

  // New connections, HTTPS and tunnel alike, get the new certificate.
  CHECK(served_fingerprint(f.t, f.https, "http/1.1") == after);
  CHECK(served_fingerprint(f.t, f.tunnel, "rsgate/1") == after);
  // New tunnels get the new dead-peer bound.
  wire_peer::client_options o;
  o.timeout = 10s;
  auto fresh = authenticate_agent(wire_peer::connect(f.tunnel, o), f.enroll("7801399"));
  CHECK(fresh.success.keepalive_seconds == 30);
  // The live tunnel was not touched: still the same session, nothing closed.
  auto st = run({agent_binary(), "status", "--json", "--control", sess.control});
  REQUIRE(st.exit_code == 0);
  CHECK(json::parse(st.out).as_object()["session"].as_string() == sess.sid);
  CHECK(f.kinds("tunnel.close", "ok").empty());
  CHECK(f.kinds("tunnel.close", "error").empty());
  CHECK(f.api("GET", "/api/v1/sessions/" + sess.sid, "alice").body["state"].as_string() == "active");

  // A configuration that cannot be read: nothing changes, the reason is journaled.
  auto good = read_file(cfg);
  std::ofstream(cfg) << good << "\n[tunnel\n";
  f.gw->signal(SIGHUP);
  REQUIRE(eventually([&] { return (r = reloads(f)).size() == 2; }));
  CHECK(r[1]["outcome"].as_string() == "error");
  CHECK_THAT(std::string(r[1]["detail"].as_object()["reason"].as_string()), Catch::Contains("rsgate.toml"));
  // A key that does not fit the certificate: nothing changes either.
  std::ofstream(cfg) << good;
  std::filesystem::copy_file(f.dir / "keys" / "ca.key", f.dir / "keys" / "server.key",
                             std::filesystem::copy_options::overwrite_existing);
  f.gw->signal(SIGHUP);
  REQUIRE(eventually([&] { return (r = reloads(f)).size() == 3; }));
  CHECK(r[2]["outcome"].as_string() == "error");
  CHECK_THAT(std::string(r[2]["detail"].as_object()["reason"].as_string()), Catch::Contains("private key"));
  CHECK(served_fingerprint(f.t, f.https, "http/1.1") == after);
  CHECK(f.raw("GET", "/healthz", {}).first == 200);
  CHECK(rsgate_cmd({"journal", "verify", "--data", f.dir.string()}).exit_code == 0);
  REQUIRE(run({agent_binary(), "stop", "--control", sess.control}).exit_code == 0);
  CHECK(sess.agent->wait(20s) == 0);
}
