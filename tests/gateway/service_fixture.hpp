// The in-process API fixture of the service tests: a prepared data directory, a journal
// writer, the service and its router, six accounts with bearer tokens (carol still has her
// one-time password) and an enrolled machine; requests go through routes::handle as the HTTPS
// server would send them.
#pragma once
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <catch2/catch.hpp>
#include <future>
#include <map>
#include <thread>

#include "auth/password.hpp"
#include "auth/scram.hpp"
#include "auth/session_key.hpp"
#include "auth/totp.hpp"
#include "gateway/accounts.hpp"
#include "gateway/http/routes.hpp"
#include "gateway/service.hpp"
#include "tests/support/process.hpp"

namespace rsgate::test {

using namespace rsgate::gateway;
namespace json = boost::json;

struct api_fixture {
  test::temp_dir dir;
  data_layout layout{dir / "data"};
  std::unique_ptr<journal::writer> writer;
  std::unique_ptr<service> svc;
  metrics m;
  std::unique_ptr<routes> api;
  std::map<std::string, std::string> tokens;  // user -> bearer token
  std::map<std::string, std::string> totp_secrets;  // user -> raw TOTP secret (representatives, admins)
  std::map<std::string, std::vector<std::string>> recovery_codes;  // user -> its unused recovery codes

  explicit api_fixture(const clock& service_clock = system_clock::instance()) {
    prepare_options po;
    po.make_certificates = false;
    (void)prepare_data_dir(layout, po);
    journal::writer_options o;
    o.gateway = "gw-api";
    o.probe_every = 0;
    writer = std::make_unique<journal::writer>(layout.journal_db(), journal::signing_key::load(layout.signing_key()), o);
    {
      state_store st(layout.state_db());
      for (auto [name, role] : {std::pair{"alice", "representative"}, std::pair{"bob", "representative"},
                                std::pair{"carol", "representative"}, std::pair{"dave", "developer"},
                                std::pair{"audrey", "auditor"}, std::pair{"root", "admin"}}) {
        // carol still has the one-time password she was given.
        st.add_user({name, role, auth::hash_password("password of " + std::string(name)),
                     std::string(name) == "carol", false, 1});
        auto t = new_token();
        st.add_token({token_hash(t), name, 1, 0, false});
        tokens[name] = t;
        if (role_needs_totp(role)) enrol(st, name);
      }
      // The customer's machine is enrolled (housekeeping ends sessions of unknown machines).
      st.add_machine({"9009-42A*7801234", auth::scram::make_verifier("secret", bytes(16, 1), 4096).encode(), false,
                      "", false, 1, 0});
    }
    svc = std::make_unique<service>(*writer, layout, service_clock);
    api = std::make_unique<routes>(*writer, m, svc.get());
  }

  // Enrols `name` for TOTP as `rsgate user add` does; keeps the secret the URI shows.
  void enrol(state_store& st, const std::string& name) {
    auto e = enrol_totp(st, layout, name, "gw-api", system_clock::instance().now());
    auto at = e.uri.find("secret=");
    REQUIRE(at != std::string::npos);
    auto secret = auth::base32_decode(e.uri.substr(at + 7, e.uri.find('&', at) - at - 7));
    REQUIRE(secret);
    totp_secrets[name] = *secret;
    recovery_codes[name] = e.recovery_codes;
  }
  // The code `name`'s authenticator shows now (`ahead`: that many steps later, which the
  // gateway accepts for one step of clock skew, for a second login within 30 s).
  std::string totp(const std::string& name, int ahead = 0) {
    return auth::totp_code(totp_secrets.at(name), auth::totp_step(system_clock::instance().now()) + ahead);
  }

  // One more account with a bearer token.
  void add_user(const std::string& name, const std::string& role) {
    state_store st(layout.state_db());
    st.add_user({name, role, auth::hash_password("password of " + name), false, false, 1});
    auto t = new_token();
    st.add_token({token_hash(t), name, 1, 0, false});
    tokens[name] = t;
  }

  std::string remote = "203.0.113.9:40000";  // the client's address:port for the next calls
  http_response call(const std::string& method, const std::string& target, const std::string& user,
                     const std::string& body = "", std::vector<std::pair<std::string, std::string>> headers = {}) {
    http_request r;
    r.method = method;
    r.target = target;
    r.body = body;
    r.remote = remote;
    r.headers = std::move(headers);
    if (!user.empty()) r.headers.emplace_back("Authorization", "Bearer " + tokens.at(user));
    std::promise<http_response> p;
    auto f = p.get_future();
    api->handle(r, [&p](http_response resp) { p.set_value(std::move(resp)); });
    return f.get();
  }
  static json::object obj(const http_response& r) { return json::parse(r.body).as_object(); }
  // "rsgate_session=…" from a login's answer ("" when it set none), to send back as Cookie.
  static std::string cookie_of(const http_response& login) {
    for (auto& [k, v] : login.headers)
      if (k == "Set-Cookie") return v.substr(0, v.find(';'));
    return "";
  }
  static std::string code(const http_response& r) {
    return std::string(obj(r)["error"].as_object()["code"].as_string());
  }

  // A machine's tunnel authenticated and offered two scopes; its key is returned.
  std::pair<std::string, std::string> customer_session() {
    auto id = svc->open_session("9009-42A*7801234", {"hmc", "partition:LP01"});
    auto key = auth::generate_session_key();
    svc->set_session_key(id, key, system_clock::instance().now() + 3600'000'000LL);
    return {id, key};
  }
  std::int64_t count(const std::string& kind, journal::outcome o) {
    journal::reader rd({layout.journal_db()});
    journal::filter f;
    f.kind = kind;
    f.result = o;
    return rd.count(f);
  }
  // For entries appended without waiting (actions that remove access): up to 5 s.
  std::int64_t eventually(const std::string& kind, journal::outcome o, std::int64_t want) {
    std::int64_t n = 0;
    for (int i = 0; i < 500 && (n = count(kind, o)) != want; ++i)
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    return n;
  }
};


}  // namespace rsgate::test
