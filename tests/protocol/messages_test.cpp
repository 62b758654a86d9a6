// Control messages: every message survives serialise -> parse unchanged, and the parsers
// refuse unknown keys, wrong types, bad lengths and out-of-range values.
#include "protocol/messages.hpp"

#include <catch2/catch.hpp>

#include "auth/scram.hpp"
#include "auth/session_key.hpp"

using namespace rsgate;
using namespace rsgate::tunnel;

namespace {
bytes b(std::string_view s) { return bytes(s.begin(), s.end()); }
const std::string kNonce = "fyko+d2lbbFgONRv9qkxdawL";  // 24 chars
// A HELLO with only what is required: version, agent, machine, a mechanism, a nonce.
hello minimal_hello() {
  hello h;
  h.agent = "a";
  h.machine = "9009-42A*7801234";
  h.mechanisms = {"scram-sha-256"};
  h.client_nonce = kNonce;
  return h;
}
}  // namespace

TEST_CASE("round trips") {
  std::string why;
  hello h;
  h.agent = "rsgate-agent/0.1.0";
  h.machine = "9009-42A*7801234";
  h.mechanisms = {"scram-sha-256", "md5"};
  h.client_nonce = kNonce;
  h.scopes = {{"hmc", "HMC web UI"}, {"partition:LP01", ""}};
  auto h2 = parse_hello(to_payload(h), why);
  REQUIRE(h2);
  CHECK(h2->machine == h.machine);
  CHECK(h2->mechanisms == h.mechanisms);
  CHECK(h2->scopes.size() == 2);
  CHECK(h2->scopes[1].name == "partition:LP01");

  challenge c;
  c.id = 7;
  c.mechanism = "scram-sha-256";
  c.nonce = kNonce + "3rfcNHYJY1ZVvWVs7j3rfcNHYJY1ZV";
  c.salt = bytes(16, 0xab);
  c.iterations = 4096;
  auto c2 = parse_challenge(to_payload(c), why);
  REQUIRE(c2);
  CHECK(c2->nonce == c.nonce);
  CHECK(c2->salt == c.salt);
  challenge m;
  m.id = 255;
  m.mechanism = "md5";
  m.value = bytes(16, 1);
  CHECK(parse_challenge(to_payload(m), why)->value == m.value);

  response r{7, bytes(32, 9)};
  CHECK(parse_response(to_payload(r), why)->proof == r.proof);
  success s;
  s.id = 7;
  s.server_signature = bytes(32, 3);
  s.session = "S-01";
  CHECK(parse_success(to_payload(s), why)->session == "S-01");
  failure f{7, "wrong secret", 1800};
  CHECK(parse_failure(to_payload(f), why)->retry_after_seconds == 1800);
  key_offer k{auth::generate_session_key(), 3600};
  CHECK(parse_key_offer(to_payload(k), why)->key == k.key);
  CHECK(parse_key_ack(to_payload(key_ack{"2026-11-28T00:00:00.000000Z"}), why).has_value());
  notice n;
  n.event = "attach";
  n.ts = "2026-11-28T00:00:00.000000Z";
  n.actor = "alice";
  n.pmr = "12345,677,000";
  n.bytes_in = 5;
  auto n2 = parse_notice(to_payload(n), why);
  REQUIRE(n2);
  CHECK(n2->pmr == n.pmr);
  CHECK(n2->bytes_in == 5);
  channel_open o{"hmc", "ssh", "alice", kInitialWindow};
  CHECK(parse_channel_open(to_payload(o), why)->access_type == "ssh");
  CHECK(parse_channel_accept(to_payload(channel_accept{65536, {}}), why)->window == 65536);
  CHECK(parse_reason(to_payload(reason_only{"customer"}), why)->reason == "customer");
  CHECK(parse_rekey(to_payload(rekey{}), why));
  CHECK(parse_error(to_payload(error_message{"protocol", "bad frame"}), why)->code == "protocol");
}

TEST_CASE("parsers refuse what is not exactly a message") {
  struct row {
    const char* json;
    const char* why;
  };
  const std::string good_hello_tail =
      R"("agent":"a","machine":"9009-42A*7801234","mechanisms":["scram-sha-256"],"client_nonce":")" +
      kNonce + R"(","scopes":[])";
  auto hello_with = [&](const std::string& extra) { return "{" + good_hello_tail + extra + "}"; };
  std::string why;
  CHECK(parse_hello(b(hello_with(R"(,"version":1)")), why));
  const std::vector<std::pair<std::string, std::string>> hello_rows = {
      {hello_with(""), "version is missing"},
      {hello_with(R"(,"version":0)"), "version must be"},
      {hello_with(R"(,"version":"1")"), "must be an integer"},
      {hello_with(R"(,"version":1,"extra":true)"), "unknown key"},
      {hello_with(R"(,"version":1.5)"), "must be an integer"},
      {R"({"version":1,"agent":"a","machine":"9009-42A-7801234","mechanisms":["md5"],"client_nonce":")" +
           kNonce + R"(","scopes":[]})",
       "machine"},
      {R"({"version":1,"agent":"a","machine":"9009-42A*7801234","mechanisms":["plain"],"client_nonce":")" +
           kNonce + R"(","scopes":[]})",
       "no supported mechanism"},
      {R"({"version":1,"agent":"a","machine":"9009-42A*7801234","mechanisms":["md5"],"client_nonce":"short","scopes":[]})",
       "client_nonce"},
      // A repeated key: the last one counts (here, a scope list that repeats a scope).
      {hello_with(R"(,"version":1,"scopes":[{"name":"hmc"},{"name":"hmc"}])"), "offered twice"},
      {"[1,2]", "not a JSON object"},
      {"{", "not JSON"},
      {R"({"a":{"b":{"c":{"d":{"e":1}}}}})", "not JSON"},  // deeper than allowed
  };
  for (auto& [text, expect] : hello_rows) {
    INFO(text);
    CHECK_FALSE(parse_hello(b(text), why));
    CHECK_THAT(why, Catch::Contains(expect));
  }
  // Scopes: duplicates and malformed names.
  auto scopes = [&](const std::string& list) {
    return R"({"version":1,"agent":"a","machine":"9009-42A*7801234","mechanisms":["md5"],"client_nonce":")" +
           kNonce + R"(","scopes":)" + list + "}";
  };
  CHECK_FALSE(parse_hello(b(scopes(R"([{"name":"hmc"},{"name":"hmc"}])")), why));
  CHECK_THAT(why, Catch::Contains("twice"));
  CHECK_FALSE(parse_hello(b(scopes(R"([{"name":"HMC"}])")), why));
  CHECK_FALSE(parse_hello(b(scopes(R"([{"name":"a b"}])")), why));
  CHECK_FALSE(parse_hello(b(scopes(R"([{"name":"hmc","label":"x\u0007"}])")), why));
  CHECK_THAT(why, Catch::Contains("non-printable"));

  const row other[] = {
      {R"({"id":256,"mechanism":"md5","challenge":"AAAAAAAAAAAAAAAAAAAAAA=="})", "id must be"},
      {R"({"id":1,"mechanism":"md5","challenge":"AAAA"})", "challenge must be base64"},
      {R"({"id":1,"mechanism":"sha1","challenge":"AAAAAAAAAAAAAAAAAAAAAA=="})", "unknown mechanism"},
  };
  for (auto& r : other) {
    INFO(r.json);
    CHECK_FALSE(parse_challenge(b(r.json), why));
    CHECK_THAT(why, Catch::Contains(r.why));
  }
  CHECK_FALSE(parse_response(b(R"({"id":1,"proof":"AAAA"})"), why));
  CHECK_FALSE(parse_channel_open(b(R"({"scope":"hmc","access_type":"rdp","window":65536})"), why));
  CHECK_THAT(why, Catch::Contains("access_type"));
  CHECK_FALSE(parse_channel_open(b(R"({"scope":"hmc","access_type":"ssh","window":99999999})"), why));
  CHECK_FALSE(parse_channel_accept(b(R"({"window":-1})"), why));
  CHECK_FALSE(parse_notice(b(R"({"event":"explode","ts":"2026-11-28T00:00:00.000000Z"})"), why));
  CHECK_FALSE(parse_key_offer(b(R"({"key":"7KQ4","expires_in":3600})"), why));
  CHECK_FALSE(parse_key_offer(b(R"({"key":"7KQ4-M2XP-9RTA-W","expires_in":10})"), why));
  // REKEY is exactly `{}`; SUCCESS's rekey_seconds is 1 to 86400.
  CHECK_FALSE(parse_rekey(b(R"({"now":true})"), why));
  CHECK_THAT(why, Catch::Contains("unknown key"));
  CHECK_FALSE(parse_rekey(b("[]"), why));
  CHECK(parse_success(b(R"({"id":1,"session":"s1","rekey_seconds":1})"), why));
  CHECK_FALSE(parse_success(b(R"({"id":1,"session":"s1","rekey_seconds":0})"), why));
  CHECK_FALSE(parse_success(b(R"({"id":1,"session":"s1","rekey_seconds":86401})"), why));
  CHECK(parse_success(b(R"({"id":1,"session":"s1","keepalive_seconds":6})"), why)->keepalive_seconds == 6);
  CHECK(parse_success(b(R"({"id":1,"session":"s1"})"), why)->keepalive_seconds == 90);
  CHECK_FALSE(parse_success(b(R"({"id":1,"session":"s1","keepalive_seconds":5})"), why));
  CHECK_FALSE(parse_success(b(R"({"id":1,"session":"s1","keepalive_seconds":3601})"), why));
}

TEST_CASE("the customer's approval: HELLO marks ask scopes with their time, the answers carry the decision") {
  std::string why;
  hello h = minimal_hello();
  h.scopes = {{"hmc", "", true}, {"partition:LP01", "", false}};
  h.approval_seconds = 45;
  auto h2 = parse_hello(to_payload(h), why);
  INFO(why);
  REQUIRE(h2);
  CHECK(h2->scopes[0].ask);
  CHECK_FALSE(h2->scopes[1].ask);
  CHECK(h2->approval_seconds == 45);
  auto text = [](const bytes& p) { return std::string(p.begin(), p.end()); };
  CHECK(text(to_payload(h)).find(R"("name":"partition:LP01"})") != std::string::npos);  // no "ask": false
  // approval_seconds goes with a scope that asks, 5..240, and only then.
  auto with = [&](const std::string& scopes, const std::string& extra) {
    return b(R"({"version":1,"agent":"a","machine":"9009-42A*7801234","mechanisms":["md5"],"client_nonce":")" + kNonce +
             R"(","scopes":)" + scopes + extra + "}");
  };
  CHECK(parse_hello(with(R"([{"name":"hmc","ask":false}])", ""), why));
  CHECK(parse_hello(with(R"([{"name":"hmc","ask":true}])", R"(,"approval_seconds":240)"), why));
  CHECK(parse_hello(with(R"([{"name":"hmc","ask":true}])", R"(,"approval_seconds":5)"), why));
  CHECK_FALSE(parse_hello(with(R"([{"name":"hmc","ask":true}])", ""), why));
  CHECK_THAT(why, Catch::Contains("approval_seconds is missing"));
  CHECK_FALSE(parse_hello(with(R"([{"name":"hmc","ask":true}])", R"(,"approval_seconds":4)"), why));
  CHECK_FALSE(parse_hello(with(R"([{"name":"hmc","ask":true}])", R"(,"approval_seconds":241)"), why));
  CHECK_THAT(why, Catch::Contains("approval_seconds must be 5 to 240"));
  CHECK_FALSE(parse_hello(with(R"([{"name":"hmc","ask":true}])", R"(,"approval_seconds":60.5)"), why));
  CHECK_FALSE(parse_hello(with(R"([{"name":"hmc","ask":"yes"}])", R"(,"approval_seconds":60)"), why));
  CHECK_THAT(why, Catch::Contains("ask must be true or false"));
  CHECK_FALSE(parse_hello(with(R"([{"name":"hmc"}])", R"(,"approval_seconds":60)"), why));
  CHECK_THAT(why, Catch::Contains("approval_seconds without a scope that asks"));

  auto acc = parse_channel_accept(to_payload(channel_accept{65536, approval{"approved", "jdoe"}}), why);
  REQUIRE(acc);
  REQUIRE(acc->approved);
  CHECK(acc->approved->by == "jdoe");
  CHECK_FALSE(parse_channel_accept(to_payload(channel_accept{65536, {}}), why)->approved);
  auto rej = parse_channel_reject(to_payload(channel_reject{"refused by the customer", approval{"refused", "jdoe"}}), why);
  REQUIRE(rej);
  REQUIRE(rej->decided);
  CHECK(rej->decided->decision == "refused");
  rej = parse_channel_reject(to_payload(channel_reject{"not approved", approval{"timeout", ""}}), why);
  REQUIRE(rej);
  REQUIRE(rej->decided);
  CHECK(rej->decided->decision == "timeout");
  CHECK(rej->decided->by.empty());
  CHECK(parse_channel_reject(b(R"({"reason":"x"})"), why));
  const std::pair<const char*, const char*> bad[] = {
      {R"({"window":65536,"approval":{"decision":"refused","by":"jdoe"}})", "must be approved"},
      {R"({"window":65536,"approval":{"decision":"approved"}})", "by is missing"},
      {R"({"window":65536,"approval":{"decision":"approved","by":""}})", "by must be"},
      {R"({"window":65536,"approval":{"decision":"maybe","by":"x"}})", "decision must be"},
      {R"({"window":65536,"approval":{"decision":"approved","by":"x","when":1}})", "unknown key"},
      {R"({"window":65536,"approval":"approved"})", "approval must be an object"},
  };
  for (auto& [json, expect] : bad) {
    INFO(json);
    CHECK_FALSE(parse_channel_accept(b(json), why));
    CHECK_THAT(why, Catch::Contains(expect));
  }
  CHECK_FALSE(parse_channel_reject(b(R"({"reason":"x","approval":{"decision":"timeout","by":"jdoe"}})"), why));
  CHECK_THAT(why, Catch::Contains("a timeout has no approver"));
  CHECK_FALSE(parse_channel_reject(
      b(R"({"reason":"x","approval":{"decision":"refused","by":")" + std::string(65, 'a') + R"("}})"), why));
  CHECK_THAT(why, Catch::Contains("by must be"));
}

// KEY_OFFER carries a session key exactly as the agent shows it: a wrong check symbol, a
// symbol outside the alphabet, another length or another spelling is a protocol error
// (docs/protocol.md §4.6), never a key the gateway stores.
TEST_CASE("KEY_OFFER: only a well-formed session key in display form") {
  std::string why;
  for (int i = 0; i < 50; ++i) {
    auto key = auth::generate_session_key();
    INFO(key);
    auto offer = [&](const std::string& k) {
      return parse_key_offer(to_payload(key_offer{k, 3600}), why).has_value();
    };
    CHECK(offer(key));
    // Every other check symbol is refused (the check is whatever auth/session_key.cpp says).
    for (char c : std::string_view("0123456789ABCDEFGHJKMNPQRSTVWXYZ*~$=U")) {
      auto other = key;
      other.back() = c;
      if (c != key.back()) CHECK_FALSE(offer(other));
    }
    auto lower = key;
    for (auto& ch : lower) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
    if (lower != key) CHECK_FALSE(offer(lower));         // another spelling of the same key
    auto flat = key;
    std::erase(flat, '-');
    CHECK_FALSE(offer(flat));                            // without its hyphens
    CHECK_FALSE(offer(key.substr(0, 14)));               // too short
    CHECK_FALSE(offer(key + "A"));                       // too long
    auto bad_symbol = key;
    bad_symbol[0] = 'U';                                 // not a data symbol
    CHECK_FALSE(offer(bad_symbol));
  }
  CHECK_FALSE(parse_key_offer(b(R"({"key":"0000-0000-0000-1","expires_in":3600})"), why));
  CHECK_THAT(why, Catch::Contains("session key"));
  CHECK_FALSE(parse_error(b(std::string("{\"code\":\"x\",\"message\":\"") + std::string(300, 'a') + "\"}"), why));
  CHECK_FALSE(parse_hello(bytes(kMaxControlPayload + 1, ' '), why));
  CHECK_FALSE(parse_hello(bytes{}, why));
}

TEST_CASE("SCRAM AuthMessage with tls-exporter binding, checked end to end") {
  challenge c;
  c.mechanism = "scram-sha-256";
  c.nonce = kNonce + "gatewaypartgatewaypartgatewaypart";
  c.salt = bytes(16, 0x42);
  c.iterations = 4096;
  bytes exporter(32, 0x11);
  auto am = scram_auth_message("9009-42A*7801234", kNonce, c, exporter);
  CHECK(am.starts_with("n=9009-42A*7801234,r=" + kNonce + ",r=" + c.nonce + ",s="));
  CHECK(am.find(",i=4096,c=" + to_base64(bytes{'p', '=', 't', 'l', 's', '-', 'e', 'x', 'p', 'o', 'r', 't',
                                               'e', 'r', ',', ','}).substr(0, 20)) != std::string::npos);
  // A proof made over one TLS connection's exporter does not verify over another's.
  auto v = auth::scram::make_verifier("s3cret", c.salt, c.iterations);
  auto proof = auth::scram::client_proof(auth::scram::salted_password("s3cret", c.salt, c.iterations), am).proof;
  CHECK(auth::scram::verify_proof(v, am, proof));
  bytes other(32, 0x12);
  CHECK_FALSE(auth::scram::verify_proof(v, scram_auth_message("9009-42A*7801234", kNonce, c, other), proof));
}

TEST_CASE("owed receipts: HELLO's receipts flag and RECEIPT_ACK, strictly") {
  std::string why;
  hello h = minimal_hello();
  auto plain = parse_hello(to_payload(h), why);
  REQUIRE(plain);
  CHECK_FALSE(plain->receipts);  // absent: false, and not written when false
  const auto text = to_payload(h);
  CHECK(std::string(text.begin(), text.end()).find("receipts") == std::string::npos);
  h.receipts = true;
  auto with = parse_hello(to_payload(h), why);
  REQUIRE(with);
  CHECK(with->receipts);
  const std::string tail = R"("version":1,"agent":"a","machine":"9009-42A*7801234","mechanisms":["scram-sha-256"],)"
                           R"("client_nonce":")" + kNonce + R"(","scopes":[])";
  CHECK_FALSE(parse_hello(b("{" + tail + R"(,"receipts":1})"), why));
  CHECK_THAT(why, Catch::Contains("receipts must be true or false"));
  CHECK_FALSE(parse_hello(b("{" + tail + R"(,"receipts":"yes"})"), why));

  auto ack = parse_receipt_ack(to_payload(receipt_ack{"S1a2b3c"}), why);
  REQUIRE(ack);
  CHECK(ack->session == "S1a2b3c");
  CHECK_FALSE(parse_receipt_ack(b(R"({})"), why));
  CHECK_THAT(why, Catch::Contains("session is missing"));
  CHECK_FALSE(parse_receipt_ack(b(R"({"session":""})"), why));
  CHECK_FALSE(parse_receipt_ack(b(R"({"session":"S1","extra":1})"), why));
  CHECK_FALSE(parse_receipt_ack(b(R"({"session":")" + std::string(65, 'a') + R"("})"), why));
  CHECK_FALSE(parse_receipt_ack(b(R"({"session":"a\u0001b"})"), why));
  CHECK_FALSE(parse_receipt_ack(b(R"({"session":7})"), why));
}
