// The agent's protocol gate without sockets (issue 7, defects 20 and 21): which frames a
// gateway may send in each phase — nothing but the handshake's before a verified SUCCESS —
// and the KEY_OFFER/KEY_ACK pairing with its expiry checks. Table-driven.
#include "protocol/agent_state.hpp"

#include <catch2/catch.hpp>
#include <openssl/ssl.h>

#include "protocol/agent_handshake.hpp"
#include "core/timefmt.hpp"

using namespace rsgate;
using rsgate::agent::tunnel_phase;
using rsgate::agent::tunnel_state;
using ft = rsgate::tunnel::frame_type;

namespace {

constexpr micros kSecond = 1'000'000;
constexpr micros kNow = 1'800'000'000 * kSecond;

const std::vector<ft> kAll = {ft::hello,        ft::challenge,      ft::response,       ft::success, ft::failure,
                              ft::key_offer,    ft::key_ack,        ft::notice,         ft::stop,    ft::end,
                              ft::receipt,      ft::ping,           ft::pong,           ft::rekey,   ft::error,
                              ft::status,       ft::status_reply,   ft::channel_open,   ft::channel_accept,
                              ft::channel_reject, ft::data,         ft::window,         ft::eof,     ft::close,
                              ft::upload_begin, ft::upload_chunk,   ft::upload_end,     ft::upload_ack};

tunnel_state at(tunnel_phase p) {
  tunnel_state s;
  if (p == tunnel_phase::connecting) return s;
  s.on_hello_sent();
  if (p == tunnel_phase::hello_sent) return s;
  s.on_response_sent();
  if (p == tunnel_phase::challenged) return s;
  s.on_verified_success();
  return s;
}

std::vector<ft> admitted(const tunnel_state& s) {
  std::vector<ft> out;
  for (auto t : kAll)
    if (s.refuse(t).empty()) out.push_back(t);
  return out;
}

tunnel_state with_offer(std::int64_t expires_in = 3600) {
  auto s = at(tunnel_phase::authenticated);
  s.on_key_offer("GXW6-1JFR-GGWH-K", expires_in);
  return s;
}

}  // namespace

TEST_CASE("tunnel_state: before a verified SUCCESS only the handshake's frames are admitted") {
  CHECK(admitted(at(tunnel_phase::connecting)) == std::vector<ft>{ft::ping, ft::pong, ft::error});
  CHECK(admitted(at(tunnel_phase::hello_sent)) ==
        std::vector<ft>{ft::challenge, ft::failure, ft::ping, ft::pong, ft::error});
  CHECK(admitted(at(tunnel_phase::challenged)) ==
        std::vector<ft>{ft::success, ft::failure, ft::ping, ft::pong, ft::error});
  for (auto p : {tunnel_phase::hello_sent, tunnel_phase::challenged})
    for (auto t : {ft::channel_open, ft::notice, ft::key_ack, ft::end, ft::data, ft::window, ft::eof, ft::close}) {
      auto why = at(p).refuse(t);
      CHECK(why.find("before the gateway proved itself") != std::string::npos);
      CHECK(why.find(std::string(tunnel::name_of(t))) != std::string::npos);
    }
}

TEST_CASE("tunnel_state: after SUCCESS the session's frames are admitted, never an agent's own") {
  auto s = at(tunnel_phase::authenticated);
  CHECK(s.authenticated());
  // REKEY (docs/protocol.md §6) and an owed RECEIPT (§4.12) only now: before SUCCESS they are
  // refused like any session frame. RECEIPT_ACK is the agent's own.
  CHECK(admitted(s) == std::vector<ft>{ft::challenge, ft::failure, ft::key_ack, ft::notice, ft::end, ft::receipt,
                                        ft::ping, ft::pong, ft::rekey, ft::error, ft::channel_open, ft::data,
                                        ft::window, ft::eof, ft::close});
  CHECK(s.refuse(ft::receipt_ack) == "unexpected RECEIPT_ACK from the gateway");
  for (auto p : {tunnel_phase::connecting, tunnel_phase::hello_sent, tunnel_phase::challenged})
    CHECK_FALSE(at(p).refuse(ft::receipt).empty());
  // A re-challenge: one CHALLENGE, answered, then exactly one SUCCESS.
  CHECK_FALSE(s.refuse(ft::success).empty());
  s.on_response_sent();
  CHECK(s.authenticated());
  CHECK(s.refuse(ft::success).empty());
  CHECK_FALSE(s.refuse(ft::challenge).empty());
  s.on_verified_success();
  CHECK_FALSE(s.refuse(ft::success).empty());
}

TEST_CASE("tunnel_state: a second CHALLENGE before SUCCESS is refused") {
  CHECK(at(tunnel_phase::challenged).refuse(ft::challenge).find("waiting for SUCCESS") != std::string::npos);
}

TEST_CASE("tunnel_state: one KEY_ACK per KEY_OFFER, unsolicited and duplicate ones are refused") {
  auto s = with_offer();
  CHECK(s.key_offer_outstanding());
  std::string why;
  bool unsolicited = true;
  auto key = s.on_key_ack({format_rfc3339(kNow + 3600 * kSecond)}, kNow, why, unsolicited);
  REQUIRE(key);
  CHECK(*key == "GXW6-1JFR-GGWH-K");
  CHECK_FALSE(unsolicited);
  CHECK_FALSE(s.key_offer_outstanding());
  // The same ACK again: nothing asked for it.
  CHECK_FALSE(s.on_key_ack({format_rfc3339(kNow + 3600 * kSecond)}, kNow, why, unsolicited));
  CHECK(unsolicited);
  CHECK(why.find("unsolicited KEY_ACK") != std::string::npos);
  // key_refused answers an offer too, and only an offer.
  CHECK_FALSE(s.on_key_refused());
  s.on_key_offer("AAAA-BBBB-CCCC-D", 60);
  CHECK(s.on_key_refused());
  CHECK_FALSE(s.key_offer_outstanding());
  CHECK_FALSE(s.on_key_ack({format_rfc3339(kNow + 60 * kSecond)}, kNow, why, unsolicited));
  CHECK(unsolicited);
}

TEST_CASE("tunnel_state: KEY_ACK's expires_at must be an RFC 3339 time in the future, not beyond what was asked") {
  struct row {
    std::string expires_at;
    bool ok;
  };
  const micros asked = 3600;
  std::vector<row> rows = {
      {format_rfc3339(kNow + asked * kSecond), true},
      {format_rfc3339(kNow + (asked + agent::kKeyAckSkewSeconds) * kSecond), true},  // the skew allowance
      {format_rfc3339(kNow + 1 * kSecond), true},
      {"2027-01-15T09:30:00+01:00", true},  // an offset is RFC 3339 too (kNow is 2027-01-15T08:00:00Z)
      {format_rfc3339(kNow + (asked + agent::kKeyAckSkewSeconds) * kSecond + 1), false},
      {format_rfc3339(kNow + 10 * 86400 * kSecond), false},
      {format_rfc3339(kNow), false},
      {format_rfc3339(kNow - 60 * kSecond), false},
      {"2027-01-15", false},
      {"2027-01-15 09:00:00.000000Z", false},
      {"9999999999999999999999", false},
      {"2027-13-15T09:00:00.000000Z", false},
      {"2027-01-15T09:00:00.000000", false},
  };
  for (auto& r : rows) {
    INFO(r.expires_at);
    auto s = with_offer(asked);
    std::string why;
    bool unsolicited = true;
    auto key = s.on_key_ack({r.expires_at}, kNow, why, unsolicited);
    CHECK(key.has_value() == r.ok);
    CHECK_FALSE(unsolicited);
    CHECK_FALSE(s.key_offer_outstanding());  // answered either way
    if (!r.ok) CHECK(why.find("expires_at") != std::string::npos);
  }
}

TEST_CASE("export_channel_binding fails closed when OpenSSL cannot derive the exporter") {
  // An SSL object without a completed handshake has no exporter: never a zero binding.
  SSL_CTX* ctx = SSL_CTX_new(TLS_client_method());
  SSL* ssl = SSL_new(ctx);
  CHECK_FALSE(agent::export_channel_binding(ssl));
  CHECK_FALSE(agent::export_channel_binding(nullptr));
  SSL_free(ssl);
  SSL_CTX_free(ctx);
}
