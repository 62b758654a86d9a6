// See runtime.hpp. One io_context, one thread: the tunnel reader, a keepalive timer, the
// control socket and the signal handler are coroutines on it, so the agent's state needs no
// locks. The agent verifies the gateway against the CA pinned in its profile and the
// gateway's name, requires ALPN rsgate/1 before it says anything, and trusts SUCCESS only with
// the right SCRAM server signature; until then tunnel_state admits only the handshake's frames
// and the 20 s handshake bound holds whatever arrives. A protocol error of the gateway's gets
// ERROR, one line on stderr and exit 1; so does an exception anywhere in the tunnel.
#include "agent/runtime.hpp"

#include <fmt/format.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <unistd.h>

#include <csignal>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/asio/read_until.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/ssl/error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/streambuf.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core.hpp>
#include <boost/json/serialize.hpp>
#include <boost/json/value.hpp>
#include <deque>
#include <map>
#include <filesystem>
#include <ostream>

#include "protocol/agent_handshake.hpp"
#include "agent/notice.hpp"
#include "protocol/agent_state.hpp"
#include "auth/session_key.hpp"
#include "core/clock.hpp"
#include "core/timefmt.hpp"
#include "protocol/messages.hpp"
#include "net/socket_state.hpp"
#include "net/tls_stream.hpp"
#include "protocol/wire.hpp"
#include "protocol/channel_flow.hpp"

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace ssl = asio::ssl;
namespace json = boost::json;
using tcp = asio::ip::tcp;
using local_socket = asio::local::stream_protocol::socket;

namespace rsgate::agent {
namespace {

constexpr auto use_tuple = asio::as_tuple(asio::use_awaitable);

// One channel: a TCP connection to the local target of an offered scope. Its windows, credit,
// EOFs and close are `flow`, the protocol's one state machine (protocol/channel_flow.hpp,
// docs/protocol.md §8), which the gateway runs too; `window` is the gateway's, from
// CHANNEL_OPEN.
struct local_channel {
  local_channel(asio::any_io_executor ex, std::uint32_t i, std::uint32_t window)
      : id(i), sock(ex), data_timer(ex), credit_timer(ex), flow(tunnel::channel_flow::role::acceptor, window) {}
  std::uint32_t id;
  std::string scope, access_type, actor;
  tcp::socket sock;
  asio::steady_timer data_timer;    // local_writer waits here for the gateway's bytes or EOF
  asio::steady_timer credit_timer;  // local_reader waits here for the gateway's window
  tunnel::channel_flow flow;
  std::deque<bytes> inbox;  // DATA from the gateway that `flow` delivered, not yet written locally
  bool finished = false;    // the socket is closed and the channel forgotten (finish_channel)
  std::int64_t bytes_in = 0, bytes_out = 0;
  void wake() {
    data_timer.cancel();
    credit_timer.cancel();
  }
};

struct agent_state {
  agent_state(const start_options& o, std::ostream& os, std::ostream& es) : opt(o), out(os), err(es) {}
  const start_options& opt;
  std::ostream& out;
  std::ostream& err;
  std::optional<net::tls_stream> stream;  // the tunnel (docs/protocol.md §2)
  std::deque<bytes> outq;
  bool writing = false;
  bool done = false;
  int exit_code = 0;
  std::string gateway;
  std::string session;
  std::string key;
  std::string key_expires_at;
  std::string owner, pmr;
  std::vector<std::string> grants;
  std::string state = "connecting";
  std::optional<tunnel::decoder> dec;
  tunnel_state gate;  // the protocol phase and the KEY_OFFER waiting for its KEY_ACK
  std::vector<std::shared_ptr<local_socket>> key_waiters;  // control clients waiting for a KEY_ACK
  std::map<std::uint32_t, std::shared_ptr<local_channel>> channels;
  tunnel::window_budget windows{tunnel::kTunnelWindowBudget};  // growth of our receive windows
  asio::io_context* ioc = nullptr;  // stopped when a coroutine fails with an exception
};

void line(agent_state& st, const std::string& text) {
  st.out << text << "\n";
  st.out.flush();
}

asio::awaitable<void> flush(agent_state& st) {
  if (st.writing || !st.stream) co_return;
  st.writing = true;
  while (!st.outq.empty()) {
    // Everything queued (up to 1 MiB) in one write: fewer TLS records and system calls.
    std::vector<bytes> batch;
    std::vector<asio::const_buffer> bufs;
    std::size_t total = 0;
    while (!st.outq.empty() && total < (1u << 20)) {
      total += st.outq.front().size();
      batch.push_back(std::move(st.outq.front()));
      st.outq.pop_front();
    }
    for (auto& b : batch) bufs.emplace_back(asio::buffer(b));
    auto ec = co_await st.stream->write(bufs);
    if (ec) {
      st.outq.clear();
      break;
    }
  }
  st.writing = false;
}

// Text from the network or a parser (which may quote it) on its way to a terminal or a frame:
// printable ASCII only, bounded.
std::string printable(std::string_view s, std::size_t max = tunnel::kMaxReasonBytes) {
  std::string out(s.substr(0, max));
  for (auto& c : out)
    if (static_cast<unsigned char>(c) < 0x20 || static_cast<unsigned char>(c) > 0x7e) c = '?';
  return out;
}

// The completion of a coroutine spawned by the agent: an exception there is a defect. It is
// reported and ends the agent with exit 1, never an exit 0 that looks like a normal end.
struct report_exception {
  agent_state* st;
  const char* where;
  void operator()(std::exception_ptr e) const {
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
};

void send_frame(agent_state& st, bytes frame) {
  st.outq.push_back(std::move(frame));
  // A running flush picks the frame up; only start one when none runs.
  if (!st.writing) asio::co_spawn(st.stream->get_executor(), flush(st), report_exception{&st, "a tunnel write"});
}

void send(agent_state& st, tunnel::frame_type t, bytes payload, std::uint32_t channel = 0) {
  send_frame(st, tunnel::encode(t, channel, payload));
}

// One offer at a time (docs/protocol.md §4.6): while one waits for its KEY_ACK, a new request
// waits for that one's answer instead.
void offer_key(agent_state& st) {
  if (st.gate.key_offer_outstanding()) return;
  tunnel::key_offer k;
  k.key = auth::generate_session_key();
  k.expires_in = static_cast<std::int64_t>(st.opt.key_minutes) * 60;
  st.key_expires_at.clear();
  st.gate.on_key_offer(k.key, k.expires_in);
  send(st, tunnel::frame_type::key_offer, tunnel::to_payload(k));
}

// Ends the agent with exit 1 and one line on stderr.
void fail(agent_state& st, const std::string& message) {
  if (st.done) return;
  st.err << "rsgate-agent: " << printable(message, 1024) << "\n";
  st.err.flush();
  st.exit_code = 1;
  st.done = true;
}

// The gateway broke the protocol: ERROR `code` to it (docs/protocol.md §4.11), then fail.
void protocol_error(agent_state& st, std::string_view code, const std::string& message) {
  if (st.done) return;
  send(st, tunnel::frame_type::error, tunnel::to_payload(tunnel::error_message{std::string(code), printable(message)}));
  fail(st, message);
}

std::string status_json(const agent_state& st) {
  json::array grants;
  for (auto& g : st.grants) grants.emplace_back(g);
  json::array channels;
  for (auto& [id, ch] : st.channels)
    channels.emplace_back(json::object{{"id", id}, {"scope", ch->scope}, {"access_type", ch->access_type},
                                       {"actor", ch->actor}, {"bytes_in", ch->bytes_in}, {"bytes_out", ch->bytes_out}});
  json::object o{{"state", st.state}, {"machine", st.opt.prof.machine()}, {"gateway", st.gateway},
                 {"session", st.session}, {"key_expires_at", st.key_expires_at}, {"owner", st.owner},
                 {"pmr", st.pmr}, {"grants", std::move(grants)}, {"channels", std::move(channels)}};
  return json::serialize(o);
}

// Bytes read from the tunnel and not yet fed to the decoder.
struct read_buffer {
  std::array<std::uint8_t, 16 * 1024> data{};  // one TLS record's plaintext at most
  std::size_t begin = 0, end = 0;
};

// Reads one frame with the decoder, waiting for more bytes as needed. nullopt with the read's
// error, or with none when the decoder failed (st.dec->error() says why).
asio::awaitable<std::pair<std::optional<tunnel::frame>, beast::error_code>> read_frame(agent_state& st, read_buffer& rb) {
  for (;;) {
    if (auto f = st.dec->next()) co_return std::pair{std::move(f), beast::error_code{}};
    if (rb.begin < rb.end) {
      rb.begin += st.dec->feed(std::span<const std::uint8_t>(rb.data.data() + rb.begin, rb.end - rb.begin));
      if (st.dec->error() != tunnel::decode_error::none) co_return std::pair{std::nullopt, beast::error_code{}};
      continue;
    }
    auto [ec, n] = co_await st.stream->read_some(asio::buffer(rb.data));
    if (ec) co_return std::pair{std::nullopt, ec};
    rb.begin = 0;
    rb.end = n;
  }
}

void print_notice(agent_state& st, const tunnel::notice& n) {
  if (n.event == "attach") {
    st.owner = n.actor;
    st.pmr = n.pmr;
    st.state = "active";
  } else if (n.event == "grant") {
    st.grants.push_back(n.user);
  } else if (n.event == "revoke") {
    std::erase(st.grants, n.user);
  } else if (n.event == "transfer") {
    st.owner = n.user;
  }
  line(st, fmt::format("[{}] {}", n.ts, describe_notice(n)));
}

// Ends channel `ch` here (CLOSE toward the gateway if `send_close`). A channel whose
// directions both ended cleanly, with everything written to the target, closes the target's
// connection normally: a FIN behind what the kernel still holds. Anything else cut the
// stream (`failed`: the target's connection failed; or the gateway's CLOSE or the tunnel's end
// came before the gateway's EOF, or with bytes still unwritten): the connection is reset, so
// that the target learns at once, even while it is not reading, and gets nothing after the cut.
void finish_channel(agent_state& st, const std::shared_ptr<local_channel>& ch, bool send_close, bool failed = false) {
  if (ch->finished) return;
  ch->finished = true;
  ch->flow.release(&st.windows);
  if (failed || !ch->flow.received_all()) net::reset_on_close(ch->sock);
  beast::error_code ignored;
  ch->sock.close(ignored);
  ch->wake();
  st.channels.erase(ch->id);
  if (send_close) send(st, tunnel::frame_type::close, {}, ch->id);
  line(st, fmt::format("[{}] {} closed {} to {} ({} bytes in, {} out)", format_rfc3339(system_clock::instance().now()),
                       ch->actor.empty() ? "the representative" : ch->actor, ch->access_type, ch->scope, ch->bytes_in,
                       ch->bytes_out));
}

// The agent ends the channel itself: CLOSE unless the channel's flow says it is closed already.
void close_channel(agent_state& st, const std::shared_ptr<local_channel>& ch, bool failed) {
  if (!ch->finished) finish_channel(st, ch, ch->flow.close(), failed);
}

// Both directions ended cleanly and everything was written: the channel is done.
void maybe_done(agent_state& st, const std::shared_ptr<local_channel>& ch) {
  if (ch->flow.both_ended()) close_channel(st, ch, false);
}

// The target's connection is gone (a reset, a TCP timeout) although nothing reads it.
bool target_lost(local_channel& ch) { return net::connection_lost(ch.sock, ch.flow.eof_handed_on()); }

// After the target's EOF nothing reads its socket, so nothing would see it reset later (a
// target that closes with bytes unread, or keepalive that finds it gone) while no bytes go to
// it: wait for an error on the socket until the channel ends.
asio::awaitable<void> watch_after_eof(agent_state& st, std::shared_ptr<local_channel> ch) {
  while (!ch->finished) {
    auto [ec] = co_await ch->sock.async_wait(tcp::socket::wait_error, use_tuple);
    if (ch->finished || ec) co_return;
    if (target_lost(*ch)) {
      close_channel(st, ch, true);
      co_return;
    }
    // Urgent data or a clean close both ways (maybe_done ends the channel): not an error, but
    // the condition stays, so look again only a second later.
    ch->credit_timer.expires_after(std::chrono::seconds(1));
    co_await ch->credit_timer.async_wait(use_tuple);
  }
}

asio::awaitable<void> local_reader(agent_state& st, std::shared_ptr<local_channel> ch) {
  std::vector<std::uint8_t> buf(tunnel::kMaxDataPayload);
  while (!ch->finished) {  // one DATA frame per read, at most the frame limit and the credit
    const auto want = ch->flow.sendable(buf.size());
    if (want == 0) {
      // The gateway's window is full: stop reading the target until its WINDOW comes. A
      // target that resets meanwhile is seen without reading: look once a second.
      ch->credit_timer.expires_after(std::chrono::seconds(1));
      auto [tec] = co_await ch->credit_timer.async_wait(use_tuple);
      if (!tec && !ch->finished && target_lost(*ch)) close_channel(st, ch, true);
      continue;
    }
    auto [ec, n] = co_await ch->sock.async_read_some(asio::buffer(buf.data(), want), use_tuple);
    if (ch->finished) break;
    if (ec == asio::error::eof) {  // a half-close: the other direction goes on
      if (ch->flow.send_eof()) send(st, tunnel::frame_type::eof, {}, ch->id);
      maybe_done(st, ch);
      co_await watch_after_eof(st, ch);
      break;
    }
    if (ec) {  // a reset or another failure is not an end of stream: the channel is cut
      close_channel(st, ch, true);
      break;
    }
    ch->flow.sent(static_cast<std::uint32_t>(n));
    ch->bytes_out += static_cast<std::int64_t>(n);
    send(st, tunnel::frame_type::data, bytes(buf.begin(), buf.begin() + static_cast<long>(n)), ch->id);
  }
}

asio::awaitable<void> local_writer(agent_state& st, std::shared_ptr<local_channel> ch) {
  std::vector<bytes> batch;
  std::vector<asio::const_buffer> bufs;
  while (!ch->finished) {
    if (!ch->inbox.empty()) {
      // Everything waiting in one write (at most the window).
      batch.clear();
      bufs.clear();
      while (!ch->inbox.empty()) {
        batch.push_back(std::move(ch->inbox.front()));
        ch->inbox.pop_front();
        bufs.emplace_back(asio::buffer(batch.back()));
      }
      auto [ec, n] = co_await asio::async_write(ch->sock, bufs, use_tuple);
      if (ec) {
        close_channel(st, ch, true);
        break;
      }
      ch->bytes_in += static_cast<std::int64_t>(n);
      // Returned in WINDOW batches of a quarter window; the window grows while busy.
      if (auto inc = ch->flow.handed_on(static_cast<std::uint32_t>(n), &st.windows))
        send_frame(st, tunnel::encode_window(ch->id, inc));
      continue;
    }
    if (ch->flow.take_eof()) {  // the gateway's EOF, after everything before it
      beast::error_code ignored;
      ch->sock.shutdown(tcp::socket::shutdown_send, ignored);
      maybe_done(st, ch);
      continue;
    }
    ch->data_timer.expires_after(std::chrono::seconds(60));
    co_await ch->data_timer.async_wait(use_tuple);
  }
}

// DATA, WINDOW, EOF or CLOSE from the gateway on an open channel: the channel's flow judges
// it, and the verdict is carried out here (docs/protocol.md §8).
void on_channel_frame(agent_state& st, const std::shared_ptr<local_channel>& ch, tunnel::frame& f) {
  const auto type = f.header.type;
  std::uint32_t value = 0;
  if (type == tunnel::frame_type::data) value = static_cast<std::uint32_t>(f.payload.size());
  if (type == tunnel::frame_type::window) value = tunnel::window_increment(f);
  switch (auto v = ch->flow.on_frame(type, value)) {
    case tunnel::channel_verdict::deliver:
      ch->inbox.push_back(std::move(f.payload));
      ch->data_timer.cancel();
      return;
    case tunnel::channel_verdict::eof:
      ch->data_timer.cancel();
      return;
    case tunnel::channel_verdict::credit:
      ch->credit_timer.cancel();
      return;
    case tunnel::channel_verdict::answer_close:
    case tunnel::channel_verdict::closed:
      finish_channel(st, ch, v == tunnel::channel_verdict::answer_close);
      return;
    case tunnel::channel_verdict::ignore:
      return;
    case tunnel::channel_verdict::window_exceeded:
      protocol_error(st, tunnel::error_code(v),
                     type == tunnel::frame_type::window ? "the gateway's WINDOW raised a channel's credit beyond 16 MiB"
                                                        : "the gateway sent beyond a channel's window or after its EOF");
      return;
    case tunnel::channel_verdict::unexpected:
      protocol_error(st, tunnel::error_code(v),
                     "protocol error from the gateway: " + std::string(tunnel::name_of(type)) + " not allowed now");
      return;
  }
}

asio::awaitable<void> open_local(agent_state& st, std::shared_ptr<local_channel> ch, scope_mapping target) {
  auto ex = co_await asio::this_coro::executor;
  tcp::resolver resolver(ex);
  auto [rec, results] = co_await resolver.async_resolve(target.host, std::to_string(target.port), use_tuple);
  beast::error_code cec = rec;
  if (!rec) {
    asio::steady_timer guard(ex, std::chrono::seconds(10));
    guard.async_wait([ch](beast::error_code e) {
      if (!e) {
        beast::error_code ignored;
        ch->sock.close(ignored);
      }
    });
    auto [e2, ep] = co_await asio::async_connect(ch->sock, results, use_tuple);
    guard.cancel();
    cec = e2;
  }
  if (ch->finished) co_return;
  if (cec) {
    st.channels.erase(ch->id);
    send(st, tunnel::frame_type::channel_reject,
         tunnel::to_payload(tunnel::reason_only{"the local target of this scope cannot be reached"}), ch->id);
    line(st, fmt::format("[{}] refused {} to {} for {}: the local target cannot be reached",
                         format_rfc3339(system_clock::instance().now()), ch->access_type, ch->scope, ch->actor));
    co_return;
  }
  beast::error_code ignored;
  ch->sock.set_option(tcp::no_delay(true), ignored);
  net::keep_alive(ch->sock);
  send(st, tunnel::frame_type::channel_accept, tunnel::to_payload(tunnel::channel_accept{tunnel::kInitialWindow}), ch->id);
  ch->flow.accepted_locally();
  line(st, fmt::format("[{}] {} opened {} to {}", format_rfc3339(system_clock::instance().now()),
                       ch->actor.empty() ? "the representative" : ch->actor, ch->access_type, ch->scope));
  asio::co_spawn(ex, local_reader(st, ch), report_exception{&st, "a channel"});
  asio::co_spawn(ex, local_writer(st, ch), report_exception{&st, "a channel"});
}

asio::awaitable<void> control_client(agent_state& st, std::shared_ptr<local_socket> sock) {
  asio::streambuf buf(256);
  auto [ec, n] = co_await asio::async_read_until(*sock, buf, '\n', use_tuple);
  if (ec) co_return;
  std::string cmd(asio::buffers_begin(buf.data()), asio::buffers_begin(buf.data()) + static_cast<long>(n) - 1);
  std::string reply;
  if (cmd == "stop") {
    reply = "stopping\n";
    // STOP only to a gateway that proved itself: before that it is not part of the protocol.
    if (st.stream && st.gate.authenticated() && !st.done)
      send(st, tunnel::frame_type::stop, tunnel::to_payload(tunnel::reason_only{"customer"}));
    st.done = true;
  } else if (cmd == "status") {
    reply = status_json(st) + "\n";
  } else if (cmd == "key") {
    if (!st.gate.authenticated() || st.done) {
      reply = "error: not connected\n";
    } else {
      offer_key(st);  // or wait for the offer already on its way
      st.key_waiters.push_back(sock);
      co_return;  // answered when the gateway acknowledges the key
    }
  } else {
    reply = "error: unknown command\n";
  }
  co_await asio::async_write(*sock, asio::buffer(reply), use_tuple);
  if (cmd == "stop" && st.stream) {
    // Give STOP a moment to leave, then close.
    asio::steady_timer t(sock->get_executor(), std::chrono::milliseconds(300));
    co_await t.async_wait(use_tuple);
    st.stream->close();
  }
}

asio::awaitable<void> control_server(agent_state& st, asio::local::stream_protocol::acceptor& acc) {
  for (;;) {
    auto sock = std::make_shared<local_socket>(acc.get_executor());
    auto [ec] = co_await acc.async_accept(*sock, use_tuple);
    if (ec) co_return;
    asio::co_spawn(acc.get_executor(), control_client(st, sock), report_exception{&st, "a control request"});
  }
}

asio::awaitable<void> keepalive(agent_state& st) {
  asio::steady_timer t(co_await asio::this_coro::executor);
  while (!st.done && st.stream) {
    t.expires_after(std::chrono::seconds(tunnel::kKeepaliveSeconds));
    co_await t.async_wait(use_tuple);
    if (st.done || !st.stream) break;
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

asio::awaitable<bool> connect_to(agent_state& st, ssl::context& tls, const std::string& address) {
  auto ex = co_await asio::this_coro::executor;
  auto colon = address.rfind(':');
  std::string host = address.substr(0, colon), port = address.substr(colon + 1);
  if (host.size() > 2 && host.front() == '[') host = host.substr(1, host.size() - 2);
  tcp::resolver resolver(ex);
  auto [rec, results] = co_await resolver.async_resolve(host, port, use_tuple);
  if (rec) {
    st.err << fmt::format("rsgate-agent: cannot resolve {}: {}\n", address, rec.message());
    co_return false;
  }
  st.stream.emplace(tcp::socket(ex), tls.native_handle(), net::tls_stream::kTunnelBuffer);
  // The handshake bound: from here to a verified SUCCESS, whatever frames arrive meanwhile.
  st.stream->expires_after(std::chrono::seconds(tunnel::kHandshakeTimeoutSeconds));
  auto [cec, ep] = co_await asio::async_connect(st.stream->socket(), results, use_tuple);
  if (cec) {
    st.err << fmt::format("rsgate-agent: cannot connect to {}: {}\n", address, cec.message());
    co_return false;
  }
  beast::error_code ignored;
  st.stream->socket().set_option(tcp::no_delay(true), ignored);
  // The gateway's certificate must chain to the pinned CA (verify_peer on the context) and
  // name server_name: a DNS name, or an IP address in an IP SAN.
  if (!st.stream->expect_peer_name(st.opt.prof.server_name)) {
    st.err << fmt::format("rsgate-agent: the profile's server_name '{}' cannot be checked against a certificate\n",
                          st.opt.prof.server_name);
    co_return false;
  }
  auto hec = co_await st.stream->handshake(false);
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
  st.gateway = address;
  co_return true;
}

// Why the tunnel's reads ended, for the customer; a decoding error is the gateway's protocol
// error and gets ERROR `bad_frame`.
void on_read_end(agent_state& st, beast::error_code ec) {
  if (st.done) return;
  if (st.dec->error() != tunnel::decode_error::none) {
    protocol_error(st, "bad_frame",
                   "protocol error from the gateway: " + std::string(tunnel::describe(st.dec->error())));
  } else if (ec == asio::error::timed_out && !st.gate.authenticated()) {
    fail(st, fmt::format("the gateway did not complete the authentication within {} s",
                         tunnel::kHandshakeTimeoutSeconds));
  } else if (ec == asio::error::timed_out) {
    fail(st, fmt::format("no frame from the gateway for {} s: the tunnel is dead", tunnel::kDeadPeerSeconds));
  } else {
    fail(st, "the connection to the gateway was lost");
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
  st.gate.on_verified_success();
  // From now on the dead-peer bound replaces the handshake bound, renewed by every frame.
  st.stream->expires_after(std::chrono::seconds(tunnel::kDeadPeerSeconds));
  if (!st.session.empty()) return;  // a re-challenge (§6)
  st.session = s->session;
  st.state = "authenticated";
  line(st, fmt::format("Connected to {} as {}; session {}", st.gateway, st.opt.prof.machine(), st.session));
  offer_key(st);
  asio::co_spawn(st.stream->get_executor(), keepalive(st), report_exception{&st, "the keepalive"});
}

void answer_key_waiters(agent_state& st, const std::string& reply_text) {
  for (auto& w : st.key_waiters) {
    auto reply = std::make_shared<std::string>(reply_text);
    asio::async_write(*w, asio::buffer(*reply), [reply, w](beast::error_code, std::size_t) {});
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
  st.key_expires_at = k->expires_at;
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
    st.state = "replaced";
    return;
  }
  fail(st, fmt::format("the gateway reported an error: {} {}", e ? e->code : "?", e ? e->message : why));
}

// A frame on channel 0 that tunnel_state admitted in the current phase.
void on_control_frame(agent_state& st, agent_handshake& hs, const tunnel::frame& f) {
  std::string why;
  switch (f.header.type) {
    case tunnel::frame_type::challenge:
      on_challenge(st, hs, f);
      break;
    case tunnel::frame_type::success:
      on_success(st, hs, f);
      break;
    case tunnel::frame_type::failure: {
      auto fl = tunnel::parse_failure(f.payload, why);
      fail(st, fmt::format("the gateway refused this machine: {}{}", fl ? fl->reason : why,
                           fl && fl->retry_after_seconds ? fmt::format(" (locked out; retry in {} s)", fl->retry_after_seconds) : ""));
      break;
    }
    case tunnel::frame_type::key_ack:
      on_key_ack(st, f);
      break;
    case tunnel::frame_type::notice:
      // docs/protocol.md §4.8: a malformed NOTICE is a protocol error, not something to skip.
      if (auto n = parse_notice_for_display(f.payload, why))
        print_notice(st, *n);
      else
        protocol_error(st, "bad_notice", "malformed NOTICE from the gateway: " + why);
      break;
    case tunnel::frame_type::end:
      if (auto r = tunnel::parse_reason(f.payload, why)) {
        line(st, fmt::format("Session ended: {}", r->reason));
        st.state = "ended";
        st.done = true;
      } else {
        protocol_error(st, "bad_end", "malformed END from the gateway: " + why);
      }
      break;
    case tunnel::frame_type::ping:
      send(st, tunnel::frame_type::pong, {});
      break;
    case tunnel::frame_type::error:
      on_error(st, f);
      break;
    default:  // pong
      break;
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
  for (auto& s : st.opt.prof.scopes) id.scopes.push_back({s.name, ""});
  agent_handshake hs(id, std::move(*exporter), make_client_nonce());
  st.dec.emplace();
  send(st, tunnel::frame_type::hello, tunnel::to_payload(hs.make_hello()));
  st.gate.on_hello_sent();
  return hs;
}

// Waits (at most 2 s, and within the stream's deadline) until everything queued, ERROR
// included, was written, so that a protocol error reaches the gateway before the close.
asio::awaitable<void> drain(agent_state& st) {
  asio::steady_timer t(co_await asio::this_coro::executor);
  for (int i = 0; i < 200 && st.writing; ++i) {
    t.expires_after(std::chrono::milliseconds(10));
    co_await t.async_wait(use_tuple);
  }
  co_await flush(st);
}

asio::awaitable<void> run_tunnel(agent_state& st, ssl::context& tls) {
  bool connected = false;
  for (auto& address : {st.opt.prof.primary, st.opt.prof.backup}) {
    if (address.empty()) continue;
    if ((connected = co_await connect_to(st, tls, address))) break;
  }
  if (!connected) {
    st.exit_code = 1;
    st.done = true;
    st.state = "disconnected";
    co_return;
  }
  st.state = "authenticating";
  auto hs = start_handshake(st);
  read_buffer rb;
  while (hs && !st.done) {
    auto [f, rec] = co_await read_frame(st, rb);
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
    if (st.gate.authenticated()) st.stream->expires_after(std::chrono::seconds(tunnel::kDeadPeerSeconds));
    if (tunnel::is_control(f->header.type)) {
      on_control_frame(st, *hs, *f);
      continue;
    }
    std::string why;
    switch (f->header.type) {
      case tunnel::frame_type::channel_open: {
        auto o = tunnel::parse_channel_open(f->payload, why);
        if (!o) {
          protocol_error(st, "bad_channel_open", "malformed CHANNEL_OPEN: " + why);
          break;
        }
        // Only what the customer offered: the agent checks again, whatever the gateway says.
        const scope_mapping* target = nullptr;
        for (auto& sm : st.opt.prof.scopes)
          if (sm.name == o->scope) target = &sm;
        if (!target || st.channels.size() >= tunnel::kMaxChannelsPerTunnel || st.channels.count(f->header.channel)) {
          send(st, tunnel::frame_type::channel_reject,
               tunnel::to_payload(tunnel::reason_only{target ? "too many channels" : "this scope is not offered"}),
               f->header.channel);
          break;
        }
        auto ch = std::make_shared<local_channel>(st.stream->get_executor(), f->header.channel, o->window);
        ch->scope = o->scope;
        ch->access_type = o->access_type;
        ch->actor = o->actor;
        st.channels[ch->id] = ch;
        asio::co_spawn(st.stream->get_executor(), open_local(st, ch, *target), report_exception{&st, "a channel"});
        break;
      }
      case tunnel::frame_type::data:
      case tunnel::frame_type::window:
      case tunnel::frame_type::eof:
      case tunnel::frame_type::close: {
        auto it = st.channels.find(f->header.channel);
        if (it == st.channels.end()) break;  // closed meanwhile: frames in flight
        auto ch = it->second;  // a copy: finishing the channel erases it from the map
        on_channel_frame(st, ch, *f);
        break;
      }
      default:  // tunnel_state refused every other type already
        protocol_error(st, "unexpected", "unexpected " + std::string(tunnel::name_of(f->header.type)) + " from the gateway");
    }
  }
  if (st.state != "ended" && st.state != "replaced") st.state = "disconnected";
  for (auto& [cid, ch] : std::map<std::uint32_t, std::shared_ptr<local_channel>>(st.channels)) {
    ch->flow.abandon();  // the tunnel ended: no frame about the channel can go out
    finish_channel(st, ch, false);
  }
  st.stream->expires_after(std::chrono::seconds(2));
  co_await drain(st);
  co_await st.stream->shutdown();
}

}  // namespace

// The control socket: in a directory no other account can write to, private to this account
// (0600 inside the umask). A live agent already answering there keeps it; a stale socket of
// this account's is replaced; anything else there is left alone and refused. 0 or the exit code.
int open_control_socket(asio::io_context& ioc, const std::string& path, asio::local::stream_protocol::acceptor& acc,
                        std::ostream& err) {
  auto why = check_control_dir(path, true);
  if (why.empty()) why = check_control_socket(path, false);
  if (!why.empty()) {
    err << "rsgate-agent: cannot use the control socket: " << why << "\n";
    return 1;
  }
  {
    local_socket probe(ioc);
    beast::error_code pec;
    probe.connect(asio::local::stream_protocol::endpoint(path), pec);
    if (!pec) {
      err << "rsgate-agent: another agent is running (" << path << "); use --control for a second one\n";
      return 1;
    }
  }
  std::error_code rec;
  std::filesystem::remove(path, rec);
  beast::error_code ec;
  auto old = ::umask(0077);
  acc.open(asio::local::stream_protocol(), ec);
  if (!ec) acc.bind(asio::local::stream_protocol::endpoint(path), ec);
  ::umask(old);
  if (!ec) acc.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) {
    err << "rsgate-agent: cannot create the control socket " << path << ": " << ec.message() << "\n";
    return 1;
  }
  return 0;
}

int run_agent(const start_options& o, std::ostream& out, std::ostream& err) {
  // The tunnel's TLS writes to the socket with write(2) (net::tls_stream): a gateway that
  // went away must be an error there, not a signal that kills the agent.
  std::signal(SIGPIPE, SIG_IGN);
  asio::io_context ioc(1);
  ssl::context tls(ssl::context::tls_client);
  SSL_CTX_set_min_proto_version(tls.native_handle(), TLS1_3_VERSION);
  tls.set_verify_mode(ssl::verify_peer);
  beast::error_code ec;
  tls.add_certificate_authority(asio::buffer(o.prof.ca_pem), ec);
  if (ec) {
    err << "rsgate-agent: the profile's pinned CA cannot be loaded: " << ec.message() << "\n";
    return 2;
  }
  static const unsigned char alpn[] = {8, 'r', 's', 'g', 'a', 't', 'e', '/', '1'};
  SSL_CTX_set_alpn_protos(tls.native_handle(), alpn, sizeof alpn);

  agent_state st(o, out, err);
  st.ioc = &ioc;
  asio::local::stream_protocol::acceptor acc(ioc);
  if (int rc = open_control_socket(ioc, o.control_path, acc, err); rc != 0) return rc;
  asio::co_spawn(ioc, control_server(st, acc), report_exception{&st, "the control socket"});
  asio::signal_set signals(ioc, SIGINT, SIGTERM);
  signals.async_wait([&](beast::error_code sec, int) {
    if (sec) return;
    line(st, "Stopping remote support (customer request)");
    bool authenticated = st.gate.authenticated() && !st.done;
    st.done = true;
    if (st.stream && authenticated) {
      send(st, tunnel::frame_type::stop, tunnel::to_payload(tunnel::reason_only{"customer"}));
      auto t = std::make_shared<asio::steady_timer>(ioc, std::chrono::milliseconds(300));
      t->async_wait([&st, t](beast::error_code) { st.stream->close(); });
    } else if (st.stream) {
      st.stream->close();
    }
  });
  asio::co_spawn(ioc, run_tunnel(st, tls), [&](std::exception_ptr e) {
    report_exception{&st, "the tunnel"}(e);
    signals.cancel();
    beast::error_code ignored;
    acc.close(ignored);
    ioc.stop();
  });
  try {
    ioc.run();
  } catch (const std::exception& e) {  // a completion handler threw: a defect, never exit 0
    err << "rsgate-agent: internal error: " << printable(e.what(), 512) << "\n";
    st.exit_code = 1;
  }
  if (check_control_socket(o.control_path, true).empty()) {
    std::error_code rec;
    std::filesystem::remove(o.control_path, rec);
  }
  return st.exit_code;
}

int control_command(const std::string& control_path, const std::string& command, std::ostream& out,
                    std::ostream& err) {
  // Only a socket of this account, in a directory no one else can write to, served by a
  // process of this account: a `key` answer is shown to the customer as the session key.
  auto why = check_control_dir(control_path, false);
  if (why.empty()) why = check_control_socket(control_path, true);
  if (!why.empty()) {
    err << "rsgate-agent: " << why << "\n";
    return 1;
  }
  asio::io_context ioc;
  local_socket sock(ioc);
  beast::error_code ec;
  sock.connect(asio::local::stream_protocol::endpoint(control_path), ec);
  if (ec) {
    err << "rsgate-agent: no running agent at " << control_path << " (" << ec.message() << ")\n";
    return 1;
  }
  if (auto uid = peer_uid(sock.native_handle()); !uid || *uid != ::getuid()) {
    err << "rsgate-agent: the process at " << control_path << " runs under another account; not talking to it\n";
    return 1;
  }
  std::string req = command + "\n";
  asio::write(sock, asio::buffer(req), ec);
  asio::streambuf buf(64 * 1024);
  auto n = asio::read_until(sock, buf, '\n', ec);
  if (ec && n == 0) {
    err << "rsgate-agent: the agent did not answer\n";
    return 1;
  }
  std::string reply(asio::buffers_begin(buf.data()), asio::buffers_begin(buf.data()) + static_cast<long>(n));
  if (reply.starts_with("error:")) {
    err << "rsgate-agent: " << reply.substr(7);
    return 1;
  }
  out << reply;
  return 0;
}

}  // namespace rsgate::agent
