// The representative's side of one channel (docs/api.md §5.5): the WebSocket upgrade of
// /api/v1/channels/stream, redeemed with its one-time token, then a relay between the
// WebSocket and the channel's channel_link. Binary messages are the bytes of the stream and
// the text message "eof" is a half-close. Reader and writer are two coroutines on this
// connection's strand joined with `&&` (awaitable operators): the writer ends first (the
// channel closed, or the reader ended), sends the close frame and waits, bounded, for the
// reader. The tunnel side wakes them through channel_link::wake: the writer's wait for the
// agent's bytes is a net::wake_signal (one trip through the scheduler, the round trip's hot
// path); waits with a deadline are timers, whose cancel is posted to this strand (timers are
// not thread-safe) only when one of them waits.
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/beast/core/buffers_to_string.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http/write.hpp>
#include <boost/beast/websocket.hpp>
#include <atomic>
#include <variant>

#include "core/log.hpp"
#include "gateway/channel_link.hpp"
#include "gateway/detail/https_server.hpp"
#include "gateway/http/request_input.hpp"
#include "gateway/service.hpp"
#include "net/async_bridge.hpp"
#include "net/socket_state.hpp"
#include "net/wake_signal.hpp"

namespace rsgate::gateway::detail {
namespace {

using namespace asio::experimental::awaitable_operators;

constexpr std::string_view kStreamPath = "/api/v1/channels/stream";

// The stream's one-time token, read as strictly as every other query (request_input.hpp):
// `token` and nothing else, once. The error is the answer to send instead.
std::variant<std::string, http_response> token_param(std::string_view target) {
  try {
    query_params q(target, {"token"});
    auto t = q.get("token");
    if (!t || t->empty() || t->size() > 128) return json_error(401, "unauthorized", "?token= is missing");
    return *t;
  } catch (const bad_input& e) {
    return json_error(400, "bad_request", e.what());
  }
}


// Redeems a channel token through the service (from any thread back onto this strand).
template <typename Token>
auto async_redeem(service& svc, std::string token, std::string remote, Token&& t) {
  return net::async_from_callback<void(std::variant<channel_grant, http_response>)>(
      [&svc, token, remote](auto cb) { svc.redeem_channel(token, remote, cb); }, t);
}

// Journals the customer's decision on an `ask` scope's channel (service::record_approval).
template <typename Token>
auto async_record_approval(service& svc, std::shared_ptr<channel_link> c, Token&& t) {
  return net::async_from_callback<void(bool)>([&svc, c](auto cb) { svc.record_approval(c, true, cb); }, t);
}

constexpr auto kDrainAfterClose = std::chrono::seconds(30);  // docs/api.md §5.5, how a channel ends
// How long the reader may take to end after the close frame before its socket is closed.
constexpr auto kReaderAfterClose = std::chrono::seconds(5);

struct stream_timers {
  explicit stream_timers(const asio::any_io_executor& ex) : delivery(ex), data(ex), credit(ex) {}
  net::wake_signal delivery;  // the writer waits here for the agent's bytes, EOF or close
  asio::steady_timer data;    // the writer's waits with a deadline: the agent's answer, the reader's end
  asio::steady_timer credit;  // the reader waits here for the agent's window
  // Set with the link's `stream_waiting` before a wait on `data` or `credit`: the tunnel's
  // wake-up must cancel them then (a post to this strand); cleared by that wake-up.
  std::atomic<bool> timed_wait{false};

  // The stream side's own wake-up of the writer (on this strand): the reader ended.
  void reader_ended() {
    data.cancel();
    delivery.notify();
  }
};

// How the reader ended, for the writer (both on the connection's strand).
struct reader_end {
  bool done = false;         // the reader returned: `ws` is the writer's alone
  bool stream_lost = false;  // because the WebSocket was closed or failed: no close frame to send
};

// Why a channel ended on the representative's side (docs/api.md §5.5).
constexpr std::string_view kClosedByRepresentative = "closed by the representative";
constexpr std::string_view kRepresentativeFailed = "the representative's connection failed";
constexpr std::string_view kStreamFailed = "internal error in the gateway's channel stream";
constexpr std::string_view kApprovalUnrecorded = "the gateway cannot record the customer's approval now";

// The stream side ends the channel: the reason first (under the link's mutex), then CLOSE.
void end_channel(channel_link& c, tunnel_link& link, std::string_view why) {
  c.close_for(std::string(why));
  link.channel_close(c.id, std::string(why));
}

// The representative's connection is gone although nothing reads it: a reset, a TCP timeout,
// or the WebSocket's own idle timeout (which closes it).
bool representative_gone(ws_stream& ws) {
  return !ws.is_open() || net::connection_lost(ws.next_layer().socket());
}

// Forwards one binary message to the agent as DATA within the agent's window (the channel's
// flow), waiting for WINDOW while the credit is used up. False when the channel ended.
asio::awaitable<bool> forward_to_agent(ws_stream* ws, channel_link* c, tunnel_link* link, stream_timers* timers,
                                       reader_end* end, asio::const_buffer message) {
  const auto* p = static_cast<const std::uint8_t*>(message.data());
  std::size_t left = message.size();
  while (left > 0) {
    std::uint32_t take = 0;
    bool closed = false, ended = false;
    {
      std::lock_guard lock(c->mu);
      closed = c->closed;
      ended = c->flow.sending_ended();
      take = closed ? 0 : c->flow.sendable(left);
      if (take > 0) {
        c->flow.sent(take);
        c->bytes_to_agent += take;
      } else if (!closed && !ended) {
        c->stream_waiting = true;
        timers->timed_wait = true;
      }
    }
    if (closed) co_return false;
    if (ended) {  // bytes after its own `eof`: the representative broke the stream's rules
      end_channel(*c, *link, kRepresentativeFailed);
      co_return false;
    }
    if (take == 0) {
      // The agent's window is full: wait for its WINDOW without reading the WebSocket, so
      // that TCP back-pressure reaches the representative. A representative who resets
      // meanwhile is seen without reading: look once a second.
      timers->credit.expires_after(std::chrono::seconds(1));
      auto [tec] = co_await timers->credit.async_wait(use_tuple);
      if (!tec && representative_gone(*ws)) {
        end->stream_lost = true;
        end_channel(*c, *link, kRepresentativeFailed);
        co_return false;
      }
      continue;
    }
    link->channel_data(c->id, std::span<const std::uint8_t>(p, take));
    p += take;
    left -= take;
  }
  co_return true;
}

asio::awaitable<void> channel_reader(ws_stream* ws, std::shared_ptr<channel_link> c, std::shared_ptr<tunnel_link> link,
                                     std::shared_ptr<stream_timers> timers, std::shared_ptr<reader_end> end) {
  // However this ends, the writer must learn it: it owns `ws` and waits for us before it goes.
  struct done_guard {
    std::shared_ptr<reader_end> end;
    std::shared_ptr<stream_timers> t;
    ~done_guard() {
      end->done = true;
      t->reader_ended();
    }
  } guard{end, timers};
  beast::flat_buffer buf;
  for (;;) {
    buf.clear();
    auto [ec, n] = co_await ws->async_read(buf, use_tuple);
    if (ec) {
      end->stream_lost = true;
      end_channel(*c, *link, ec == websocket::error::closed ? kClosedByRepresentative : kRepresentativeFailed);
      co_return;
    }
    if (!ws->got_text()) {
      if (!co_await forward_to_agent(ws, c.get(), link.get(), timers.get(), end.get(), buf.data())) co_return;
      continue;
    }
    if (beast::buffers_to_string(buf.data()) != "eof") continue;  // other text is ignored
    bool send = false;
    {
      std::lock_guard lock(c->mu);
      send = !c->closed && c->flow.send_eof();  // once; a repeated `eof` is ignored
    }
    if (send) link->channel_eof(c->id);
  }
}

// Waits up to 20 s (on an `ask` scope, the customer's approval_seconds more) for the agent's
// answer to CHANNEL_OPEN. False when the channel ended instead (refused, closed, no answer);
// the WebSocket is closed with the reason then.
asio::awaitable<bool> await_accept(ws_stream* ws, std::shared_ptr<channel_link> c, std::shared_ptr<tunnel_link> link,
                                   std::shared_ptr<stream_timers> timers) {
  constexpr std::string_view kNoAnswer = "the customer's agent did not answer";
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(c->answer_seconds);
  for (;;) {
    bool accepted = false, closed = false;
    std::string reason;
    {
      std::lock_guard lock(c->mu);
      accepted = c->flow.accepted();
      closed = c->closed;
      reason = c->reason;
      if (!accepted && !closed) {
        c->stream_waiting = true;
        timers->timed_wait = true;
      }
    }
    if (closed || std::chrono::steady_clock::now() >= deadline) {
      if (!closed) end_channel(*c, *link, kNoAnswer);  // the reason is there when it is journaled
      websocket::close_reason cr(websocket::close_code::try_again_later);
      cr.reason = (closed ? reason : std::string(kNoAnswer)).substr(0, 120);
      co_await ws->async_close(cr, use_tuple);
      co_return false;
    }
    if (accepted) co_return true;
    timers->data.expires_at(deadline);
    co_await timers->data.async_wait(use_tuple);
  }
}

// The writer: hands what the agent sent to the representative, up to one message of 64 KiB
// per write, and tells the channel's flow, which returns it to the agent as WINDOW (batched,
// growing the window); sends `eof` once the agent's EOF and everything before it are handed
// on. Returns when the channel is closed (after delivering what the inbox still holds) or the
// reader has ended.
asio::awaitable<void> deliver_to_representative(ws_stream* ws, std::shared_ptr<channel_link> c,
                                                std::shared_ptr<tunnel_link> link,
                                                std::shared_ptr<stream_timers> timers,
                                                std::shared_ptr<reader_end> reader) {
  std::vector<bytes> batch;
  std::vector<asio::const_buffer> bufs;
  std::uint32_t handed = 0;  // written by the last write; told to the flow in the next lock
  for (;;) {
    batch.clear();
    bufs.clear();
    std::size_t total = 0;
    std::uint32_t increment = 0;
    bool closed = false, eof_now = false;
    {
      std::lock_guard lock(c->mu);
      if (handed > 0) increment = c->flow.handed_on(std::exchange(handed, 0), c->budget.get());
      while (!c->inbox.empty() && total + c->inbox.front().size() <= kStreamMessageMax) {
        total += c->inbox.front().size();
        batch.push_back(std::move(c->inbox.front()));
        c->inbox.pop_front();
      }
      closed = c->closed;
      eof_now = batch.empty() && c->flow.take_eof();
      if (batch.empty() && !eof_now && !closed && !reader->done) c->stream_waiting = true;
    }
    // handed_on raised the window (its growth) before this WINDOW lets the agent use it.
    if (increment > 0) link->channel_window(c->id, increment);
    // Once the channel is closed, what the agent sent before still goes to the representative,
    // then the close; a representative who takes nothing for kDrainAfterClose loses the rest
    // (the TLS stream's deadline closes the connection), so channel.close follows within a bound.
    if (closed) ws->next_layer().expires_after(kDrainAfterClose);
    if (!batch.empty()) {
      for (auto& b : batch) bufs.emplace_back(asio::buffer(b));
      ws->binary(true);
      auto [ec, n] = co_await ws->async_write(bufs, use_tuple);
      if (ec) {
        end_channel(*c, *link, kRepresentativeFailed);
        co_return;
      }
      handed = static_cast<std::uint32_t>(total);
      continue;
    }
    if (eof_now) {
      ws->text(true);
      auto [ec, n] = co_await ws->async_write(asio::buffer(std::string_view("eof")), use_tuple);
      if (ec) {
        end_channel(*c, *link, kRepresentativeFailed);
        co_return;
      }
      continue;
    }
    if (closed || reader->done) co_return;
    co_await timers->delivery.wait();
  }
}

// Lets the tunnel side wake this stream: the writer's wake_signal from any thread, and, if a
// wait with a deadline is pending, a cancel of the timers posted to the stream's executor
// (timers are not thread-safe, and the tunnel runs on another strand).
void install_wake(channel_link& c, const asio::any_io_executor& ex, const std::shared_ptr<stream_timers>& timers) {
  std::lock_guard lock(c.mu);
  c.wake_stream = [ex, timers] {
    timers->delivery.notify();
    if (!timers->timed_wait.exchange(false)) return;
    asio::post(ex, [timers] {
      timers->data.cancel();
      timers->credit.cancel();
    });
  };
}

// The access went while the agent was connecting: nothing the agent sent is relayed.
asio::awaitable<void> refuse_opened(ws_stream* ws, std::shared_ptr<channel_link> c) {
  std::string reason;
  {
    std::lock_guard lock(c->mu);
    reason = c->reason;
    c->inbox.clear();
    c->wake_stream = nullptr;
  }
  websocket::close_reason cr(websocket::close_code::policy_error);
  cr.reason = reason.substr(0, 120);
  co_await ws->async_close(cr, use_tuple);
}

// Until the reader has ended (its end cancels `timers->data`: a condition variable on this
// strand, no polling) or `until`. A wake-up of the tunnel side that was already posted
// cancels the timer too; the loop looks again then.
asio::awaitable<void> wait_for_reader(std::shared_ptr<stream_timers> timers, std::shared_ptr<reader_end> reader,
                                      std::chrono::steady_clock::time_point until) {
  timers->data.expires_at(until);
  while (!reader->done) {
    auto [ec] = co_await timers->data.async_wait(use_tuple);
    if (!ec) co_return;  // `until` passed
  }
}

// After the relay: the window's growth back to the tunnel's budget, the close frame, and the
// reader's end (it uses `ws`, which dies with the caller's frame).
asio::awaitable<void> close_stream(ws_stream* ws, std::shared_ptr<channel_link> c,
                                   std::shared_ptr<stream_timers> timers, std::shared_ptr<reader_end> reader) {
  std::string reason;
  {
    std::lock_guard lock(c->mu);
    reason = c->reason;
    c->wake_stream = nullptr;
    c->flow.release(c->budget.get());  // the window's growth goes back to the tunnel's budget
  }
  // The reason goes in a close frame unless the representative closed the WebSocket or it
  // failed; also when the reader stopped because the channel ended while it forwarded.
  if (!reader->stream_lost) {
    websocket::close_reason cr(websocket::close_code::normal);
    cr.reason = reason.substr(0, 120);
    co_await ws->async_close(cr, use_tuple);
  }
  // A reader waiting for the agent's credit sees the closed channel now, not within a second.
  timers->credit.cancel();
  // A pending read of the reader ends with the close; it uses `ws`, so the join waits for it:
  // up to kReaderAfterClose, then the socket is closed under it.
  co_await wait_for_reader(timers, reader, std::chrono::steady_clock::now() + kReaderAfterClose);
  if (!reader->done) beast::get_lowest_layer(*ws).close();
  co_await wait_for_reader(timers, reader, std::chrono::steady_clock::time_point::max());
}

// The writer's half of the relay: deliver, then close the stream and bound the reader's end.
asio::awaitable<void> write_then_close(ws_stream* ws, std::shared_ptr<channel_link> c, std::shared_ptr<tunnel_link> link,
                                       std::shared_ptr<stream_timers> timers, std::shared_ptr<reader_end> reader) {
  co_await deliver_to_representative(ws, c, link, timers, reader);
  co_await close_stream(ws, c, timers, reader);
}

asio::awaitable<void> run_channel_stream(ws_stream ws, channel_grant g, std::string remote, server_state* st) {
  auto ex = ws.get_executor();
  auto timers = std::make_shared<stream_timers>(ex);
  auto c = g.link->open_channel(g.scope, g.access_type, g.user);
  install_wake(*c, ex, timers);
  const bool accepted = co_await await_accept(&ws, c, g.link, timers);
  bool decided = false;
  {
    std::lock_guard lock(c->mu);
    decided = !c->decision.empty();
  }
  if (!accepted) {
    // A refusal or a timeout of the customer's is journaled before the channel's end.
    if (decided) st->svc->record_approval(c, false, [](bool) {});
    st->svc->channel_closed(c, remote);
    co_return;
  }
  if (decided) {
    // Journal before access: nothing flows until the customer's approval is durable.
    const bool recorded = co_await async_record_approval(*st->svc, c, asio::use_awaitable);
    if (!recorded) {
      end_channel(*c, *g.link, kApprovalUnrecorded);
      co_await refuse_opened(&ws, c);
      st->svc->channel_closed(c, remote);
      co_return;
    }
  }
  if (!st->svc->channel_opened(c)) {
    co_await refuse_opened(&ws, c);
    st->svc->channel_closed(c, remote);
    co_return;
  }
  // Reader and writer side by side on this strand, joined: the channel is journaled closed
  // only once both have ended (and no one uses `ws` any more).
  auto reader = std::make_shared<reader_end>();
  try {
    co_await (channel_reader(&ws, c, g.link, timers, reader) && write_then_close(&ws, c, g.link, timers, reader));
  } catch (const std::exception& e) {
    // A defect (only bad_alloc can come here); `&&` has ended the other half already. The
    // channel still ends toward the agent and is journaled closed, never left half-open.
    log::error("channel stream from {}: {}", remote, e.what());
    end_channel(*c, *g.link, kStreamFailed);
    {
      std::lock_guard lock(c->mu);
      c->wake_stream = nullptr;
      c->flow.release(c->budget.get());
    }
    beast::get_lowest_layer(ws).close();
  }
  st->svc->channel_closed(c, remote);
}

// channel.open is journaled already: record that it never opened.
void record_never_opened(const channel_grant& gr, const std::string& remote, server_state* st) {
  auto never = std::make_shared<channel_link>();
  never->session_id = gr.session_id;
  never->user = gr.user;
  never->scope = gr.scope;
  never->access_type = gr.access_type;
  never->opened_at = system_clock::instance().now();
  never->reason = "the representative's stream failed before the channel opened";
  st->svc->channel_closed(never, remote);
}

}  // namespace

bool is_stream_path(std::string_view target) { return target.substr(0, target.find('?')) == kStreamPath; }

asio::awaitable<bool> serve_channel_stream(net::tls_stream* stream, http::request<http::string_body> msg,
                                           std::string remote, server_state* st) {
  // The one-time token from POST /sessions/{id}/channels says which channel.
  auto token = token_param(msg.target());
  // (No co_await inside ?: — GCC 12 miscompiles it.)
  std::variant<channel_grant, http_response> r = json_error(401, "unauthorized", "?token= is missing");
  if (auto* err = std::get_if<http_response>(&token)) r = *err;
  else r = co_await async_redeem(*st->svc, std::get<std::string>(token), remote, asio::use_awaitable);
  if (auto* err = std::get_if<http_response>(&r)) {
    st->m.count_status(err->status);
    auto wire = to_wire(std::move(*err), msg.version(), false, false);
    co_await http::async_write(*stream, wire, use_tuple);
    co_return true;
  }
  st->m.count_status(101);
  stream->expires_never();
  ws_stream ws(*stream);
  ws.set_option(websocket::stream_base::timeout::suggested(beast::role_type::server));
  ws.read_message_max(kStreamMessageMax);
  ws.auto_fragment(false);  // one frame per message: a 4 KiB fragment costs a TLS record
  auto [aec] = co_await ws.async_accept(msg, use_tuple);
  if (aec) {
    record_never_opened(std::get<channel_grant>(r), remote, st);
    co_return false;
  }
  channel_grant grant = std::get<channel_grant>(r);
  co_await run_channel_stream(std::move(ws), std::move(grant), remote, st);
  co_return false;
}

}  // namespace rsgate::gateway::detail
