// Accounts through the real programs: `rsgate user add` enrols TOTP (the otpauth URI on a line
// of its own, the QR code on a terminal, recovery codes), Debian's oathtool computes the code
// as a phone would, curl signs in with it over real TLS; totp-reset, disable and enable.
#include <boost/json/parse.hpp>
#include <cctype>

#include "tests/integration/gateway_fixture.hpp"

using namespace rsgate;
using namespace rsgate::test;

namespace {

std::pair<int, std::string> login(gateway_fixture& f, const std::string& user, const std::string& password,
                                  const std::string& totp) {
  std::string body = R"({"user":")" + user + R"(","password":")" + password + R"(")";
  if (!totp.empty()) body += R"(,"totp":")" + totp + R"(")";
  return f.raw("POST", "/api/v1/login", {}, body + "}");
}

std::string error_code(const std::string& body) {
  return std::string(json::parse(body).as_object()["error"].as_object()["code"].as_string());
}

}  // namespace

TEST_CASE("TOTP through the real programs: enrolment, an oathtool code signs in once, recovery codes, reset") {
  gateway_fixture f;
  const auto d = f.dir.string();
  // A representative added with a one-time password: the password line first, then the URI
  // on a line of its own, then ten recovery codes.
  auto added = rsgate_cmd({"user", "add", "erin", "--role", "representative", "--data", d});
  REQUIRE(added.exit_code == 0);
  auto otp = added.out.substr(added.out.find(": ") + 2, added.out.find('\n') - added.out.find(": ") - 2);
  std::istringstream lines(added.out);
  std::string uri;
  std::vector<std::string> codes;
  for (std::string l; std::getline(lines, l);) {
    if (l.starts_with("otpauth://")) uri = l;
    if (l.starts_with("  ")) codes.push_back(l.substr(2));
  }
  INFO(added.out);
  REQUIRE(uri.starts_with("otpauth://totp/gw-flow:erin?secret="));
  CHECK(uri.find("&issuer=gw-flow&algorithm=SHA1&digits=6&period=30") != std::string::npos);
  REQUIRE(codes.size() == 10);
  CHECK(added.out.find("\u2588") == std::string::npos);  // no QR code into a pipe
  // Developers and auditors get none.
  auto dev = rsgate_cmd({"user", "add", "fred", "--role", "developer", "--data", d});
  CHECK(dev.out.find("otpauth://") == std::string::npos);

  // The one-time password must be changed, with a code from the app.
  auto first = login(f, "erin", otp, "");
  CHECK(first.first == 403);
  CHECK(error_code(first.second) == "password_change_required");
  auto changed = f.raw("POST", "/api/v1/login", {},
                       R"({"user":"erin","password":")" + otp +
                           R"(","new_password":"erin's own long password","totp":")" + oath_code(uri) + R"("})");
  CHECK(changed.first == 200);
  // Missing, wrong and reused codes are refused, each with its reason.
  auto missing = login(f, "erin", "erin's own long password", "");
  CHECK(missing.first == 401);
  CHECK(error_code(missing.second) == "totp_required");
  auto reused = login(f, "erin", "erin's own long password", oath_code(uri));
  CHECK(reused.first == 401);
  CHECK(error_code(reused.second) == "wrong_totp");
  // The next step's code (the gateway allows one step of skew) works, once.
  CHECK(login(f, "erin", "erin's own long password", oath_code(uri, 1)).first == 200);
  // A recovery code works once.
  CHECK(login(f, "erin", "erin's own long password", codes[3]).first == 200);
  CHECK(login(f, "erin", "erin's own long password", codes[3]).first == 401);

  // The list shows who has TOTP, never a secret.
  auto list = rsgate_cmd({"user", "list", "--format", "json", "--data", d});
  REQUIRE(list.exit_code == 0);
  CHECK(list.out.find(R"("name":"erin","role":"representative")") != std::string::npos);
  CHECK(list.out.find(R"("totp":true,"recovery_codes_left":9)") != std::string::npos);
  CHECK(list.out.find(uri.substr(uri.find("secret=") + 7, 32)) == std::string::npos);
  CHECK(read_file(f.dir / "state.db").find(uri.substr(uri.find("secret=") + 7, 32)) == std::string::npos);

  // totp-reset: a new secret and new codes; the old ones stop working.
  auto reset = rsgate_cmd({"user", "totp-reset", "erin", "--data", d});
  REQUIRE(reset.exit_code == 0);
  auto at = reset.out.find("otpauth://");
  REQUIRE(at != std::string::npos);
  auto uri2 = reset.out.substr(at, reset.out.find('\n', at) - at);
  CHECK(uri2 != uri);
  CHECK(login(f, "erin", "erin's own long password", codes[4]).first == 401);
  CHECK(login(f, "erin", "erin's own long password", oath_code(uri2)).first == 200);
  CHECK(rsgate_cmd({"user", "totp-reset", "nobody", "--data", d}).exit_code == 1);

  // disable and enable.
  CHECK(rsgate_cmd({"user", "disable", "erin", "--data", d}).exit_code == 0);
  CHECK(login(f, "erin", "erin's own long password", oath_code(uri2, 1)).first == 401);
  CHECK(rsgate_cmd({"user", "enable", "fred", "--data", d}).exit_code == 1);  // not disabled
  CHECK(rsgate_cmd({"user", "enable", "erin", "--data", d}).exit_code == 0);
  CHECK(login(f, "erin", "erin's own long password", oath_code(uri2, 1)).first == 200);

  // Every step is in the journal, no secret in it.
  auto q = rsgate_cmd({"journal", "query", "--data", d, "--kind", "admin.user", "--format", "json"});
  REQUIRE(q.exit_code == 0);
  for (auto action : {"\"action\":\"totp-reset\"", "\"action\":\"disable\"", "\"action\":\"enable\""})
    CHECK(q.out.find(action) != std::string::npos);
  auto logins = rsgate_cmd({"journal", "query", "--data", d, "--kind", "user.login", "--format", "json"});
  CHECK(logins.out.find("\"second_factor\":\"recovery_code\"") != std::string::npos);
  CHECK(logins.out.find("\"reason\":\"wrong_totp\"") != std::string::npos);
  CHECK(logins.out.find("\"reason\":\"totp_required\"") != std::string::npos);
  for (auto& c : codes) CHECK(logins.out.find(c) == std::string::npos);
}

TEST_CASE("user add on a terminal shows the QR code of the URI") {
  temp_dir t;
  auto dir = t / "d";
  init_data_dir(dir);
  // util-linux's script(1) gives the command a terminal.
  auto r = run({"script", "-qec",
                rsgate_binary() + " user add gina --role admin --data " + dir.string(),
                "/dev/null"});
  INFO(r.out << r.err);
  REQUIRE(r.exit_code == 0);
  CHECK(r.out.find("otpauth://totp/") != std::string::npos);
  // Full and half blocks, rows of the same width.
  CHECK(r.out.find("\u2588") != std::string::npos);
  CHECK(r.out.find("\u2580") != std::string::npos);
  CHECK(r.out.find("\u2584") != std::string::npos);
}

TEST_CASE("tokens through the real programs: --out writes mode 0600, list shows ids, revoke stops it at once") {
  gateway_fixture f;
  const auto d = f.dir.string();
  const auto file = f.t / "alice.token";
  auto made = rsgate_cmd({"token", "create", "--user", "alice", "--expires-in", "2h", "--out", file.string(), "--data", d});
  REQUIRE(made.exit_code == 0);
  CHECK((std::filesystem::status(file).permissions() & std::filesystem::perms::all) ==
        (std::filesystem::perms::owner_read | std::filesystem::perms::owner_write));
  auto token = read_file(file);
  token.pop_back();
  CHECK(made.out.find(token) == std::string::npos);  // the file, not the terminal, holds it
  CHECK(rsgate_cmd({"token", "create", "--user", "alice", "--out", file.string(), "--data", d}).exit_code == 1);
  // curl with it: GET /me says who and which token.
  auto me = f.raw("GET", "/api/v1/me", {"Authorization: Bearer " + token});
  REQUIRE(me.first == 200);
  auto id = std::string(json::parse(me.second).as_object()["token"].as_string());
  CHECK(made.out.find(id) != std::string::npos);
  auto list = rsgate_cmd({"token", "list", "--user", "alice", "--format", "json", "--data", d});
  REQUIRE(list.exit_code == 0);
  CHECK(line_count(list.out) == 2);  // the fixture's and this one
  CHECK(list.out.find(R"({"id":")" + id + R"(","user":"alice")") != std::string::npos);
  CHECK(list.out.find(token) == std::string::npos);
  // Revoked from the command line: the running gateway refuses it from the next request.
  CHECK(rsgate_cmd({"token", "revoke", id, "--data", d}).exit_code == 0);
  CHECK(f.raw("GET", "/api/v1/me", {"Authorization: Bearer " + token}).first == 401);
  CHECK(rsgate_cmd({"token", "revoke", id, "--data", d}).exit_code == 1);
  auto upper = id;
  for (auto& ch : upper) ch = static_cast<char>(std::toupper(static_cast<unsigned char>(ch)));
  CHECK(rsgate_cmd({"token", "revoke", upper, "--data", d}).exit_code == 1);  // found (either case), revoked already
  CHECK(rsgate_cmd({"token", "revoke", "xyz", "--data", d}).exit_code == 2);
  auto after = rsgate_cmd({"token", "list", "--user", "alice", "--data", d});
  CHECK(after.out.find(id + "  alice                    revoked") != std::string::npos);
  auto q = rsgate_cmd({"journal", "query", "--data", d, "--kind", "admin.user", "--format", "json"});
  CHECK(q.out.find(R"("action":"token_revoke")") != std::string::npos);
}

TEST_CASE("an administrator enrolls a machine over the API, downloads its profile once, its agent connects") {
  gateway_fixture f;
  f.add_user("root", "admin");
  const auto auth = "Authorization: Bearer " + f.tokens.at("root");
  auto enrolled = f.raw("POST", "/api/v1/machines", {auth},
                        R"({"type":"9009","model":"42A","serial":"7801500","scopes":["hmc=127.0.0.1:9"],"gateway":")" +
                            f.tunnel + R"("})");
  REQUIRE(enrolled.first == 201);
  auto url = std::string(json::parse(enrolled.second).as_object()["profile"].as_string());
  // curl downloads it as a browser would: into a file named by Content-Disposition.
  const auto profile = f.t / "downloaded.toml";
  auto got = run({"curl", "-sS", "--cacert", (f.dir / "ca.pem").string(), "-H", auth, "-g", "-D", "-", "-o",
                  profile.string(), "https://" + f.https + url});
  REQUIRE(got.exit_code == 0);
  CHECK(got.out.find("Content-Disposition: attachment; filename=\"9009-42A_7801500.toml\"") != std::string::npos);
  CHECK(f.raw("GET", url, {auth}).first == 404);  // once
  std::filesystem::permissions(profile, std::filesystem::perms::owner_read | std::filesystem::perms::owner_write);
  // The machine is offline, then its agent connects with the downloaded profile: online.
  auto machines = [&] {
    auto r = f.raw("GET", "/api/v1/machines", {auth});
    REQUIRE(r.first == 200);
    auto all = json::parse(r.second);  // kept: the loop must not run over a destroyed temporary
    for (auto& m : all.as_object()["machines"].as_array())
      if (m.as_object()["machine"].as_string() == "9009-42A*7801500") return m.as_object();
    FAIL("the machine is not listed");
    return json::object{};
  };
  CHECK(machines()["online"].as_bool() == false);
  CHECK(machines()["since"].is_null());
  auto sess = start_and_attach(f, profile, "alice", "TS000001500");
  auto m = machines();
  CHECK(m["online"].as_bool());
  CHECK(m["since"].is_string());
  // Revoked over the API: the running gateway ends its session and it goes offline.
  CHECK(f.raw("DELETE", "/api/v1/machines/9009-42A*7801500", {auth}).first == 200);
  REQUIRE(eventually([&] { return !f.kinds("session.end", "ok").empty(); }, std::chrono::seconds(10)));
  REQUIRE(eventually([&] { return machines()["online"].as_bool() == false; }, std::chrono::seconds(10)));
  CHECK(machines()["revoked"].as_bool());
  (void)sess.agent->wait(std::chrono::seconds(20));
  auto q = rsgate_cmd({"journal", "query", "--data", f.dir.string(), "--kind", "admin.machine", "--format", "json"});
  for (auto action : {R"("action":"enroll")", R"("action":"profile_download")", R"("action":"revoke")"})
    CHECK(q.out.find(action) != std::string::npos);
}

TEST_CASE("rsgate journal --gateway: query, verify and export online, as offline, only for auditors") {
  gateway_fixture f;
  f.add_user("audrey", "auditor");
  const auto gw = "https://" + f.https;
  const auto ca = (f.dir / "ca.pem").string();
  auto online = [&](std::vector<std::string> args, const std::string& user = "audrey") {
    std::vector<std::string> a{"journal", "--gateway", gw, "--token", f.tokens.at(user), "--ca", ca};
    a.insert(a.end(), args.begin(), args.end());
    return rsgate_cmd(a);
  };
  // Some history: a refused login, an enrollment.
  (void)f.enroll("7801700");
  (void)f.raw("POST", "/api/v1/login", {}, R"({"user":"alice","password":"wrong password"})");

  auto q = online({"query", "--kind", "admin.user", "--format", "json"});
  INFO(q.err);
  REQUIRE(q.exit_code == 0);
  auto offline = rsgate_cmd({"journal", "query", "--data", f.dir.string(), "--kind", "admin.user", "--format", "json"});
  CHECK(q.out == offline.out);  // the same lines, from the API
  // The flags after the command work as well; table and CSV render the same entries.
  auto table = rsgate_cmd({"journal", "query", "--gateway", gw, "--token", f.tokens.at("audrey"), "--ca", ca,
                           "--kind", "user.login", "--outcome", "denied"});
  REQUIRE(table.exit_code == 0);
  CHECK(table.out.find("user.login") != std::string::npos);
  CHECK(table.out.find("bad_credentials") != std::string::npos);
  auto paged = online({"query", "--limit", "2"});
  CHECK(line_count(paged.out) == 3);  // the header and two rows
  CHECK(paged.err.find("next page: --cursor ") != std::string::npos);

  auto v = online({"verify"});
  CHECK(v.exit_code == 0);
  CHECK(v.out.find("journal ok (checked by the gateway)") != std::string::npos);
  CHECK(online({"verify", "--pubkey", (f.dir / "keys/journal-signing.pub").string()}).exit_code == 2);

  // Export: online output is what the file held when it was read (the file has the audits since).
  auto ex = online({"export", "--format", "csv"});
  REQUIRE(ex.exit_code == 0);
  auto file = rsgate_cmd({"journal", "export", "--data", f.dir.string(), "--format", "csv"});
  REQUIRE(file.out.size() > ex.out.size());
  CHECK(file.out.substr(0, ex.out.size()) == ex.out);
  // The API's pages, followed by hand: X-Next-Cursor until there is none.
  std::string cursor, all;
  int pages = 0;
  do {
    auto r = run({"curl", "-sS", "--cacert", ca, "-H", "Authorization: Bearer " + f.tokens.at("audrey"), "-D",
                  (f.t / "h").string(), "https://" + f.https + "/api/v1/journal/export?format=jsonl&limit=5" +
                                             (cursor.empty() ? "" : "&cursor=" + cursor)});
    REQUIRE(r.exit_code == 0);
    all += r.out;
    auto h = read_file(f.t / "h");
    auto at = h.find("X-Next-Cursor: ");
    cursor = at == std::string::npos ? "" : h.substr(at + 15, h.find('\r', at) - at - 15);
    ++pages;
  } while (!cursor.empty() && pages < 100);
  CHECK(pages > 2);
  CHECK(line_count(all) >= static_cast<std::size_t>(5 * (pages - 1)));
  CHECK(all.substr(0, all.find('\n')).find("\"seq\":1,") != std::string::npos);

  // Not an auditor: refused by the gateway (exit 1); malformed use: exit 2.
  auto refused = online({"query"}, "alice");
  CHECK(refused.exit_code == 1);
  CHECK(refused.err.find("the gateway refused (403)") != std::string::npos);
  CHECK(rsgate_cmd({"journal", "query", "--gateway", gw, "--token", f.tokens.at("audrey")}).exit_code == 2);  // no --ca
  CHECK(rsgate_cmd({"journal", "query", "--gateway", "http://x:1", "--token", "t", "--ca", ca}).exit_code == 2);
  CHECK(online({"query", "--hash-of", "x"}).exit_code == 2);
  CHECK(online({"query", "--db", (f.dir / "journal.db").string()}).exit_code == 2);
}
