// See runtime.hpp. One io_context, one thread: the tunnel reader, a keepalive timer, the
// control socket and the signal handler are coroutines on it, so the agent's state needs no
// locks. The agent verifies the gateway against the CA pinned in its profile and the
// gateway's name, and trusts SUCCESS only with the right SCRAM server signature.
#include "agent/runtime.hpp"

#include <fmt/format.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <unistd.h>

#include <csignal>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
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

#include "agent/handshake.hpp"
#include "auth/session_key.hpp"
#include "core/clock.hpp"
#include "core/timefmt.hpp"
#include "gateway/tunnel/messages.hpp"
#include "gateway/net/tls_stream.hpp"
#include "gateway/tunnel/protocol.hpp"
#include "gateway/tunnel/window.hpp"

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace ssl = asio::ssl;
namespace json = boost::json;
using tcp = asio::ip::tcp;
using local_socket = asio::local::stream_protocol::socket;

namespace rsgate::agent {
namespace {

constexpr auto use_tuple = asio::as_tuple(asio::use_awaitable);

// One channel: a TCP connection to the local target of an offered scope. The gateway may
// have at most `credit` bytes in flight toward us... and we toward it: see docs/protocol.md §8.
struct local_channel {
  local_channel(asio::any_io_executor ex, std::uint32_t i) : id(i), sock(ex), data_timer(ex), credit_timer(ex) {}
  std::uint32_t id;
  std::string scope, access_type, actor;
  tcp::socket sock;
  asio::steady_timer data_timer;    // local_writer waits here for the gateway's bytes or EOF
  asio::steady_timer credit_timer;  // local_reader waits here for the gateway's window
  std::int64_t credit = 0;             // bytes we may still send to the gateway
  std::deque<bytes> inbox;             // from the gateway, not yet written locally
  std::size_t inbox_bytes = 0;
  tunnel::receive_window rw;           // ours toward the gateway: its DATA limit and growth
  bool gateway_eof = false, local_eof = false, closed = false, shut_down_local = false;
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
  std::optional<gateway::net::tls_stream> stream;  // the tunnel (docs/protocol.md §2)
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
  std::deque<std::string> pending_key_replies;  // control clients waiting for a KEY_ACK
  std::vector<std::shared_ptr<local_socket>> key_waiters;
  std::map<std::uint32_t, std::shared_ptr<local_channel>> channels;
  tunnel::window_budget windows{tunnel::kTunnelWindowBudget};  // growth of our receive windows
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

void send_frame(agent_state& st, bytes frame) {
  st.outq.push_back(std::move(frame));
  // A running flush picks the frame up; only start one when none runs.
  if (!st.writing) asio::co_spawn(st.stream->get_executor(), flush(st), asio::detached);
}

void send(agent_state& st, tunnel::frame_type t, bytes payload, std::uint32_t channel = 0) {
  send_frame(st, tunnel::encode(t, channel, payload));
}

void offer_key(agent_state& st) {
  tunnel::key_offer k;
  k.key = auth::generate_session_key();
  k.expires_in = static_cast<std::int64_t>(st.opt.key_minutes) * 60;
  st.key = k.key;
  st.key_expires_at.clear();
  send(st, tunnel::frame_type::key_offer, tunnel::to_payload(k));
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

// Reads one frame with the decoder, waiting for more bytes as needed.
asio::awaitable<std::optional<tunnel::frame>> read_frame(agent_state& st, read_buffer& rb) {
  for (;;) {
    if (auto f = st.dec->next()) co_return f;
    if (rb.begin < rb.end) {
      rb.begin += st.dec->feed(std::span<const std::uint8_t>(rb.data.data() + rb.begin, rb.end - rb.begin));
      if (st.dec->error() != tunnel::decode_error::none) co_return std::nullopt;
      continue;
    }
    auto [ec, n] = co_await st.stream->read_some(asio::buffer(rb.data));
    if (ec) co_return std::nullopt;
    rb.begin = 0;
    rb.end = n;
  }
}

void print_notice(agent_state& st, const tunnel::notice& n) {
  std::string what;
  if (n.event == "attach") {
    st.owner = n.actor;
    st.pmr = n.pmr;
    st.state = "active";
    what = fmt::format("{} attached for PMR {} and now owns the session", n.actor, n.pmr);
  } else if (n.event == "attach_refused") {
    what = fmt::format("{} tried to attach for PMR {}: refused ({})", n.actor, n.pmr, n.reason);
  } else if (n.event == "grant") {
    st.grants.push_back(n.user);
    what = fmt::format("{} granted {} access{}", n.actor, n.user, n.scope.empty() ? "" : " to " + n.scope);
  } else if (n.event == "revoke") {
    std::erase(st.grants, n.user);
    what = fmt::format("{} revoked the access of {}", n.actor, n.user);
  } else if (n.event == "transfer") {
    st.owner = n.user;
    what = fmt::format("{} handed the session to {}", n.actor, n.user);
  } else if (n.event == "channel_open") {
    what = fmt::format("{} opened {} to {}", n.actor, n.access_type, n.scope);
  } else if (n.event == "channel_close") {
    what = fmt::format("{} closed {} to {} ({} bytes in, {} out)", n.actor, n.access_type, n.scope, n.bytes_in, n.bytes_out);
  } else {
    what = n.event;
  }
  line(st, fmt::format("[{}] {}", n.ts, what));
}

void finish_channel(agent_state& st, const std::shared_ptr<local_channel>& ch, bool send_close) {
  if (ch->closed) return;
  ch->closed = true;
  ch->rw.release(&st.windows);
  beast::error_code ignored;
  ch->sock.close(ignored);
  ch->wake();
  st.channels.erase(ch->id);
  if (send_close) send(st, tunnel::frame_type::close, {}, ch->id);
  line(st, fmt::format("[{}] {} closed {} to {} ({} bytes in, {} out)", format_rfc3339(system_clock::instance().now()),
                       ch->actor.empty() ? "the representative" : ch->actor, ch->access_type, ch->scope, ch->bytes_in,
                       ch->bytes_out));
}

void maybe_done(agent_state& st, const std::shared_ptr<local_channel>& ch) {
  if (ch->local_eof && ch->gateway_eof && ch->inbox.empty() && ch->shut_down_local) finish_channel(st, ch, true);
}

asio::awaitable<void> local_reader(agent_state& st, std::shared_ptr<local_channel> ch) {
  std::vector<std::uint8_t> buf(tunnel::kMaxDataPayload);
  while (!ch->closed) {  // one DATA frame per read, at most the frame limit and the credit
    if (ch->credit <= 0) {
      ch->credit_timer.expires_after(std::chrono::seconds(60));
      co_await ch->credit_timer.async_wait(use_tuple);
      continue;
    }
    auto want = std::min<std::size_t>(buf.size(), static_cast<std::size_t>(ch->credit));
    auto [ec, n] = co_await ch->sock.async_read_some(asio::buffer(buf.data(), want), use_tuple);
    if (ch->closed) break;
    if (ec) {
      ch->local_eof = true;
      send(st, tunnel::frame_type::eof, {}, ch->id);
      maybe_done(st, ch);
      break;
    }
    ch->credit -= static_cast<std::int64_t>(n);
    ch->bytes_out += static_cast<std::int64_t>(n);
    send(st, tunnel::frame_type::data, bytes(buf.begin(), buf.begin() + static_cast<long>(n)), ch->id);
  }
}

asio::awaitable<void> local_writer(agent_state& st, std::shared_ptr<local_channel> ch) {
  std::vector<bytes> batch;
  std::vector<asio::const_buffer> bufs;
  while (!ch->closed) {
    if (!ch->inbox.empty()) {
      // Everything waiting in one write (at most the window, 256 KiB).
      batch.clear();
      bufs.clear();
      while (!ch->inbox.empty()) {
        batch.push_back(std::move(ch->inbox.front()));
        ch->inbox.pop_front();
        bufs.emplace_back(asio::buffer(batch.back()));
      }
      auto [ec, n] = co_await asio::async_write(ch->sock, bufs, use_tuple);
      ch->inbox_bytes -= n;
      if (ec) {
        finish_channel(st, ch, true);
        break;
      }
      ch->bytes_in += static_cast<std::int64_t>(n);
      // Returned in WINDOW batches of a quarter window; the window grows while busy.
      if (auto inc = ch->rw.consumed(static_cast<std::uint32_t>(n), &st.windows))
        send_frame(st, tunnel::encode_window(ch->id, inc));
      continue;
    }
    if (ch->gateway_eof && !ch->shut_down_local) {
      beast::error_code ignored;
      ch->sock.shutdown(tcp::socket::shutdown_send, ignored);
      ch->shut_down_local = true;
      maybe_done(st, ch);
      continue;
    }
    ch->data_timer.expires_after(std::chrono::seconds(60));
    co_await ch->data_timer.async_wait(use_tuple);
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
  if (ch->closed) co_return;
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
  send(st, tunnel::frame_type::channel_accept, tunnel::to_payload(tunnel::channel_accept{tunnel::kInitialWindow}), ch->id);
  line(st, fmt::format("[{}] {} opened {} to {}", format_rfc3339(system_clock::instance().now()),
                       ch->actor.empty() ? "the representative" : ch->actor, ch->access_type, ch->scope));
  asio::co_spawn(ex, local_reader(st, ch), asio::detached);
  asio::co_spawn(ex, local_writer(st, ch), asio::detached);
}

asio::awaitable<void> control_client(agent_state& st, std::shared_ptr<local_socket> sock) {
  asio::streambuf buf(256);
  auto [ec, n] = co_await asio::async_read_until(*sock, buf, '\n', use_tuple);
  if (ec) co_return;
  std::string cmd(asio::buffers_begin(buf.data()), asio::buffers_begin(buf.data()) + static_cast<long>(n) - 1);
  std::string reply;
  if (cmd == "stop") {
    reply = "stopping\n";
    st.done = true;
    if (st.stream) send(st, tunnel::frame_type::stop, tunnel::to_payload(tunnel::reason_only{"customer"}));
  } else if (cmd == "status") {
    reply = status_json(st) + "\n";
  } else if (cmd == "key") {
    if (st.state != "authenticated" && st.state != "active") {
      reply = "error: not connected\n";
    } else {
      offer_key(st);
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
    asio::co_spawn(acc.get_executor(), control_client(st, sock), asio::detached);
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
  st.stream.emplace(tcp::socket(ex), tls.native_handle(), gateway::net::tls_stream::kTunnelBuffer);
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
  st.gateway = address;
  co_return true;
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
  bytes exporter(tunnel::kExporterBytes);
  SSL_export_keying_material(st.stream->native_handle(), exporter.data(), exporter.size(),
                             tunnel::kExporterLabel.data(), tunnel::kExporterLabel.size(), nullptr, 0, 0);
  identity id;
  id.machine = st.opt.prof.machine();
  id.secret = st.opt.prof.secret;
  id.mechanisms = st.opt.prof.mechanisms;
  for (auto& s : st.opt.prof.scopes) id.scopes.push_back({s.name, ""});
  agent_handshake hs(id, exporter, make_client_nonce());
  st.dec.emplace();
  read_buffer rb;
  send(st, tunnel::frame_type::hello, tunnel::to_payload(hs.make_hello()));
  asio::co_spawn(co_await asio::this_coro::executor, keepalive(st), asio::detached);
  std::string why;
  auto fail = [&](const std::string& msg) {
    st.err << "rsgate-agent: " << msg << "\n";
    st.exit_code = 1;
    st.done = true;
  };
  while (!st.done) {
    auto f = co_await read_frame(st, rb);
    if (!f) {
      if (!st.done) fail(st.dec->error() != tunnel::decode_error::none
                             ? std::string("protocol error from the gateway: ") + std::string(tunnel::describe(st.dec->error()))
                             : std::string("the connection to the gateway was lost"));
      break;
    }
    st.stream->expires_after(std::chrono::seconds(tunnel::kDeadPeerSeconds));
    switch (f->header.type) {
      case tunnel::frame_type::challenge: {
        auto c = tunnel::parse_challenge(f->payload, why);
        auto r = c ? hs.on_challenge(*c, why) : std::nullopt;
        if (!r) {
          fail("refusing the gateway's challenge: " + why);
          break;
        }
        send(st, tunnel::frame_type::response, tunnel::to_payload(*r));
        break;
      }
      case tunnel::frame_type::success: {
        auto s = tunnel::parse_success(f->payload, why);
        if (!s || !hs.on_success(*s, why)) {
          fail("the gateway failed to prove itself: " + why);
          break;
        }
        if (st.session.empty()) {
          st.session = s->session;
          st.state = "authenticated";
          line(st, fmt::format("Connected to {} as {}; session {}", st.gateway, id.machine, st.session));
          offer_key(st);
        }
        break;
      }
      case tunnel::frame_type::failure: {
        auto fl = tunnel::parse_failure(f->payload, why);
        fail(fmt::format("the gateway refused this machine: {}{}", fl ? fl->reason : why,
                         fl && fl->retry_after_seconds ? fmt::format(" (locked out; retry in {} s)", fl->retry_after_seconds) : ""));
        break;
      }
      case tunnel::frame_type::key_ack: {
        auto k = tunnel::parse_key_ack(f->payload, why);
        if (!k) {
          fail("malformed KEY_ACK: " + why);
          break;
        }
        st.key_expires_at = k->expires_at;
        line(st, fmt::format("Session key: {}", st.key));
        line(st, fmt::format("(give it to your support representative; it expires at {}, single use)", k->expires_at));
        for (auto& w : st.key_waiters) {
          auto reply = std::make_shared<std::string>(fmt::format("Session key: {}\n", st.key));
          asio::async_write(*w, asio::buffer(*reply), [reply, w](beast::error_code, std::size_t) {});
        }
        st.key_waiters.clear();
        break;
      }
      case tunnel::frame_type::notice: {
        auto n = tunnel::parse_notice(f->payload, why);
        if (n) print_notice(st, *n);
        break;
      }
      case tunnel::frame_type::end: {
        auto r = tunnel::parse_reason(f->payload, why);
        line(st, fmt::format("Session ended: {}", r ? r->reason : std::string("by the gateway")));
        st.state = "ended";
        st.done = true;
        break;
      }
      case tunnel::frame_type::ping:
        send(st, tunnel::frame_type::pong, {});
        break;
      case tunnel::frame_type::pong:
        break;
      case tunnel::frame_type::error: {
        auto e = tunnel::parse_error(f->payload, why);
        if (e && e->code == "key_refused") {  // the tunnel stays up; the old key stays void
          st.err << "rsgate-agent: the gateway could not record the new session key; try `rsgate-agent key` again\n";
          break;
        }
        fail(fmt::format("the gateway reported an error: {} {}", e ? e->code : "?", e ? e->message : why));
        break;
      }
      case tunnel::frame_type::channel_open: {
        auto o = tunnel::parse_channel_open(f->payload, why);
        if (!o) {
          fail("malformed CHANNEL_OPEN: " + why);
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
        auto ch = std::make_shared<local_channel>(st.stream->get_executor(), f->header.channel);
        ch->scope = o->scope;
        ch->access_type = o->access_type;
        ch->actor = o->actor;
        ch->credit = o->window;
        st.channels[ch->id] = ch;
        asio::co_spawn(st.stream->get_executor(), open_local(st, ch, *target), asio::detached);
        break;
      }
      case tunnel::frame_type::data:
      case tunnel::frame_type::window:
      case tunnel::frame_type::eof:
      case tunnel::frame_type::close: {
        auto it = st.channels.find(f->header.channel);
        if (it == st.channels.end()) break;  // closed meanwhile: frames in flight
        auto ch = it->second;
        if (f->header.type == tunnel::frame_type::data) {
          if (ch->inbox_bytes + f->payload.size() > ch->rw.window() || ch->gateway_eof) {
            fail("the gateway sent beyond a channel's window");
            break;
          }
          ch->inbox_bytes += f->payload.size();
          ch->inbox.push_back(std::move(f->payload));
          ch->data_timer.cancel();
        } else if (f->header.type == tunnel::frame_type::window) {
          ch->credit = std::min<std::int64_t>(ch->credit + tunnel::window_increment(*f), tunnel::kMaxWindow);
          ch->credit_timer.cancel();
        } else if (f->header.type == tunnel::frame_type::eof) {
          ch->gateway_eof = true;
          ch->data_timer.cancel();
        } else {
          finish_channel(st, ch, true);
        }
        break;
      }
      default:
        fail(std::string("unexpected ") + std::string(tunnel::name_of(f->header.type)) + " from the gateway");
    }
  }
  if (st.state != "ended") st.state = "disconnected";
  for (auto& [cid, ch] : std::map<std::uint32_t, std::shared_ptr<local_channel>>(st.channels)) finish_channel(st, ch, false);
  co_await flush(st);
  st.stream->expires_after(std::chrono::seconds(2));
  co_await st.stream->shutdown();
}

}  // namespace

std::string default_control_path() {
  if (const char* d = std::getenv("XDG_RUNTIME_DIR"); d && *d) return std::string(d) + "/rsgate-agent.sock";
  return fmt::format("/tmp/rsgate-agent-{}.sock", ::getuid());
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
  // The control socket: private to this account (0600 inside the umask). A live agent
  // already answering there keeps it; a stale socket file is replaced.
  {
    local_socket probe(ioc);
    beast::error_code pec;
    probe.connect(asio::local::stream_protocol::endpoint(o.control_path), pec);
    if (!pec) {
      err << "rsgate-agent: another agent is running (" << o.control_path << "); use --control for a second one\n";
      return 1;
    }
  }
  std::filesystem::remove(o.control_path);
  asio::local::stream_protocol::acceptor acc(ioc);
  {
    auto old = ::umask(0077);
    acc.open();
    acc.bind(asio::local::stream_protocol::endpoint(o.control_path), ec);
    ::umask(old);
    if (ec) {
      err << "rsgate-agent: cannot create the control socket " << o.control_path << ": " << ec.message() << "\n";
      return 1;
    }
    acc.listen();
  }
  asio::co_spawn(ioc, control_server(st, acc), asio::detached);
  asio::signal_set signals(ioc, SIGINT, SIGTERM);
  signals.async_wait([&](beast::error_code sec, int) {
    if (sec) return;
    line(st, "Stopping remote support (customer request)");
    st.done = true;
    if (st.stream && (st.state == "authenticated" || st.state == "active")) {
      send(st, tunnel::frame_type::stop, tunnel::to_payload(tunnel::reason_only{"customer"}));
      auto t = std::make_shared<asio::steady_timer>(ioc, std::chrono::milliseconds(300));
      t->async_wait([&st, t](beast::error_code) { st.stream->close(); });
    } else if (st.stream) {
      st.stream->close();
    }
  });
  asio::co_spawn(ioc, run_tunnel(st, tls), [&](std::exception_ptr) {
    signals.cancel();
    beast::error_code ignored;
    acc.close(ignored);
    ioc.stop();
  });
  ioc.run();
  std::filesystem::remove(o.control_path);
  return st.exit_code;
}

int control_command(const std::string& control_path, const std::string& command, std::ostream& out,
                    std::ostream& err) {
  asio::io_context ioc;
  local_socket sock(ioc);
  beast::error_code ec;
  sock.connect(asio::local::stream_protocol::endpoint(control_path), ec);
  if (ec) {
    err << "rsgate-agent: no running agent at " << control_path << " (" << ec.message() << ")\n";
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
