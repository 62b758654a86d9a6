// The agent's channels (docs/protocol.md §8): on CHANNEL_OPEN, a coroutine per channel
// connects to the scope's local target, answers CHANNEL_ACCEPT or CHANNEL_REJECT, then runs
// the two pumps joined with `&&`: local_reader (target → DATA, within the gateway's credit)
// and local_writer (DATA → target, WINDOW back). Neither polls: each waits on its own timer,
// used as a condition variable that the tunnel's frames (or finish_channel) cancel; the
// reader, while it waits for credit, also on the target socket's error condition, so that a
// target that resets while nothing reads it is seen at once.
#include <fmt/format.h>

#include <array>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/connect.hpp>
#include <boost/asio/deferred.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/experimental/parallel_group.hpp>
#include <boost/asio/use_awaitable.hpp>

#include "agent/detail/agent_state.hpp"
#include "core/clock.hpp"
#include "core/timefmt.hpp"
#include "net/socket_state.hpp"
#include "net/socket_write.hpp"
#include "protocol/messages.hpp"

namespace rsgate::agent::detail {
namespace {

using namespace asio::experimental::awaitable_operators;
constexpr auto use_tuple = asio::as_tuple(asio::use_awaitable);
// A channel's inbox is written at once when it holds this much, whatever the reader does next.
constexpr std::size_t kFlushBytes = 256 * 1024;

std::string now_text() { return format_rfc3339(system_clock::instance().now()); }

std::string who(const local_channel& ch) { return ch.actor.empty() ? "the representative" : ch.actor; }

// Ends channel `ch` here (CLOSE toward the gateway if `send_close`). A channel whose
// directions both ended cleanly, with everything written to the target, closes the target's
// connection normally: a FIN behind what the kernel still holds. Anything else cut the
// stream (`failed`: the target's connection failed; or the gateway's CLOSE or the tunnel's end
// came before the gateway's EOF, or with bytes still unwritten): the connection is reset, so
// that the target learns at once, even while it is not reading, and gets nothing after the cut.
// Closing the socket and cancelling the timers is what ends both pumps.
void finish_channel(agent_state& st, const std::shared_ptr<local_channel>& ch, bool send_close, bool failed = false) {
  if (ch->finished) return;
  ch->finished = true;
  ch->approval_timer.cancel();  // a request still waiting for the customer ends with it
  if (ch->asks && ch->decision.empty())
    line(st, fmt::format("[{}] Request {} withdrawn: the channel ended before a decision", now_text(), ch->request));
  ch->flow.release(&st.windows);
  if (failed || !ch->flow.received_all()) net::reset_on_close(ch->sock);
  boost::system::error_code ignored;
  ch->sock.close(ignored);
  ch->wake();
  st.channels.erase(ch->id);
  if (send_close) send(st, tunnel::frame_type::close, {}, ch->id);
  line(st, fmt::format("[{}] {} closed {} to {} ({} bytes in, {} out)", now_text(), who(*ch), ch->access_type,
                       ch->scope, ch->bytes_in, ch->bytes_out));
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

// Waits, while the gateway's window is full, for its WINDOW (which cancels credit_timer) or
// for a condition on the target's socket (an error, a hang-up, urgent data), whichever comes
// first; the other wait is cancelled. True when the socket reported a condition.
asio::awaitable<bool> wait_credit_or_condition(std::shared_ptr<local_channel> ch) {
  ch->credit_timer.expires_at(asio::steady_timer::time_point::max());
  auto [order, tec, sec] = co_await asio::experimental::make_parallel_group(
                               ch->credit_timer.async_wait(asio::deferred),
                               ch->sock.async_wait(tcp::socket::wait_error, asio::deferred))
                               .async_wait(asio::experimental::wait_for_one(), asio::use_awaitable);
  co_return order[0] == 1 && !sec;
}

// One DATA frame per read of the target, read straight into the frame's buffer behind its
// header (no copy on the way to the TLS write), at most two TLS records' worth
// (kAgentDataPayload) and the credit.
asio::awaitable<void> local_reader(agent_state& st, std::shared_ptr<local_channel> ch) {
  while (!ch->finished) {
    const auto want = ch->flow.sendable(kAgentDataPayload);
    if (want == 0) {
      // The gateway's window is full: stop reading the target until its WINDOW comes. A
      // target that resets meanwhile is seen without reading it, by the socket's condition.
      const bool condition = co_await wait_credit_or_condition(ch);  // not inside `||` (GCC 12)
      if (!condition || ch->finished) continue;
      if (target_lost(*ch)) {
        close_channel(st, ch, true);
        continue;
      }
      // Urgent data, or a FIN each way: no error, but the condition stays and would wake the
      // wait again at once, so look again only a second later (or at the WINDOW).
      ch->credit_timer.expires_after(std::chrono::seconds(1));
      co_await ch->credit_timer.async_wait(use_tuple);
      continue;
    }
    bytes frame = take_frame_buffer(st);
    frame.resize(kDataFrameBytes);  // a spare is this size already: no fill
    auto [ec, n] = co_await ch->sock.async_read_some(asio::buffer(frame.data() + tunnel::kHeaderBytes, want), use_tuple);
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
    tunnel::encode_header({tunnel::frame_type::data, tunnel::kFlagsNone, ch->id, static_cast<std::uint32_t>(n)},
                          std::span<std::uint8_t, tunnel::kHeaderBytes>(frame.data(), tunnel::kHeaderBytes));
    send_frame(st, std::move(frame), tunnel::kHeaderBytes + n);
  }
}

// Writes what the target's socket takes now of the inbox, without waiting: one sendmsg of up
// to kMaxIov payloads. Written payloads' buffers go back to the decoder for the next ones, and
// their bytes back to the gateway in WINDOW batches of a quarter window (growing while busy,
// within the tunnel's budget). False when the target's socket failed.
bool write_inbox_now(agent_state& st, local_channel& ch) {
  constexpr std::size_t kMaxIov = 64;
  std::array<asio::const_buffer, kMaxIov> bufs;
  std::size_t k = 0;
  for (auto it = ch.inbox.begin(); it != ch.inbox.end() && k < kMaxIov; ++it, ++k)
    bufs[k] = asio::buffer(*it) + (k == 0 ? ch.inbox_written : 0);
  boost::system::error_code ec;
  const std::size_t n = net::write_now(ch.sock, std::span(bufs.data(), k), ec);
  if (ec) return false;
  if (n == 0) return true;
  ch.bytes_in += static_cast<std::int64_t>(n);
  ch.inbox_bytes -= n;
  for (std::size_t left = n; left > 0;) {
    const std::size_t rest = ch.inbox.front().size() - ch.inbox_written;
    if (left < rest) {
      ch.inbox_written += left;
      break;
    }
    left -= rest;
    ch.inbox_written = 0;
    if (st.dec) st.dec->recycle(std::move(ch.inbox.front()));
    ch.inbox.pop_front();
  }
  if (auto inc = ch.flow.handed_on(static_cast<std::uint32_t>(n), &st.windows))
    send_frame(st, tunnel::encode_window(ch.id, inc));
  return true;
}

// Writes the inbox now if the target takes it; otherwise local_writer waits for the socket.
void flush_channel(agent_state& st, const std::shared_ptr<local_channel>& ch) {
  if (ch->finished || ch->blocked || ch->inbox.empty()) return;
  if (!write_inbox_now(st, *ch)) {
    close_channel(st, ch, true);
    return;
  }
  if (!ch->inbox.empty()) ch->data_timer.cancel();
}

// Writes the inbox; while the target does not take it all, waits until its socket takes more.
asio::awaitable<void> local_writer(agent_state& st, std::shared_ptr<local_channel> ch) {
  while (!ch->finished) {
    if (!ch->inbox.empty()) {
      if (!write_inbox_now(st, *ch)) {
        close_channel(st, ch, true);
        break;
      }
      if (ch->inbox.empty() || ch->finished) continue;
      ch->blocked = true;
      auto [ec] = co_await ch->sock.async_wait(tcp::socket::wait_write, use_tuple);
      ch->blocked = false;
      if (ec && !ch->finished) {
        close_channel(st, ch, true);
        break;
      }
      continue;
    }
    if (ch->flow.take_eof()) {  // the gateway's EOF, after everything before it
      boost::system::error_code ignored;
      ch->sock.shutdown(tcp::socket::shutdown_send, ignored);
      maybe_done(st, ch);
      continue;
    }
    // Nothing to do until EOF, DATA the tunnel's reader could not write, or the channel's end
    // cancels the timer: no expiry.
    ch->data_timer.expires_at(asio::steady_timer::time_point::max());
    co_await ch->data_timer.async_wait(use_tuple);
  }
}

// Connects to the scope's target within 10 s; the error, or none.
asio::awaitable<boost::system::error_code> connect_local(std::shared_ptr<local_channel> ch, scope_mapping target) {
  auto ex = co_await asio::this_coro::executor;
  tcp::resolver resolver(ex);
  auto [rec, results] = co_await resolver.async_resolve(target.host, std::to_string(target.port), use_tuple);
  if (rec) co_return rec;
  // The bound closes the socket, which ends the connect with an error whatever stage it is in.
  asio::steady_timer guard(ex, std::chrono::seconds(10));
  guard.async_wait([ch](boost::system::error_code e) {
    if (!e) {
      boost::system::error_code ignored;
      ch->sock.close(ignored);
    }
  });
  auto [cec, ep] = co_await asio::async_connect(ch->sock, results, use_tuple);
  guard.cancel();
  co_return cec;
}

// The decision the answer to the gateway carries: on an `ask` scope only.
std::optional<tunnel::approval> decision_of(const local_channel& ch) {
  if (!ch.asks) return std::nullopt;
  return tunnel::approval{ch.decision, ch.decided_by};
}

// The channel never opens: CHANNEL_REJECT with `reason` (and the customer's decision).
void reject(agent_state& st, const std::shared_ptr<local_channel>& ch, const std::string& reason) {
  st.channels.erase(ch->id);
  send(st, tunnel::frame_type::channel_reject, tunnel::to_payload(tunnel::channel_reject{reason, decision_of(*ch)}),
       ch->id);
}

// An `ask` scope: the customer is shown who asks for what, and has approval_seconds to answer
// with `rsgate-agent approve N` or `refuse N`. True when approved; otherwise the gateway has
// been answered (or the channel ended meanwhile).
asio::awaitable<bool> ask_customer(agent_state& st, std::shared_ptr<local_channel> ch) {
  const int secs = st.opt.prof.approval_seconds;
  const auto n = ch->request;
  line(st, fmt::format("[{}] Request {}: {} (PMR {}) asks to open {} to {}. Approve: rsgate-agent approve {}  "
                       "Refuse: rsgate-agent refuse {}  (refused in {} s)",
                       now_text(), n, who(*ch), st.view.pmr.empty() ? "none" : st.view.pmr, ch->access_type,
                       ch->scope, n, n, secs));
  if (ch->decision.empty()) {  // a decision may have come before this coroutine first ran
    ch->approval_timer.expires_after(std::chrono::seconds(secs));
    co_await ch->approval_timer.async_wait(use_tuple);
  }
  if (ch->finished) co_return false;  // the gateway closed it, or the tunnel ended
  if (ch->decision.empty()) ch->decision = "timeout";
  if (ch->decision == "approved") {
    line(st, fmt::format("[{}] Request {} approved by {}", now_text(), n, ch->decided_by));
    co_return true;
  }
  const bool timed_out = ch->decision == "timeout";
  reject(st, ch, timed_out ? fmt::format("not approved by the customer within {} s", secs)
                           : std::string("refused by the customer"));
  line(st, timed_out ? fmt::format("[{}] Request {} refused: not approved within {} s", now_text(), n, secs)
                     : fmt::format("[{}] Request {} refused by {}", now_text(), n, ch->decided_by));
  co_return false;
}

// A channel's whole life: the customer's approval on an `ask` scope, the local connect, the
// answer to the gateway, then both pumps, joined: the coroutine ends when both have
// (finish_channel ends both).
asio::awaitable<void> run_channel(agent_state& st, std::shared_ptr<local_channel> ch, scope_mapping target) {
  if (ch->asks) {
    const bool approved = co_await ask_customer(st, ch);  // not inside `if (!co_await …)` (GCC 12)
    if (!approved) co_return;
  }
  auto cec = co_await connect_local(ch, target);
  if (ch->finished) co_return;
  if (cec) {
    reject(st, ch, "the local target of this scope cannot be reached");
    line(st, fmt::format("[{}] refused {} to {} for {}: the local target cannot be reached", now_text(),
                         ch->access_type, ch->scope, ch->actor));
    co_return;
  }
  boost::system::error_code ignored;
  ch->sock.set_option(tcp::no_delay(true), ignored);
  net::keep_alive(ch->sock);
  send(st, tunnel::frame_type::channel_accept,
       tunnel::to_payload(tunnel::channel_accept{tunnel::kInitialWindow, decision_of(*ch)}), ch->id);
  ch->flow.accepted_locally();
  line(st, fmt::format("[{}] {} opened {} to {}", now_text(), who(*ch), ch->access_type, ch->scope));
  co_await (local_reader(st, ch) && local_writer(st, ch));
}

}  // namespace

void on_channel_open(agent_state& st, const tunnel::frame& f) {
  std::string why;
  auto o = tunnel::parse_channel_open(f.payload, why);
  if (!o) {
    protocol_error(st, "bad_channel_open", "malformed CHANNEL_OPEN: " + why);
    return;
  }
  // Only what the customer offered: the agent checks again, whatever the gateway says. A
  // `deny` scope is not offered at all.
  const scope_mapping* target = nullptr;
  for (auto& sm : st.opt.prof.scopes)
    if (sm.name == o->scope && sm.policy != scope_policy::deny) target = &sm;
  if (!target || st.channels.size() >= tunnel::kMaxChannelsPerTunnel || st.channels.count(f.header.channel)) {
    send(st, tunnel::frame_type::channel_reject,
         tunnel::to_payload(tunnel::channel_reject{target ? "too many channels" : "this scope is not offered", {}}),
         f.header.channel);
    return;
  }
  auto ch = std::make_shared<local_channel>(st.stream->get_executor(), f.header.channel, o->window);
  ch->scope = o->scope;
  ch->access_type = o->access_type;
  ch->actor = o->actor;
  ch->asks = target->policy == scope_policy::ask;
  if (ch->asks) ch->request = ++st.last_request;
  st.channels[ch->id] = ch;
  asio::co_spawn(st.stream->get_executor(), run_channel(st, ch, *target), report_exception{&st, "a channel"});
}

// The channel's flow judges the frame, and the verdict is carried out here (docs/protocol.md §8).
void on_channel_frame(agent_state& st, tunnel::frame& f) {
  auto it = st.channels.find(f.header.channel);
  if (it == st.channels.end()) return;  // closed meanwhile: frames in flight
  auto ch = it->second;                 // a copy: finishing the channel erases it from the map
  const auto type = f.header.type;
  std::uint32_t value = 0;
  if (type == tunnel::frame_type::data) value = static_cast<std::uint32_t>(f.payload.size());
  if (type == tunnel::frame_type::window) value = tunnel::window_increment(f);
  switch (auto v = ch->flow.on_frame(type, value)) {
    case tunnel::channel_verdict::deliver:
      ch->inbox_bytes += f.payload.size();
      ch->inbox.push_back(std::move(f.payload));
      // Written when the reader has read everything there was (flush_channels), or now once
      // this much waits: a tunnel that never runs dry must not hold a target's bytes back.
      if (ch->inbox_bytes >= kFlushBytes) flush_channel(st, ch);
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

void flush_channels(agent_state& st) {
  // flush_channel may end the channel, which erases only its own entry: step past it first.
  for (auto it = st.channels.begin(); it != st.channels.end();) {
    auto ch = (it++)->second;
    flush_channel(st, ch);
  }
}

void abandon_channels(agent_state& st) {
  for (auto& [cid, ch] : std::map<std::uint32_t, std::shared_ptr<local_channel>>(st.channels)) {
    ch->flow.abandon();  // the tunnel ended: no frame about the channel can go out
    finish_channel(st, ch, false);
  }
}

std::vector<channel_view> channel_views(const agent_state& st) {
  std::vector<channel_view> v;
  for (auto& [id, ch] : st.channels)
    v.push_back({id, ch->scope, ch->access_type, ch->actor, ch->bytes_in, ch->bytes_out,
                 ch->asks && ch->decision.empty(), ch->request});
  return v;
}

std::string decide_channel(agent_state& st, std::uint32_t request, bool approve, const std::string& by) {
  for (auto& [id, ch] : st.channels) {
    if (!ch->asks || ch->request != request || !ch->decision.empty() || ch->finished) continue;
    ch->decision = approve ? "approved" : "refused";
    ch->decided_by = by;
    ch->approval_timer.cancel();  // ask_customer goes on with the decision
    return fmt::format("{} request {}\n", approve ? "approved" : "refused", request);
  }
  return fmt::format("error: no request {} waits for a decision\n", request);
}

}  // namespace rsgate::agent::detail
