// The agent's tunnel to the gateway (docs/protocol.md §2-§7): connect to the profile's
// primary gateway, else its backup; TLS 1.3 against the CA pinned in the profile and the
// gateway's name; ALPN rsgate/1 before anything is said; HELLO, CHALLENGE, RESPONSE and a
// SUCCESS trusted only with the right SCRAM server signature (protocol/agent_handshake).
// Until then tunnel_state admits only the handshake's frames and the 20 s handshake bound
// holds whatever arrives; after it, the dead-peer bound, renewed by every frame, and a PING
// every keepalive period. A protocol error of the gateway's gets ERROR, one line on stderr and
// exit 1. The frames are written by one flush() at a time from a queue; the reads by one
// loop, which a stop cancels (see agent/detail/agent_state.hpp for how the tunnel ends).
#include <fmt/format.h>
#include <openssl/ssl.h>
#include <sodium.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/connect.hpp>
#include <boost/asio/read_until.hpp>
#include <boost/asio/streambuf.hpp>
#include <boost/asio/deferred.hpp>
#include <boost/asio/experimental/parallel_group.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>

#include "agent/detail/agent_state.hpp"
#include "agent/notice.hpp"
#include "agent/receipts.hpp"
#include "core/files.hpp"
#include "core/timefmt.hpp"
#include "auth/session_key.hpp"
#include "core/clock.hpp"
#include "protocol/agent_handshake.hpp"
#include "protocol/http_connect.hpp"
#include "protocol/messages.hpp"

namespace rsgate::agent::detail {
namespace {

constexpr auto use_tuple = asio::as_tuple(asio::use_awaitable);
using error_code = boost::system::error_code;

asio::awaitable<void> flush(agent_state& st) {
  if (st.writing || !st.stream) co_return;
  st.writing = true;
  std::vector<queued_frame> batch;
  std::vector<asio::const_buffer> bufs;
  while (!st.outq.empty()) {
    // Everything queued (up to 1 MiB) in one write: fewer TLS records and system calls.
    batch.clear();
    bufs.clear();
    std::size_t total = 0;
    while (!st.outq.empty() && total < (1u << 20)) {
      total += st.outq.front().size;
      batch.push_back(std::move(st.outq.front()));
      st.outq.pop_front();
    }
    for (auto& f : batch) bufs.emplace_back(f.buf.data(), f.size);
    auto ec = co_await st.stream->write(bufs);
    if (ec) {
      st.outq.clear();
      break;
    }
    for (auto& f : batch) recycle_frame_buffer(st, std::move(f.buf));
  }
  st.writing = false;
  st.write_idle.cancel();  // wakes drain()
}

// Reads one frame, waiting for more bytes as needed: straight into the decoder (the rest of
// the header, then the payload's own buffer), so a DATA payload is copied once, by SSL_read,
// on its way from the tunnel to the target. nullopt with the read's error, or with none when
// the decoder failed (st.dec->error() says why).
asio::awaitable<std::pair<std::optional<tunnel::frame>, error_code>> read_frame(agent_state& st) {
  for (;;) {
    if (auto f = st.dec->next()) co_return std::pair{std::move(f), error_code{}};
    if (st.dec->error() != tunnel::decode_error::none) co_return std::pair{std::nullopt, error_code{}};
    auto room = st.dec->room();
    auto got = st.stream->read_now(asio::buffer(room.data(), room.size()));
    if (got.would_block) {
      // Everything there was is read: hand the channels' bytes to their targets before
      // sleeping, in one write each (docs/performance.md, the data path).
      flush_channels(st);
      std::tie(got.ec, got.n) = co_await st.stream->read_some(asio::buffer(room.data(), room.size()));
    }
    if (got.ec) co_return std::pair{std::nullopt, got.ec};
    st.dec->commit(got.n);
  }
}

asio::awaitable<void> keepalive(agent_state& st) {
  const auto connection = st.connection;  // this connection's; a reconnect starts its own
  auto mine = [&st, connection] { return !st.done && !st.conn_over && st.stream && st.connection == connection; };
  while (mine()) {
    // A PING every third of the bound, so two may be lost before either side gives up.
    st.keepalive_timer.expires_after(std::chrono::seconds(st.dead_peer_seconds / 3));
    auto [ec] = co_await st.keepalive_timer.async_wait(use_tuple);
    if (ec || !mine()) break;  // cancelled: the connection ended
    send(st, tunnel::frame_type::ping, {});
  }
}

// docs/protocol.md §1: the gateway must have selected ALPN rsgate/1. Anything else is not an
// rsgate/1 endpoint, and it must not learn this machine's name or scopes.
bool selected_rsgate_alpn(SSL* ssl) {
  const unsigned char* p = nullptr;
  unsigned n = 0;
  SSL_get0_alpn_selected(ssl, &p, &n);
  return p && std::string_view(reinterpret_cast<const char*>(p), n) == tunnel::kAlpn;
}

// TLS on the connected socket, the name and ALPN checks; false with the reason on stderr.
asio::awaitable<bool> secure(agent_state& st, const std::string& address) {
  // The gateway's certificate must chain to the pinned CA (verify_peer on the context) and
  // name server_name: a DNS name, or an IP address in an IP SAN.
  if (!st.stream->expect_peer_name(st.opt.prof.server_name)) {
    st.err << fmt::format("rsgate-agent: the profile's server_name '{}' cannot be checked against a certificate\n",
                          st.opt.prof.server_name);
    co_return false;
  }
  auto hec = co_await st.stream->handshake(false);
  if (st.done) co_return false;  // stopped meanwhile
  if (hec) {
    st.err << fmt::format("rsgate-agent: TLS with {} failed: {} (is it the gateway of the pinned CA, named {}?)\n",
                          address, hec.message(), st.opt.prof.server_name);
    co_return false;
  }
  if (!selected_rsgate_alpn(st.stream->native_handle())) {
    st.err << fmt::format("rsgate-agent: {} did not select the protocol rsgate/1 (ALPN): not an rsgate gateway; "
                          "closed without saying which machine this is\n",
                          address);
    st.stream->close();
    co_return false;
  }
  co_return true;
}

// Through the customer's HTTP proxy (protocol/http_connect.hpp): CONNECT to the gateway's
// address on the connected socket, within the handshake bound; true once the proxy answered
// 2xx, with nothing of the tunnel read yet. False with the reason on stderr (never the
// proxy's password).
asio::awaitable<bool> through_proxy(agent_state& st, const std::string& address, const proxy_url& proxy) {
  const auto via = fmt::format("{}:{}", proxy.host, proxy.port);
  const auto req = connect_request(address, proxy);
  auto [wec, wn] = co_await asio::async_write(st.stream->socket(), asio::buffer(req), use_tuple);
  if (st.done) co_return false;
  if (wec) {
    st.err << fmt::format("rsgate-agent: cannot talk to the proxy {}: {}\n", via, wec.message());
    co_return false;
  }
  asio::streambuf buf(kMaxConnectAnswer);
  auto [rec, n] = co_await asio::async_read_until(st.stream->socket(), buf, "\r\n\r\n", use_tuple);
  if (st.done) co_return false;
  if (rec) {
    st.err << fmt::format("rsgate-agent: the proxy {} did not answer the CONNECT to {}: {}\n", via, address,
                          rec == asio::error::not_found ? "its answer is larger than 8 KiB" : rec.message());
    co_return false;
  }
  std::string head(asio::buffers_begin(buf.data()), asio::buffers_begin(buf.data()) + static_cast<long>(n));
  std::string why;
  auto a = parse_connect_answer(head, why);
  if (!a) {
    st.err << fmt::format("rsgate-agent: the proxy {}: {}\n", via, why);
    co_return false;
  }
  if (a->status / 100 != 2) {
    st.err << fmt::format("rsgate-agent: the proxy {} refused to connect to {}: {} {}{}\n", via, address, a->status,
                          printable(a->reason, 128),
                          // 407; tinyproxy answers a CONNECT with 401
                          a->status == 407 || a->status == 401 ? (proxy.user.empty() ? " (it wants a user and password in the profile's proxy)"
                                                                 : " (the profile's proxy user or password is wrong)")
                                           : "");
    co_return false;
  }
  // Nothing may follow a 2xx header before the agent speaks TLS: bytes there would be taken
  // for the gateway's. (A refusal may carry a body; it is not read.)
  if (buf.size() != n) {
    st.err << fmt::format("rsgate-agent: the proxy {} sent more than its answer to the CONNECT\n", via);
    co_return false;
  }
  co_return true;
}

asio::awaitable<bool> connect_to(agent_state& st, asio::ssl::context& tls, const std::string& address) {
  auto ex = co_await asio::this_coro::executor;
  std::string host;
  std::uint16_t port = 0;
  if (!parse_host_port(address, host, port)) {  // load_profile checked it already
    st.err << fmt::format("rsgate-agent: {} is not HOST:PORT\n", address);
    co_return false;
  }
  std::optional<proxy_url> proxy;
  if (!st.opt.prof.proxy.empty()) {
    std::string why;
    proxy = parse_proxy_url(st.opt.prof.proxy, why);  // load_profile checked it already
    if (!proxy) {
      st.err << "rsgate-agent: the profile's proxy " << why << "\n";
      co_return false;
    }
  }
  // With a proxy, the agent resolves and connects to it; the gateway's name is the proxy's to
  // resolve (customer networks often have no DNS of their own for the outside).
  const auto& to_host = proxy ? proxy->host : host;
  const auto to_port = proxy ? proxy->port : port;
  tcp::resolver resolver(ex);
  auto [rec, results] = co_await resolver.async_resolve(to_host, std::to_string(to_port), use_tuple);
  if (st.done) co_return false;  // stopped meanwhile: the customer asked, nothing to report
  if (rec) {
    st.err << fmt::format("rsgate-agent: cannot resolve {}: {}\n", proxy ? fmt::format("the proxy {}", to_host) : address,
                          rec.message());
    co_return false;
  }
  st.stream.emplace(tcp::socket(ex), tls.native_handle(), net::tls_stream::kTunnelBuffer);
  // The handshake bound: from here to a verified SUCCESS, whatever frames arrive meanwhile.
  st.stream->expires_after(std::chrono::seconds(tunnel::kHandshakeTimeoutSeconds));
  auto [cec, ep] = co_await asio::async_connect(st.stream->socket(), results, use_tuple);
  if (st.done) co_return false;
  if (cec) {
    st.err << fmt::format("rsgate-agent: cannot connect to {}: {}\n",
                          proxy ? fmt::format("the proxy {}:{}", proxy->host, proxy->port) : address, cec.message());
    co_return false;
  }
  error_code ignored;
  st.stream->socket().set_option(tcp::no_delay(true), ignored);
  if (proxy) {
    const bool through = co_await through_proxy(st, address, *proxy);  // not in `&&` (GCC 12)
    if (!through) co_return false;
  }
  if (!co_await secure(st, address)) co_return false;
  st.view.gateway = address;
  co_return true;
}

// Why the tunnel's reads ended, for the customer; a decoding error is the gateway's protocol
// error and gets ERROR `bad_frame`.
void on_read_end(agent_state& st, error_code ec) {
  if (st.done) return;
  if (st.dec->error() != tunnel::decode_error::none) {
    protocol_error(st, "bad_frame",
                   "protocol error from the gateway: " + std::string(tunnel::describe(st.dec->error())));
  } else if (ec == asio::error::timed_out && !st.gate.authenticated()) {
    lost(st, fmt::format("the gateway did not complete the authentication within {} s",
                         tunnel::kHandshakeTimeoutSeconds));
  } else if (ec == asio::error::timed_out) {
    lost(st, fmt::format("no frame from the gateway for {} s: the tunnel is dead", st.dead_peer_seconds));
  } else {
    lost(st, "the connection to the gateway was lost");
  }
}

void on_challenge(agent_state& st, agent_handshake& hs, const tunnel::frame& f) {
  std::string why;
  auto c = tunnel::parse_challenge(f.payload, why);
  auto r = c ? hs.on_challenge(*c, why) : std::nullopt;
  if (!r) {
    protocol_error(st, "bad_challenge", "refusing the gateway's challenge: " + why);
    return;
  }
  send(st, tunnel::frame_type::response, tunnel::to_payload(*r));
  st.gate.on_response_sent();
}

void on_success(agent_state& st, agent_handshake& hs, const tunnel::frame& f) {
  std::string why;
  auto s = tunnel::parse_success(f.payload, why);
  if (!s || !hs.on_success(*s, why)) {
    protocol_error(st, "bad_success", "the gateway failed to prove itself: " + why);
    return;
  }
  const bool rechallenge = st.gate.authenticated();
  st.gate.on_verified_success();
  // From now on the dead-peer bound replaces the handshake bound, renewed by every frame.
  st.dead_peer_seconds = s->keepalive_seconds;
  st.grace_seconds = s->grace_seconds;
  st.stream->expires_after(std::chrono::seconds(st.dead_peer_seconds));
  if (rechallenge) return;  // a re-challenge (§6): same connection, same session
  st.reconnecting = false;
  st.attempts = 0;
  asio::co_spawn(st.stream->get_executor(), keepalive(st), report_exception{&st, "the keepalive"});
  if (!st.view.session.empty() && s->session == st.view.session) {
    // Resumed (§9): owner, grants and the session key are the gateway's still; a NOTICE
    // `attach` follows when the session has an owner.
    st.view.state = "authenticated";
    // What NOTICEs told of owner and grants may be stale: the gateway tells them again now.
    st.view.owner.clear();
    st.view.pmr.clear();
    st.view.grants.clear();
    line(st, fmt::format("Reconnected to {}; session {} resumed", st.view.gateway, st.view.session));
    // A key offer that the lost connection left unanswered (or none answered yet) is made
    // again: the customer must have a key to give.
    if (std::exchange(st.key_unconfirmed, false) || st.key.empty()) offer_key(st);
    return;
  }
  if (!st.view.session.empty())
    line(st, fmt::format("The gateway no longer holds session {}: it has ended", st.view.session));
  const auto gateway = st.view.gateway;
  st.view = session_view{};
  st.key.clear();  // the old session's key went with it
  st.key_unconfirmed = false;
  st.view.gateway = gateway;
  st.view.session = s->session;
  st.view.state = "authenticated";
  line(st, fmt::format("Connected to {} as {}; session {}", st.view.gateway, st.opt.prof.machine(), st.view.session));
  offer_key(st);
}

void answer_key_waiters(agent_state& st, const std::string& reply_text) {
  for (auto& w : st.key_waiters) {
    auto reply = std::make_shared<std::string>(reply_text);
    asio::async_write(*w, asio::buffer(*reply), [reply, w](error_code, std::size_t) {});
  }
  st.key_waiters.clear();
}

void on_key_ack(agent_state& st, const tunnel::frame& f) {
  std::string why;
  auto k = tunnel::parse_key_ack(f.payload, why);
  if (!k) {
    protocol_error(st, "bad_key_ack", "malformed KEY_ACK: " + why);
    return;
  }
  bool unsolicited = false;
  auto key = st.gate.on_key_ack(*k, system_clock::instance().now(), why, unsolicited);
  if (!key) {
    protocol_error(st, unsolicited ? "unexpected" : "bad_key_ack", "protocol error from the gateway: " + why);
    return;
  }
  st.key = *key;
  st.view.key_expires_at = k->expires_at;
  line(st, fmt::format("Session key: {}", st.key));
  line(st, fmt::format("(give it to your support representative; it expires at {}, single use)", k->expires_at));
  answer_key_waiters(st, fmt::format("Session key: {}\n", st.key));
}

void on_error(agent_state& st, const tunnel::frame& f) {
  std::string why;
  auto e = tunnel::parse_error(f.payload, why);
  if (e && e->code == "key_refused" && st.gate.authenticated()) {
    // The tunnel stays up; the old key stays void (docs/protocol.md §4.6).
    if (!st.gate.on_key_refused()) {
      protocol_error(st, "unexpected", "protocol error from the gateway: ERROR key_refused without a key offer");
      return;
    }
    st.err << "rsgate-agent: the gateway could not record the new session key; try `rsgate-agent key` again\n";
    answer_key_waiters(st, "error: the gateway could not record the new session key\n");
    return;
  }
  if (e && e->code == "replaced" && st.gate.authenticated()) {
    fail(st, "the gateway replaced this tunnel with a newer connection for this machine" +
                 (e->message.empty() ? std::string() : ": " + e->message));
    st.view.state = "replaced";
    return;
  }
  fail(st, fmt::format("the gateway reported an error: {} {}", e ? e->code : "?", e ? e->message : why));
}

void on_end(agent_state& st, const tunnel::frame& f) {
  std::string why;
  auto r = tunnel::parse_reason(f.payload, why);
  if (r && r->reason == tunnel::kReauthenticate) {
    // The tunnel's life is over (§6), not the session: authenticate again on a new connection.
    line(st, "The gateway asks this agent to authenticate again (the tunnel's life is over); reconnecting");
    st.reconnect_now = true;
    lost(st, "");
    return;
  }
  if (r && r->reason == tunnel::kMove) {
    // The gateway drains (it is being stopped): the other gateway of the profile first (§9).
    line(st, fmt::format("The gateway {} is stopping and hands this agent to the other gateway; reconnecting",
                         st.view.gateway));
    st.move_from = st.view.gateway;
    st.reconnect_now = true;
    lost(st, "");
    return;
  }
  if (r && r->reason == tunnel::kRestart) {
    // The gateway stops and keeps the session for its next run (§9): come back to it.
    line(st, fmt::format("The gateway is restarting; reconnecting (it keeps session {} for {} s)", st.view.session,
                         st.grace_seconds));
    lost(st, "");
    return;
  }
  if (r) {
    line(st, fmt::format("Session ended: {}", r->reason));
    st.view.state = "ended";
    st.done = true;
    st.receipt_expected = true;
  } else {
    protocol_error(st, "bad_end", "malformed END from the gateway: " + why);
  }
}

void on_notice(agent_state& st, const tunnel::frame& f) {
  std::string why;
  // docs/protocol.md §4.8: a malformed NOTICE is a protocol error, not something to skip.
  if (auto n = parse_notice_for_display(f.payload, why)) {
    apply_notice(st.view, *n);
    line(st, fmt::format("[{}] {}", n->ts, describe_notice(*n)));
  } else {
    protocol_error(st, "bad_notice", "malformed NOTICE from the gateway: " + why);
  }
}

void keep_receipt(agent_state& st, const tunnel::frame& f, const std::string& ended);
asio::awaitable<void> drain(agent_state& st);

// A frame on channel 0 that tunnel_state admitted in the current phase.
void on_control_frame(agent_state& st, agent_handshake& hs, const tunnel::frame& f) {
  std::string why;
  switch (f.header.type) {
    case tunnel::frame_type::challenge:
      return on_challenge(st, hs, f);
    case tunnel::frame_type::success:
      return on_success(st, hs, f);
    case tunnel::frame_type::failure: {
      auto fl = tunnel::parse_failure(f.payload, why);
      fail(st, fmt::format("the gateway refused this machine: {}{}", fl ? fl->reason : why,
                           fl && fl->retry_after_seconds ? fmt::format(" (locked out; retry in {} s)", fl->retry_after_seconds) : ""));
      return;
    }
    case tunnel::frame_type::key_ack:
      return on_key_ack(st, f);
    case tunnel::frame_type::notice:
      return on_notice(st, f);
    case tunnel::frame_type::end:
      return on_end(st, f);
    case tunnel::frame_type::ping:
      return send(st, tunnel::frame_type::pong, {});
    case tunnel::frame_type::rekey:
      // docs/protocol.md §6: the gateway's KeyUpdate came before it (OpenSSL renewed the
      // gateway's keys inside the read, and renews ours with our next write, the RESPONSE to
      // the CHALLENGE that follows at the latest).
      if (!tunnel::parse_rekey(f.payload, why)) protocol_error(st, "bad_rekey", "malformed REKEY from the gateway: " + why);
      return;
    case tunnel::frame_type::error:
      return on_error(st, f);
    case tunnel::frame_type::receipt:  // owed: of an earlier session (docs/protocol.md §4.12)
      // A gateway sends at most kOwedReceipts on a connection: more would only fill the disk.
      if (++st.owed_receipts > tunnel::kOwedReceipts)
        return protocol_error(st, "unexpected",
                              fmt::format("more than {} receipts of earlier sessions on one connection", tunnel::kOwedReceipts));
      return keep_receipt(st, f, "");
    default:  // pong
      return;
  }
}

// One frame from the gateway, read while the agent runs.
void on_frame(agent_state& st, agent_handshake& hs, tunnel::frame& f) {
  if (st.gate.authenticated()) st.stream->expires_after(std::chrono::seconds(st.dead_peer_seconds));
  if (tunnel::is_control(f.header.type)) return on_control_frame(st, hs, f);
  switch (f.header.type) {
    case tunnel::frame_type::channel_open:
      return on_channel_open(st, f);
    case tunnel::frame_type::data:
    case tunnel::frame_type::window:
    case tunnel::frame_type::eof:
    case tunnel::frame_type::close:
      return on_channel_frame(st, f);
    default:  // tunnel_state refused every other type already
      protocol_error(st, "unexpected", "unexpected " + std::string(tunnel::name_of(f.header.type)) + " from the gateway");
  }
}

// Sends this connection's HELLO once its channel binding is known. nullopt (and the agent
// failed, nothing sent) when the exporter cannot be derived: never a zero binding.
std::optional<agent_handshake> start_handshake(agent_state& st) {
  auto exporter = export_channel_binding(st.stream->native_handle());
  if (!exporter) {
    fail(st, "cannot derive the TLS channel binding (exporter) of the connection; not authenticating");
    return std::nullopt;
  }
  identity id;
  id.machine = st.opt.prof.machine();
  id.secret = st.opt.prof.secret;
  id.mechanisms = st.opt.prof.mechanisms;
  // A `deny` scope is not offered; an `ask` one says so (docs/protocol.md §8.1).
  for (auto& s : st.opt.prof.scopes)
    if (s.policy != scope_policy::deny) id.scopes.push_back({s.name, "", s.policy == scope_policy::ask});
  id.approval_seconds = st.opt.prof.approval_seconds;
  id.receipts = true;  // keep_receipt stores and acknowledges every receipt
  agent_handshake hs(id, std::move(*exporter), make_client_nonce());
  st.dec.emplace();
  // A reconnect names the session to resume (§9); the first connection names none.
  send(st, tunnel::frame_type::hello, tunnel::to_payload(hs.make_hello(st.view.session)));
  st.gate.on_hello_sent();
  return hs;
}

// The tunnel until it ends: connect, authenticate, then every frame from the gateway. A stop
// cancels it (wait_for_stop ends first in run_tunnel's group): the pending operation ends with an error and the
// coroutine returns without waiting for anything else.
asio::awaitable<void> tunnel_session(agent_state& st, asio::ssl::context& tls) {
  co_await asio::this_coro::throw_if_cancelled(false);  // a cancelled operation is an error value
  bool connected = false;
  // After END `move` the gateway it came from is tried last.
  std::vector<std::string> order{st.opt.prof.primary, st.opt.prof.backup};
  if (!st.move_from.empty() && order[0] == st.move_from) std::swap(order[0], order[1]);
  for (auto& address : order) {
    if (address.empty() || st.done) continue;  // st.done: stopped while connecting
    if ((connected = co_await connect_to(st, tls, address))) break;
  }
  if (connected) st.move_from.clear();
  if (!connected) {
    if (!st.done && !st.view.session.empty()) {  // a reconnect: connect_to said why; try again
      lost(st, "");
      co_return;
    }
    if (!st.done) st.exit_code = 1;  // a stop while connecting is the customer's choice: exit 0
    st.done = true;
    st.view.state = "disconnected";
    co_return;
  }
  st.view.state = "authenticating";
  auto hs = start_handshake(st);
  while (hs && !st.done && !st.conn_over) {
    auto [f, rec] = co_await read_frame(st);
    if (!f) {
      on_read_end(st, rec);
      break;
    }
    if (st.opt.frame_hook) st.opt.frame_hook(static_cast<std::uint8_t>(f->header.type));
    // Before a verified SUCCESS only the handshake's frames (and PING/PONG/ERROR) pass.
    if (auto why = st.gate.refuse(f->header.type); !why.empty()) {
      protocol_error(st, "unexpected", "protocol error from the gateway: " + why);
      break;
    }
    on_frame(st, *hs, *f);
  }
}

// A lost connection's end before the next one (see agent_state.hpp): its channels end, a
// `key` request waiting on it is answered, its write is cancelled and waited for (at most
// 2 s), and the protocol state starts again.
asio::awaitable<void> end_connection(agent_state& st) {
  st.keepalive_timer.cancel();
  abandon_channels(st);
  st.key_unconfirmed = st.key_unconfirmed || st.gate.key_offer_outstanding();
  if (st.stream) {
    st.stream->close();  // the pending write (if any) ends with an error
    if (st.writing) {
      st.write_idle.expires_after(std::chrono::seconds(2));
      co_await st.write_idle.async_wait(use_tuple);
    }
  }
  st.outq.clear();
  if (st.writing) {  // a write that outlived its closed socket: a defect; stop here
    fail(st, "internal error: a write to the lost connection did not end");
    co_return;
  }
  st.stream.reset();
  st.dec.reset();
  st.gate = tunnel_state{};
  st.owed_receipts = 0;
  // After the reset: a `key` request from now on is refused (not connected), none waits.
  answer_key_waiters(st, "error: the connection to the gateway was lost; try again when it is back\n");
  st.conn_over = false;
  ++st.connection;
  if (!st.done) st.view.state = "reconnecting";
}

// The wait before the next attempt: exponential backoff (1 s doubling to 30 s) with jitter
// (each wait drawn between half and all of it), so that agents cut off together do not come
// back together; never past the grace's end, where the last attempt is made. False (the
// agent fails) when the grace is over, or when stopped meanwhile.
asio::awaitable<bool> wait_to_reconnect(agent_state& st) {
  if (st.done) co_return false;  // stopped while the connection wound down
  if (std::exchange(st.reconnect_now, false)) co_return true;
  const auto now = std::chrono::steady_clock::now();
  if (now >= st.reconnect_deadline) {
    fail(st, fmt::format("could not reconnect to the gateway within its {} s grace; session {} has ended",
                         st.grace_seconds, st.view.session));
    co_return false;
  }
  const double draw = static_cast<double>(randombytes_uniform(1'000'001)) / 1'000'000.0;
  const std::chrono::steady_clock::duration wait = std::chrono::milliseconds(tunnel::reconnect_backoff_ms(st.attempts, draw));
  ++st.attempts;
  st.backoff_timer.expires_after(std::min(wait, st.reconnect_deadline - now));
  co_await st.backoff_timer.async_wait(use_tuple);
  co_return !st.done;
}

// Connections until the agent ends: each lost one is wound down and followed by another, with
// HELLO naming the session, within the gateway's grace.
asio::awaitable<void> tunnel_life(agent_state& st, asio::ssl::context& tls) {
  co_await asio::this_coro::throw_if_cancelled(false);
  for (;;) {
    co_await tunnel_session(st, tls);
    if (st.done || !st.conn_over) co_return;
    co_await end_connection(st);
    if (st.done) co_return;
    // Not inside `||`: GCC 12 miscompiles a co_await in a short-circuit operand.
    const bool again = co_await wait_to_reconnect(st);
    if (!again) co_return;
  }
}

// Returns when request_stop cancels the stop signal (or when run_tunnel's group cancels this
// wait because the tunnel ended by itself).
asio::awaitable<void> wait_for_stop(agent_state& st) {
  co_await asio::this_coro::throw_if_cancelled(false);
  if (st.done) co_return;
  st.stop_signal.expires_at(asio::steady_timer::time_point::max());
  co_await st.stop_signal.async_wait(use_tuple);
}

// A RECEIPT that arrived: stored beside the profile (receipts_dir) whatever it says, since it
// is what the gateway signed, and checked against the profile's pinned keys; the customer is
// told where it is and whether it verifies. `ended`: the session that just ended, whose
// receipt this is; "" for a receipt the gateway owed from an earlier session (docs/protocol.md
// §4.12), named by its body. Once stored it is acknowledged (RECEIPT_ACK), so that the gateway
// stops owing it; one that is not stored is not acknowledged and comes again next time.
void keep_receipt(agent_state& st, const tunnel::frame& f, const std::string& ended) {
  std::string why;
  auto r = tunnel::parse_receipt(f.payload, why);
  if (!r) {
    st.err << "rsgate-agent: the gateway sent a malformed receipt, not kept: " << printable(why, 256) << "\n";
    return;
  }
  std::string session = ended;
  if (session.empty()) {
    auto body = tunnel::parse_receipt_body(r->receipt, why);
    if (!body) {
      st.err << "rsgate-agent: the gateway sent a receipt whose body is unreadable, not kept: " << printable(why, 256)
             << "\n";
      return;
    }
    session = body->session;
    line(st, fmt::format("The gateway sends the receipt of session {}, which ended while this agent was away", session));
  }
  r->profile = std::filesystem::absolute(st.opt.profile_file).string();
  const auto dir = receipts_directory(st.opt.prof, st.opt.profile_file);
  const auto file = dir / receipt_file_name(session, system_clock::instance().now());
  try {
    make_private_dir(dir, 0700);  // an existing directory keeps its mode
    write_file_exclusive(file, tunnel::format_receipt_file(*r), 0600);
  } catch (const std::exception& e) {
    st.err << "rsgate-agent: the session's receipt could not be stored in " << dir.string() << ": " << e.what() << "\n";
    return;
  }
  send(st, tunnel::frame_type::receipt_ack, tunnel::to_payload(tunnel::receipt_ack{session}));
  line(st, "Receipt: " + file.string());
  auto v = check_receipt(*r, st.opt.prof);
  if (v.valid) {
    line(st, fmt::format("Receipt verified with the gateway key {} pinned in the profile: {}", v.key_id,
                         describe_receipt(*v.body)));
  } else {
    st.err << "rsgate-agent: WARNING: the receipt does not verify: " << v.problem << "\n";
    if (v.body && v.body->session != session)
      st.err << "rsgate-agent: WARNING: the receipt names session " << v.body->session << ", not " << session << "\n";
  }
}

// After the session ended (END) or the customer's STOP, the gateway sends the session's
// RECEIPT and closes (docs/protocol.md §4.12). Read for at most kReceiptWaitSeconds + 5 s;
// anything but RECEIPT is ignored now, since the session is over.
asio::awaitable<void> await_receipt(agent_state& st) {
  st.stream->expires_after(std::chrono::seconds(tunnel::kReceiptWaitSeconds + 5));
  for (;;) {
    auto [f, rec] = co_await read_frame(st);
    if (!f) break;
    if (f->header.type == tunnel::frame_type::receipt) {
      keep_receipt(st, *f, st.view.session);
      co_await drain(st);  // its RECEIPT_ACK reaches the gateway before the close
      co_return;
    }
    if (f->header.type == tunnel::frame_type::error) break;
  }
  line(st, fmt::format("No receipt came from the gateway for session {}", st.view.session));
}

// Waits until everything queued, ERROR and STOP included, was written, so that it reaches the
// gateway before the close: flush() cancels write_idle when it stops; at most 2 s (the
// stream's deadline, set by the caller, bounds the write itself too).
asio::awaitable<void> drain(agent_state& st) {
  if (st.writing) {
    st.write_idle.expires_after(std::chrono::seconds(2));
    co_await st.write_idle.async_wait(use_tuple);
  }
  co_await flush(st);
}

}  // namespace

void report_exception::operator()(std::exception_ptr e) const {
  if (!e) return;
  std::string what = "an unknown exception";
  try {
    std::rethrow_exception(e);
  } catch (const std::exception& x) {
    what = x.what();
  } catch (...) {
  }
  st->err << "rsgate-agent: internal error in " << where << ": " << printable(what, 512) << "\n";
  st->err.flush();
  st->exit_code = 1;
  st->done = true;
  if (st->ioc) st->ioc->stop();
}

void line(agent_state& st, const std::string& text) {
  st.out << text << "\n";
  st.out.flush();
}

bytes take_frame_buffer(agent_state& st) {
  if (st.spare_frames.empty()) return {};
  bytes b = std::move(st.spare_frames.back());
  st.spare_frames.pop_back();
  return b;
}

void recycle_frame_buffer(agent_state& st, bytes&& b) {
  if (st.spare_frames.size() < kSpareFrameBuffers && b.size() == kDataFrameBytes) st.spare_frames.push_back(std::move(b));
}

void send_frame(agent_state& st, bytes frame, std::size_t size) {
  if (!st.stream || st.conn_over) return;  // the connection is lost: nothing more goes out on it
  const auto n = std::min(size, frame.size());
  st.outq.push_back({std::move(frame), n});
  // A running flush picks the frame up; only start one when none runs.
  if (!st.writing) asio::co_spawn(st.stream->get_executor(), flush(st), report_exception{&st, "a tunnel write"});
}

void send(agent_state& st, tunnel::frame_type t, bytes payload, std::uint32_t channel) {
  send_frame(st, tunnel::encode(t, channel, payload));
}

void lost(agent_state& st, const std::string& message) {
  if (st.done || st.conn_over) return;
  if (st.view.session.empty()) {  // nothing to resume: the first connection failed
    fail(st, message);
    return;
  }
  if (!st.reconnecting) {
    st.reconnecting = true;
    st.attempts = 0;
    st.reconnect_deadline = std::chrono::steady_clock::now() + std::chrono::seconds(st.grace_seconds);
  }
  st.conn_over = true;
  if (message.empty()) return;
  // One write: a reader of the stream never sees half of the line.
  st.err << fmt::format("rsgate-agent: {}; reconnecting (the gateway keeps session {} for {} s)\n",
                        printable(message, 1024), st.view.session, st.grace_seconds);
  st.err.flush();
}

void fail(agent_state& st, const std::string& message) {
  if (st.done) return;
  st.err << "rsgate-agent: " << printable(message, 1024) << "\n";
  st.err.flush();
  st.exit_code = 1;
  st.done = true;
}

void protocol_error(agent_state& st, std::string_view code, const std::string& message) {
  if (st.done) return;
  send(st, tunnel::frame_type::error,
       tunnel::to_payload(tunnel::error_message{std::string(code), printable(message, tunnel::kMaxReasonBytes)}));
  fail(st, message);
}

// One offer at a time (docs/protocol.md §4.6): while one waits for its KEY_ACK, a new request
// waits for that one's answer instead.
void offer_key(agent_state& st) {
  if (st.gate.key_offer_outstanding()) return;
  tunnel::key_offer k;
  k.key = auth::generate_session_key();
  k.expires_in = static_cast<std::int64_t>(st.opt.key_minutes) * 60;
  st.view.key_expires_at.clear();
  st.gate.on_key_offer(k.key, k.expires_in);
  send(st, tunnel::frame_type::key_offer, tunnel::to_payload(k));
}

void request_stop(agent_state& st) {
  const bool authenticated = st.stream && st.gate.authenticated() && !st.done;
  // STOP only to a gateway that proved itself: before that it is not part of the protocol,
  // and nothing queued for it need reach it, so its connection is closed at once.
  if (authenticated) {
    send(st, tunnel::frame_type::stop, tunnel::to_payload(tunnel::reason_only{"customer"}));
    st.receipt_expected = true;
  }
  else if (st.stream) st.stream->close();
  st.done = true;
  st.stop_signal.cancel();
  st.backoff_timer.cancel();  // a reconnect's wait, even one the group's cancellation missed
}

asio::awaitable<void> run_tunnel(agent_state& st, asio::ssl::context& tls) {
  // The first to end cancels the other (awaitable operators' `||` would wait for a success,
  // and so hang on an exception in the tunnel's code, which must end the agent at once).
  auto ex = co_await asio::this_coro::executor;
  auto [order, tunnel_ex, stop_ex] =
      co_await asio::experimental::make_parallel_group(asio::co_spawn(ex, tunnel_life(st, tls), asio::deferred),
                                                       asio::co_spawn(ex, wait_for_stop(st), asio::deferred))
          .async_wait(asio::experimental::wait_for_one(), asio::use_awaitable);
  if (tunnel_ex) std::rethrow_exception(tunnel_ex);
  if (stop_ex) std::rethrow_exception(stop_ex);
  if (st.view.state != "ended" && st.view.state != "replaced") st.view.state = "disconnected";
  st.keepalive_timer.cancel();
  abandon_channels(st);
  if (!st.stream) co_return;
  st.stream->expires_after(std::chrono::seconds(2));
  co_await drain(st);
  if (st.receipt_expected) co_await await_receipt(st);
  co_await st.stream->shutdown();
}

}  // namespace rsgate::agent::detail
