// The scale benchmark's load tool (docs/performance.md, "Scale"; tests/bench/scale_bench.py):
// many rsgate agents in one process. Each is a real TLS 1.3 connection from its own loopback
// source address, for its own enrolled machine, authenticated with CHAP (SCRAM-SHA-256,
// channel-bound) by the same protocol library rsgate-agent uses; it offers a session key and
// waits for the KEY_ACK, answers PINGs with PONGs and sends its own, answers re-challenges,
// and after a loss it reconnects with the agent's backoff and jitter and resumes its session.
//
//   tunnel_swarm enroll --data DIR --template PROFILE --count N --out FILE
//       enrolls machines 2..N+1 of the template's type and model into the gateway's data
//       directory (the gateway stopped), as `rsgate machine enroll` does (journaled first);
//       FILE gets one "MACHINE SECRET" line per machine (created with mode 0600; it must not exist).
//   tunnel_swarm run --template PROFILE --machines FILE [--sources K] [--parallel P]
//       reads commands on stdin, one per line, and answers each with one line on stdout:
//         connect N     agents 0..N-1 establish: "up N failed F seconds S"
//         stop          STOP on every tunnel, then END and RECEIPT: "stopped N receipts R seconds S"
//         drop          every TCP connection closed without a word: "dropped N"
//         resumed       after the gateway restarted, when every lost tunnel is back or has given
//                       up: "resumed N new M gaveup G seconds S" (S from the first loss)
//         churn M       M establishments, each ended by STOP (machines taken in turn):
//                       "churned M failed F seconds S"
//         tls N HOST:PORT        bare TLS 1.3 handshakes, each closed at once
//         tls-hold N HOST:PORT   bare TLS 1.3 connections, held: "held N failed F seconds S"
//         tls-close              "closed N"
//         quit
// Connection i comes from 127.1.x.y, one of K source addresses (--sources, default 4000):
// the gateway's admission limits count per source, as they would for customers.
#include <fmt/format.h>
#include <netinet/in.h>
#include <openssl/ssl.h>
#include <sodium.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/read_until.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/streambuf.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <chrono>
#include <csignal>
#include <deque>
#include <fstream>
#include <iostream>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "auth/session_key.hpp"
#include "core/files.hpp"
#include "gateway/admin_context.hpp"
#include "gateway/config.hpp"
#include "gateway/enroll.hpp"
#include "net/tls_stream.hpp"
#include "protocol/agent_handshake.hpp"
#include "protocol/messages.hpp"
#include "protocol/profile.hpp"
#include "protocol/wire.hpp"

namespace asio = boost::asio;
using asio::ip::tcp;
using boost::system::error_code;
using namespace rsgate;

namespace {

constexpr auto use_tuple = asio::as_tuple(asio::use_awaitable);
using clock_type = std::chrono::steady_clock;

double seconds_since(clock_type::time_point t) {
  return std::chrono::duration<double>(clock_type::now() - t).count();
}

// ---------------------------------------------------------------------------------------------
// enroll

int enroll(const std::string& data, const std::string& template_file, int count, const std::string& out_file) {
  auto tmpl = agent::load_profile(template_file);
  gateway::admin_target t;
  t.data = data;
  if (std::filesystem::exists(t.data / "rsgate.toml")) {
    t.cfg = gateway::load_config(t.data / "rsgate.toml");
    t.has_config = true;
  }
  gateway::admin_context ctx(t);
  std::string out;  // "MACHINE SECRET" lines: written once, created with mode 0600
  const auto started = clock_type::now();
  for (int i = 0; i < count; ++i) {
    auto p = tmpl;
    p.serial = fmt::format("{:07d}", 2 + i);  // the template is serial 0000001
    gateway::enroll_options how{.actor = ctx.actor, .source = ctx.source, .receipt_keys = {}};
    p = gateway::enroll_machine(ctx.layout, ctx.journal, ctx.state, std::move(p), how);
    out += p.machine() + ' ' + p.secret + '\n';
    if ((i + 1) % 1000 == 0) std::cerr << fmt::format("enrolled {} in {:.1f} s\n", i + 1, seconds_since(started));
  }
  write_file_exclusive(out_file, out, 0600);
  return 0;
}

// ---------------------------------------------------------------------------------------------
// run

struct machine_entry {
  std::string machine, secret;
};

struct swarm;

// One agent: one machine, at most one connection at a time.
struct agent_conn {
  swarm* sw = nullptr;
  std::size_t index = 0;
  std::optional<net::tls_stream> stream;
  std::deque<bytes> outq;
  bool writing = false;
  std::string session;        // the session its tunnel serves, once SUCCESS came
  bool active = false;        // a connection (or its reconnection) is in progress or up
  bool up = false;            // authenticated; the key acknowledged (or the session resumed)
  bool stopping = false;      // STOP sent: END and RECEIPT are expected
  bool dropping = false;      // closed by us
  bool lost = false;          // lost by the gateway's doing: reconnecting
  int attempts = 0;
  unsigned generation = 0;    // of the connection: a stale keepalive ends by itself
  clock_type::time_point lost_at{};
  int keepalive_s = tunnel::kDeadPeerSeconds;
  int grace_s = tunnel::kReconnectGraceSeconds;
};

// What a command waits for: counters, and a timer that wakes it when they move.
struct swarm {
  asio::io_context& io;
  SSL_CTX* tunnel_ctx;
  SSL_CTX* bare_ctx;
  agent::profile tmpl;
  std::vector<machine_entry> machines;
  std::size_t sources = 4000;
  std::size_t parallel = 64;
  std::vector<std::unique_ptr<agent_conn>> agents;
  asio::steady_timer wake;
  // counters of the command in progress
  std::size_t ok = 0, failed = 0, stopped = 0, receipts = 0, in_flight = 0;
  // of the losses since the last `resumed` report
  std::size_t resumed = 0, fresh = 0, gaveup = 0;
  std::optional<clock_type::time_point> first_loss, last_back;
  std::vector<std::unique_ptr<net::tls_stream>> held;  // tls-hold
  std::string last_failure;

  swarm(asio::io_context& i, SSL_CTX* t, SSL_CTX* b) : io(i), tunnel_ctx(t), bare_ctx(b), wake(i) {}
  void notify() { wake.cancel(); }
  void reset() { ok = failed = stopped = receipts = 0; }
  asio::awaitable<void> wait_change() {
    wake.expires_after(std::chrono::milliseconds(200));
    (void)co_await wake.async_wait(use_tuple);
  }
  void fail(const std::string& why) {
    ++failed;
    if (last_failure.empty()) last_failure = why;
    notify();
  }
};

// 127.1.x.y: source `s` of the pool (x, y from 1; at most 250 * 250 sources).
asio::ip::address_v4 source_address(std::size_t s) {
  return asio::ip::address_v4(static_cast<asio::ip::address_v4::uint_type>((127u << 24) | (1u << 16) |
                                                                           ((1 + s / 250) << 8) | (1 + s % 250)));
}

// A connected TCP socket from source `s`, or the error.
asio::awaitable<error_code> connect_from(tcp::socket& sock, std::size_t s, const tcp::endpoint& to) {
  error_code ec;
  sock.open(tcp::v4(), ec);
  if (ec) co_return ec;
  int one = 1;
  ::setsockopt(sock.native_handle(), IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
  sock.bind(tcp::endpoint(source_address(s), 0), ec);
  if (ec) co_return ec;
  auto [cec] = co_await sock.async_connect(to, use_tuple);
  if (!cec) sock.set_option(tcp::no_delay(true), ec);
  co_return cec;
}

tcp::endpoint endpoint_of(const std::string& hostport) {
  std::string host;
  std::uint16_t port = 0;
  if (!agent::parse_host_port(hostport, host, port)) throw std::runtime_error("not HOST:PORT: " + hostport);
  return {asio::ip::make_address(host), port};
}

asio::awaitable<void> flush(agent_conn& a) {
  if (a.writing || !a.stream) co_return;
  a.writing = true;
  std::vector<bytes> batch;
  std::vector<asio::const_buffer> bufs;
  while (!a.outq.empty() && a.stream) {
    batch.assign(std::make_move_iterator(a.outq.begin()), std::make_move_iterator(a.outq.end()));
    a.outq.clear();
    bufs.clear();
    for (auto& b : batch) bufs.emplace_back(asio::buffer(b));
    auto ec = co_await a.stream->write(bufs);
    if (ec) {
      a.outq.clear();
      break;
    }
  }
  a.writing = false;
}

void send(agent_conn& a, tunnel::frame_type t, const bytes& payload) {
  a.outq.push_back(tunnel::encode(t, 0, payload));
  asio::co_spawn(a.sw->io, flush(a), asio::detached);
}

asio::awaitable<void> keepalive(agent_conn& a, unsigned generation) {
  asio::steady_timer t(a.sw->io);
  for (;;) {
    t.expires_after(std::chrono::seconds(std::max(1, a.keepalive_s / 3)));
    co_await t.async_wait(use_tuple);
    if (a.generation != generation || !a.stream) co_return;
    send(a, tunnel::frame_type::ping, {});
  }
}

agent::identity identity_of(const swarm& sw, std::size_t i) {
  agent::identity id;
  id.machine = sw.machines[i].machine;
  id.secret = sw.machines[i].secret;
  for (auto& s : sw.tmpl.scopes) id.scopes.push_back({s.name, "", s.policy == agent::scope_policy::ask});
  id.approval_seconds = sw.tmpl.approval_seconds;
  id.agent = "rsgate-swarm/1";
  return id;
}

enum class ending { lost, dropped, stopped, failed };
struct outcome {
  ending how = ending::lost;
  std::string why;  // of a failure
};

void back(swarm& sw, bool resumed) {
  ++(resumed ? sw.resumed : sw.fresh);
  sw.last_back = clock_type::now();
  sw.notify();
}

// One connection of agent `a` on a.stream, from TCP connect until it ends. Counts `ok` (or
// `resumed`/`fresh` after a loss) when the tunnel is up.
asio::awaitable<outcome> connection_steps(agent_conn& a, unsigned generation, bool reconnect) {
  swarm& sw = *a.sw;
  auto& st = *a.stream;
  st.expires_after(std::chrono::seconds(tunnel::kHandshakeTimeoutSeconds));
  auto failed = [](std::string why) { return outcome{ending::failed, std::move(why)}; };
  if (auto ec = co_await connect_from(st.socket(), a.index % sw.sources, endpoint_of(sw.tmpl.primary)))
    co_return failed("connect: " + ec.message());
  if (!st.expect_peer_name(sw.tmpl.server_name)) co_return failed("server_name");
  if (auto ec = co_await st.handshake(false)) co_return failed("TLS: " + ec.message());
  auto exporter = agent::export_channel_binding(st.native_handle());
  if (!exporter) co_return failed("no exporter");
  agent::agent_handshake hs(identity_of(sw, a.index), *exporter, agent::make_client_nonce());
  send(a, tunnel::frame_type::hello, tunnel::to_payload(hs.make_hello(a.session)));
  bool authenticated = false;
  std::string key;
  tunnel::decoder dec;
  std::array<std::uint8_t, 4096> buf{};
  std::string why;
  ending how = ending::lost;
  for (;;) {
    auto [ec, n] = co_await st.read_some(asio::buffer(buf));
    if (ec) {
      if (!a.up && !a.stopping && !a.dropping) co_return failed("read: " + ec.message());
      how = a.dropping ? ending::dropped : a.stopping ? ending::stopped : ending::lost;
      break;
    }
    dec.feed(std::span<const std::uint8_t>(buf.data(), n));
    if (dec.error() != tunnel::decode_error::none) co_return failed("bad frame");
    bool over = false;
    while (auto f = dec.next()) {
      using ft = tunnel::frame_type;
      switch (f->header.type) {
        case ft::challenge: {
          auto c = tunnel::parse_challenge(f->payload, why);
          auto r = c ? hs.on_challenge(*c, why) : std::nullopt;
          if (!r) co_return failed("challenge: " + why);
          send(a, ft::response, tunnel::to_payload(*r));
          break;
        }
        case ft::success: {
          auto s = tunnel::parse_success(f->payload, why);
          if (!s || !hs.on_success(*s, why)) co_return failed("success: " + why);
          if (authenticated) break;  // a re-challenge answered
          authenticated = true;
          a.keepalive_s = s->keepalive_seconds;
          a.grace_s = s->grace_seconds;
          st.expires_after(std::chrono::seconds(a.keepalive_s));
          asio::co_spawn(sw.io, keepalive(a, generation), asio::detached);
          if (reconnect && s->session == a.session) {
            a.up = true;
            a.lost = false;
            a.attempts = 0;
            back(sw, true);
            break;
          }
          a.session = s->session;
          tunnel::key_offer k;
          k.key = auth::generate_session_key();
          k.expires_in = 3600;
          send(a, ft::key_offer, tunnel::to_payload(k));
          break;
        }
        case ft::key_ack:
          if (!a.up) {
            a.up = true;
            if (reconnect) {
              a.lost = false;
              a.attempts = 0;
              back(sw, false);  // reconnected, but the gateway had not kept the session
            } else {
              ++sw.ok;
            }
            sw.notify();
          }
          break;
        case ft::failure:
          co_return failed("FAILURE");
        case ft::ping:
          send(a, ft::pong, {});
          break;
        case ft::end: {
          auto r = tunnel::parse_reason(f->payload, why);
          const auto reason = r ? r->reason : std::string();
          if (reason == tunnel::kRestart || reason == tunnel::kMove || reason == tunnel::kReauthenticate) {
            over = true;  // the session stays: reconnect
            how = ending::lost;
          } else if (!a.stopping) {
            a.session.clear();  // ended by the gateway; a receipt may follow
          }
          break;
        }
        case ft::receipt:
          if (a.stopping) {
            ++sw.receipts;
            over = true;
            how = ending::stopped;
          }
          break;
        case ft::error:
          if (!a.up) co_return failed("ERROR");
          over = true;
          how = ending::lost;
          break;
        default:  // PONG, REKEY (a CHALLENGE follows), NOTICE, KEY_ACK after the first
          break;
      }
      if (authenticated) st.expires_after(std::chrono::seconds(a.keepalive_s));
      if (over) break;
    }
    if (over) break;
  }
  co_return outcome{how, {}};
}

asio::awaitable<ending> connection(agent_conn& a) {
  swarm& sw = *a.sw;
  const unsigned generation = ++a.generation;
  const bool reconnect = a.lost;
  a.stream.emplace(tcp::socket(sw.io), sw.tunnel_ctx, net::tls_stream::kTunnelBuffer);
  a.outq.clear();
  auto r = co_await connection_steps(a, generation, reconnect);
  ++a.generation;  // ends the keepalive
  a.stream->close();
  // A write in progress completes (aborted) before the stream may go.
  asio::steady_timer t(sw.io);
  while (a.writing) {
    t.expires_after(std::chrono::milliseconds(5));
    co_await t.async_wait(use_tuple);
  }
  a.stream.reset();
  if (r.how == ending::failed && !reconnect) sw.fail(fmt::format("{}: {}", sw.machines[a.index].machine, r.why));
  co_return r.how;
}

// An agent's life from `connect` (or churn's turn) until it is stopped, dropped, or gives up.
asio::awaitable<void> agent_life(agent_conn& a, bool once) {
  swarm& sw = *a.sw;
  a.active = true;
  for (;;) {
    const auto how = co_await connection(a);
    a.up = false;
    if (how == ending::failed && !a.lost) break;
    if (how == ending::stopped || how == ending::dropped) {
      if (how == ending::stopped) ++sw.stopped;
      sw.notify();
      break;
    }
    if (once || a.session.empty()) break;
    // Lost: reconnect with the agent's own backoff, within the gateway's grace.
    if (!a.lost) {
      a.lost = true;
      a.attempts = 0;
      a.lost_at = clock_type::now();
      if (!sw.first_loss) sw.first_loss = a.lost_at;
    }
    const auto deadline = a.lost_at + std::chrono::seconds(a.grace_s);
    if (clock_type::now() >= deadline) {
      ++sw.gaveup;
      sw.last_back = clock_type::now();
      a.lost = false;
      a.session.clear();
      sw.notify();
      break;
    }
    const double draw = static_cast<double>(randombytes_uniform(1'000'001)) / 1'000'000.0;
    asio::steady_timer t(sw.io);
    t.expires_after(std::min<clock_type::duration>(std::chrono::milliseconds(tunnel::reconnect_backoff_ms(a.attempts, draw)),
                                                   deadline - clock_type::now()));
    ++a.attempts;
    co_await t.async_wait(use_tuple);
  }
  a.active = false;
  a.stopping = a.dropping = false;
  sw.notify();
}

// Starts agents [from, to) with at most sw.parallel establishing at once; returns when all are
// up or failed.
asio::awaitable<void> establish(swarm& sw, std::size_t from, std::size_t to) {
  for (std::size_t i = from; i < to; ++i) {
    while (sw.ok + sw.failed + sw.parallel <= i - from) co_await sw.wait_change();
    auto& a = *sw.agents[i];
    asio::co_spawn(sw.io, agent_life(a, false), asio::detached);
  }
  while (sw.ok + sw.failed < to - from) co_await sw.wait_change();
}

std::size_t count_up(const swarm& sw) {
  std::size_t n = 0;
  for (auto& a : sw.agents) n += a->up ? 1 : 0;
  return n;
}

// STOP on every tunnel that is up; returns when each has ended.
asio::awaitable<std::size_t> stop_all(swarm& sw) {
  std::size_t n = 0;
  for (auto& a : sw.agents) {
    if (!a->up || !a->stream) continue;
    a->stopping = true;
    a->stream->expires_after(std::chrono::seconds(15));
    send(*a, tunnel::frame_type::stop, tunnel::to_payload(tunnel::reason_only{"benchmark"}));
    ++n;
  }
  while (sw.stopped < n) {
    bool any = false;
    for (auto& a : sw.agents) any = any || (a->stopping && a->active);
    if (!any) break;
    co_await sw.wait_change();
  }
  co_return n;
}

asio::awaitable<void> churn(swarm& sw, std::size_t m) {
  const std::size_t k = sw.agents.size();
  std::size_t started = 0, next = 0;
  while (started < m) {
    if (sw.in_flight >= sw.parallel) {
      co_await sw.wait_change();
      continue;
    }
    // the next machine not busy
    std::size_t tries = 0;
    while (sw.agents[next % k]->active && tries++ < k) ++next;
    if (sw.agents[next % k]->active) {
      co_await sw.wait_change();
      continue;
    }
    auto& a = *sw.agents[next++ % k];
    a.active = true;
    ++started;
    ++sw.in_flight;
    asio::co_spawn(
        sw.io,
        [&sw, &a]() -> asio::awaitable<void> {
          // Establish, then STOP at once: the session ends (with its receipt).
          auto life = agent_life(a, true);
          // agent_life returns when the connection ends; STOP once it is up.
          auto watcher = [&sw, &a]() -> asio::awaitable<void> {
            while (!a.up && a.active) co_await sw.wait_change();
            if (a.up && a.stream) {
              a.stopping = true;
              send(a, tunnel::frame_type::stop, tunnel::to_payload(tunnel::reason_only{"benchmark"}));
            }
          };
          asio::co_spawn(sw.io, watcher(), asio::detached);
          co_await std::move(life);
          a.session.clear();
          --sw.in_flight;
          sw.notify();
        },
        asio::detached);
  }
  while (sw.in_flight > 0) co_await sw.wait_change();
}

asio::awaitable<void> bare_tls(swarm& sw, std::size_t n, const std::string& target, bool hold) {
  const auto to = endpoint_of(target);
  std::size_t started = 0;
  while (started < n) {
    if (sw.in_flight >= sw.parallel) {
      co_await sw.wait_change();
      continue;
    }
    ++sw.in_flight;
    const std::size_t s = started++ % sw.sources;
    asio::co_spawn(
        sw.io,
        [&sw, s, to, hold]() -> asio::awaitable<void> {
          auto st = std::make_unique<net::tls_stream>(tcp::socket(sw.io), sw.bare_ctx, 16 * 1024);
          st->expires_after(std::chrono::seconds(tunnel::kHandshakeTimeoutSeconds));
          auto ec = co_await connect_from(st->socket(), s, to);
          if (!ec && !st->expect_peer_name(sw.tmpl.server_name)) ec = asio::error::invalid_argument;
          if (!ec) ec = co_await st->handshake(false);
          if (ec) {
            sw.fail("bare TLS: " + ec.message());
          } else {
            ++sw.ok;
            if (hold) {
              st->expires_never();
              sw.held.push_back(std::move(st));
            } else {
              st->expires_after(std::chrono::seconds(2));
              co_await st->shutdown();
            }
          }
          --sw.in_flight;
          sw.notify();
        },
        asio::detached);
  }
  while (sw.in_flight > 0) co_await sw.wait_change();
}

asio::awaitable<void> commands(swarm& sw) {
  asio::posix::stream_descriptor in(sw.io, ::dup(0));
  asio::streambuf buf;
  auto say = [](const std::string& s) { std::cout << s << std::endl; };
  for (;;) {
    auto [ec, n] = co_await asio::async_read_until(in, buf, '\n', use_tuple);
    if (ec) break;
    std::string line(asio::buffers_begin(buf.data()), asio::buffers_begin(buf.data()) + static_cast<long>(n) - 1);
    buf.consume(n);
    std::istringstream words(line);
    std::string cmd, target;
    std::size_t count = 0;
    words >> cmd >> count >> target;
    sw.reset();
    sw.last_failure.clear();
    const auto t0 = clock_type::now();
    if (cmd == "connect") {
      count = std::min(count, sw.agents.size());
      co_await establish(sw, 0, count);
      say(fmt::format("up {} failed {} seconds {:.3f}", sw.ok, sw.failed, seconds_since(t0)));
    } else if (cmd == "stop") {
      auto n_stopped = co_await stop_all(sw);
      say(fmt::format("stopped {} receipts {} seconds {:.3f}", n_stopped, sw.receipts, seconds_since(t0)));
    } else if (cmd == "drop") {
      std::size_t dropped = 0;
      for (auto& a : sw.agents)
        if (a->stream) {
          a->dropping = true;
          a->stream->close();
          ++dropped;
        }
      while (std::any_of(sw.agents.begin(), sw.agents.end(), [](auto& a) { return a->active; }))
        co_await sw.wait_change();
      say(fmt::format("dropped {}", dropped));
    } else if (cmd == "resumed") {
      // Every agent that was lost: back (resumed or fresh), or given up.
      for (;;) {
        std::size_t waiting = 0;
        for (auto& a : sw.agents) waiting += a->lost ? 1 : 0;
        if (waiting == 0 && sw.first_loss) break;
        if (!sw.first_loss && seconds_since(t0) > 60) break;
        co_await sw.wait_change();
      }
      // Monotonic clock seconds (CLOCK_MONOTONIC, as Python's time.monotonic()), so that the
      // driver can count from the moment the restarted gateway listened.
      auto mono = [](std::optional<clock_type::time_point> t) {
        return t ? std::chrono::duration<double>(t->time_since_epoch()).count() : 0.0;
      };
      say(fmt::format("resumed {} new {} gaveup {} up {} first_loss {:.3f} last_back {:.3f}", sw.resumed, sw.fresh,
                      sw.gaveup, count_up(sw), mono(sw.first_loss), mono(sw.last_back)));
      sw.first_loss.reset();
      sw.last_back.reset();
      sw.resumed = sw.fresh = sw.gaveup = 0;
    } else if (cmd == "churn") {
      co_await churn(sw, count);
      say(fmt::format("churned {} failed {} receipts {} seconds {:.3f}", sw.stopped, sw.failed, sw.receipts, seconds_since(t0)));
    } else if (cmd == "tls" || cmd == "tls-hold") {
      co_await bare_tls(sw, count, target, cmd == "tls-hold");
      say(fmt::format("{} {} failed {} seconds {:.3f}", cmd == "tls" ? "tls" : "held", sw.ok, sw.failed, seconds_since(t0)));
    } else if (cmd == "tls-close") {
      const auto n_held = sw.held.size();
      for (auto& s : sw.held) s->close();
      sw.held.clear();
      say(fmt::format("closed {}", n_held));
    } else if (cmd == "quit") {
      break;
    } else {
      say("error: unknown command " + cmd);
      continue;
    }
    if (!sw.last_failure.empty()) std::cerr << "first failure: " << sw.last_failure << "\n";
  }
  for (auto& a : sw.agents)
    if (a->stream) a->stream->close();
  for (auto& s : sw.held) s->close();
  sw.io.stop();
}

SSL_CTX* client_context(const agent::profile& p, bool alpn) {
  SSL_CTX* c = SSL_CTX_new(TLS_client_method());
  SSL_CTX_set_min_proto_version(c, TLS1_3_VERSION);
  SSL_CTX_set_verify(c, SSL_VERIFY_PEER, nullptr);
  SSL_CTX_set_session_cache_mode(c, SSL_SESS_CACHE_OFF);
  BIO* bio = BIO_new_mem_buf(p.ca_pem.data(), static_cast<int>(p.ca_pem.size()));
  X509* ca = PEM_read_bio_X509(bio, nullptr, nullptr, nullptr);
  BIO_free(bio);
  if (!ca || X509_STORE_add_cert(SSL_CTX_get_cert_store(c), ca) != 1) throw std::runtime_error("the template's CA");
  X509_free(ca);
  if (alpn) {
    static const unsigned char protos[] = {8, 'r', 's', 'g', 'a', 't', 'e', '/', '1'};
    SSL_CTX_set_alpn_protos(c, protos, sizeof protos);
  }
  return c;
}

int run(const std::string& template_file, const std::string& machines_file, std::size_t sources, std::size_t parallel) {
  asio::io_context io(1);
  auto tmpl = agent::load_profile(template_file);
  swarm sw(io, client_context(tmpl, true), client_context(tmpl, false));
  sw.tmpl = tmpl;
  sw.sources = std::clamp<std::size_t>(sources, 1, 250 * 250);
  sw.parallel = std::max<std::size_t>(1, parallel);
  std::ifstream in(machines_file);
  for (std::string m, s; in >> m >> s;) sw.machines.push_back({m, s});
  if (sw.machines.empty()) throw std::runtime_error("no machines in " + machines_file);
  for (std::size_t i = 0; i < sw.machines.size(); ++i) {
    auto a = std::make_unique<agent_conn>();
    a->sw = &sw;
    a->index = i;
    sw.agents.push_back(std::move(a));
  }
  asio::co_spawn(io, commands(sw), [](std::exception_ptr e) {
    if (e) std::rethrow_exception(e);
  });
  io.run();
  return 0;
}

std::string option(const std::vector<std::string>& args, const std::string& name, const std::string& fallback = "") {
  for (std::size_t i = 0; i + 1 < args.size(); ++i)
    if (args[i] == name) return args[i + 1];
  if (fallback.empty()) throw std::runtime_error("missing " + name);
  return fallback;
}

}  // namespace

int main(int argc, char** argv) try {
  std::signal(SIGPIPE, SIG_IGN);
  if (sodium_init() < 0) throw std::runtime_error("libsodium");
  std::vector<std::string> args(argv + 1, argv + argc);
  if (args.empty()) throw std::runtime_error("usage: tunnel_swarm enroll|run ... (see the file's head)");
  if (args[0] == "enroll")
    return enroll(option(args, "--data"), option(args, "--template"), std::stoi(option(args, "--count")),
                  option(args, "--out"));
  if (args[0] == "run")
    return run(option(args, "--template"), option(args, "--machines"),
               std::stoul(option(args, "--sources", "4000")), std::stoul(option(args, "--parallel", "64")));
  throw std::runtime_error("unknown command " + args[0]);
} catch (const std::exception& e) {
  std::cerr << "tunnel_swarm: " << e.what() << "\n";
  return 2;
}
