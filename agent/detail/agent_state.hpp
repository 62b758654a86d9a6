// Private to the agent's runtime (agent/tunnel.cpp, agent/channels.cpp, agent/runtime.cpp):
// the state of a running agent and the calls its three parts make of each other. Everything
// here lives on the agent's one thread (one io_context, run by one thread), so nothing needs
// a lock; a coroutine sees another's change only at its own suspension points.
//
// Reconnects (docs/protocol.md §9): once the agent has a session, a connection that is lost
// (read error, dead-peer bound, END `reauthenticate`) is not the agent's end. lost() marks
// the connection over (`conn_over`); run_tunnel's loop winds it down (its channels end, its
// writes stop), waits a backoff with jitter, and connects again, HELLO naming the session
// (`resume`). It gives up, exit 1, when the gateway's grace (from SUCCESS) has passed without
// a connection, and on everything that is not a lost connection: a refusal, a protocol error.
//
// How things end (structured concurrency, no polling):
// - The tunnel (run_tunnel) is a parallel group of `tunnel_session` and `wait_for_stop`, the
//   first to end cancelling the other: request_stop() cancels `stop_signal`, a timer used as
//   a condition variable, and the group cancels the tunnel's pending read or handshake. run_tunnel then finishes every channel, waits
//   for the writes already queued (STOP included; flush() cancels `write_idle` when it stops)
//   within a 2 s deadline, sends close_notify and closes.
// - A channel is one coroutine: the local connect, then `local_reader && local_writer`.
//   finish_channel closes the target's socket and cancels both pumps' timers, so both return
//   and the join completes. The writer's and the reader's timers are conditions too: EOF
//   (and DATA the tunnel's reader could not write at once) cancels the writer's, WINDOW the
//   reader's. DATA itself is written by the tunnel's reader when it has read everything there
//   was (flush_channels), or at once when a channel holds kFlushBytes; the writer only waits
//   for a target that does not take it all.
#pragma once
#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <cstdint>
#include <deque>
#include <exception>
#include <map>
#include <memory>
#include <optional>
#include <ostream>
#include <string>
#include <vector>

#include "agent/runtime.hpp"
#include "agent/session_view.hpp"
#include "net/tls_stream.hpp"
#include "protocol/agent_state.hpp"
#include "protocol/channel_flow.hpp"
#include "protocol/wire.hpp"

namespace rsgate::agent::detail {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;
using local_socket = asio::local::stream_protocol::socket;

// One channel: a TCP connection to the local target of an offered scope. Its windows, credit,
// EOFs and close are `flow`, the protocol's one state machine (protocol/channel_flow.hpp,
// docs/protocol.md §8), which the gateway runs too; `window` is the gateway's, from
// CHANNEL_OPEN. Owned by the channel's coroutine and by agent_state::channels while open.
struct local_channel {
  local_channel(asio::any_io_executor ex, std::uint32_t i, std::uint32_t window)
      : id(i), sock(ex), data_timer(ex), credit_timer(ex), approval_timer(ex),
        flow(tunnel::channel_flow::role::acceptor, window) {}
  std::uint32_t id;
  std::string scope, access_type, actor;
  tcp::socket sock;
  asio::steady_timer data_timer;    // local_writer waits here for the gateway's bytes or EOF
  asio::steady_timer credit_timer;  // local_reader waits here for the gateway's window
  // An `ask` scope (docs/protocol.md §8.1): the request waits on approval_timer for the
  // customer's `approve N` / `refuse N` (which set `decision` and cancel it) or the profile's
  // approval_seconds ("timeout").
  bool asks = false;
  std::uint32_t request = 0;  // the number the customer decides it by: never reused in a run
  std::string decision, decided_by;
  asio::steady_timer approval_timer;
  tunnel::channel_flow flow;
  std::deque<bytes> inbox;  // DATA from the gateway that `flow` delivered, not yet written locally
  std::size_t inbox_bytes = 0;    // in `inbox`, less `inbox_written`
  std::size_t inbox_written = 0;  // of inbox.front(): the target's socket took this much
  bool blocked = false;           // local_writer waits for the target's socket to take more
  bool finished = false;    // the socket is closed and the channel forgotten (finish_channel)
  std::int64_t bytes_in = 0, bytes_out = 0;
  void wake() {
    data_timer.cancel();
    credit_timer.cancel();
  }
};

// A frame waiting for the tunnel: the first `size` bytes of `buf` (a DATA frame keeps its
// buffer at full size, so that reusing it never zero-fills it again).
struct queued_frame {
  bytes buf;
  std::size_t size = 0;
};

struct agent_state {
  agent_state(const start_options& o, std::ostream& os, std::ostream& es, asio::io_context& io)
      : opt(o), out(os), err(es), ioc(&io), write_idle(io), stop_signal(io), keepalive_timer(io), backoff_timer(io) {}
  const start_options& opt;
  std::ostream& out;
  std::ostream& err;
  asio::io_context* ioc;                  // stopped when a coroutine fails with an exception
  std::optional<net::tls_stream> stream;  // the tunnel (docs/protocol.md §2)
  std::deque<queued_frame> outq;          // frames for the tunnel, written by flush()
  std::vector<bytes> spare_frames;        // written DATA frames' buffers, for the next ones
  bool writing = false;                   // a flush() runs
  asio::steady_timer write_idle;          // cancelled when a flush() ends (drain waits here)
  asio::steady_timer stop_signal;         // cancelled by request_stop (wait_for_stop waits here)
  asio::steady_timer keepalive_timer;     // the keepalive's period; cancelled when the tunnel ends
  int dead_peer_seconds = tunnel::kDeadPeerSeconds;  // the gateway's keepalive (SUCCESS)
  int grace_seconds = tunnel::kReconnectGraceSeconds;  // the gateway's reconnect grace (SUCCESS)
  asio::steady_timer backoff_timer;       // the wait before the next reconnect attempt
  std::uint64_t connection = 0;           // counts connections: a keepalive serves only its own
  bool conn_over = false;                 // this connection ended; the agent reconnects (lost())
  bool reconnect_now = false;             // END reauthenticate: the next attempt without a wait
  std::string move_from;                  // END move: the gateway to try last until a connection
  bool reconnecting = false;              // since the loss: until a SUCCESS, or the grace's end
  std::chrono::steady_clock::time_point reconnect_deadline{};  // the loss + the grace
  int attempts = 0;                       // reconnect attempts since the loss (the backoff's exponent)
  bool key_unconfirmed = false;           // a key offer was lost with its connection: offer again
  bool done = false;
  bool receipt_expected = false;          // the session ended (END) or STOP went out: RECEIPT follows
  int owed_receipts = 0;                  // RECEIPTs of earlier sessions on this connection (§4.12)
  int exit_code = 0;
  session_view view;  // what `status` shows
  std::string key;
  std::optional<tunnel::decoder> dec;
  tunnel_state gate;  // the protocol phase and the KEY_OFFER waiting for its KEY_ACK
  std::vector<std::shared_ptr<local_socket>> key_waiters;  // control clients waiting for a KEY_ACK
  std::map<std::uint32_t, std::shared_ptr<local_channel>> channels;
  tunnel::window_budget windows{tunnel::kTunnelWindowBudget};  // growth of our receive windows
  // The last request number given to a channel of an `ask` scope. Not the channel id, which
  // each connection counts from 1 again: an old number must never decide a new request.
  std::uint32_t last_request = 0;
};

// The completion of a coroutine spawned by the agent: an exception there is a defect. It is
// reported and ends the agent with exit 1, never an exit 0 that looks like a normal end.
struct report_exception {
  agent_state* st;
  const char* where;
  void operator()(std::exception_ptr e) const;
};

// A whole DATA frame; written frames' buffers of about this size are kept for reuse, at most
// kSpareFrameBuffers of them (fresh 32 KiB blocks per frame cost a page fault per 4 KiB: glibc
// trims the freed heap top and the next block is new memory again).
inline constexpr std::size_t kDataFrameBytes = tunnel::kHeaderBytes + tunnel::kMaxDataPayload;
// The agent's DATA payloads are at most this (protocol/wire.hpp): a full frame fills two TLS
// records exactly, with no 12-byte third record to seal here and open at the gateway.
inline constexpr std::size_t kAgentDataPayload = tunnel::kDataPayloadPerFrame;
static_assert(kAgentDataPayload <= tunnel::kMaxDataPayload);
inline constexpr std::size_t kSpareFrameBuffers = 4;

// agent/tunnel.cpp: the tunnel to the gateway.
bytes take_frame_buffer(agent_state& st);  // empty, or a spare of kDataFrameBytes
void recycle_frame_buffer(agent_state& st, bytes&& b);
void line(agent_state& st, const std::string& text);  // one line for the customer on `out`
// Queues the first `size` bytes of `frame` (all of it by default) for the tunnel.
void send_frame(agent_state& st, bytes frame, std::size_t size = SIZE_MAX);
void send(agent_state& st, tunnel::frame_type t, bytes payload, std::uint32_t channel = 0);
void fail(agent_state& st, const std::string& message);  // exit 1, one line on stderr
// The connection is lost: with a session to resume, reconnect (one line on stderr); before
// the first session, fail.
void lost(agent_state& st, const std::string& message);
// The gateway broke the protocol: ERROR `code` to it (docs/protocol.md §4.11), then fail.
void protocol_error(agent_state& st, std::string_view code, const std::string& message);
void offer_key(agent_state& st);
// Ends the agent: STOP to a gateway that proved itself, then the tunnel's reads are cancelled
// and run_tunnel drains and closes. A gateway not yet authenticated is closed at once.
void request_stop(agent_state& st);
asio::awaitable<void> run_tunnel(agent_state& st, asio::ssl::context& tls);

// agent/channels.cpp: the channels to local targets.
void on_channel_open(agent_state& st, const tunnel::frame& f);
void on_channel_frame(agent_state& st, tunnel::frame& f);  // DATA, WINDOW, EOF, CLOSE
// The tunnel's reader read everything there was: each channel's bytes go to its target now.
void flush_channels(agent_state& st);
void abandon_channels(agent_state& st);                   // the tunnel ended
// The customer's `approve N` (approve) or `refuse N` on the control socket, by account `by`
// (N: the request number the agent printed, local_channel::request):
// the answer line for the control client ("error: ..." when no request N waits).
std::string decide_channel(agent_state& st, std::uint32_t id, bool approve, const std::string& by);
std::vector<channel_view> channel_views(const agent_state& st);

}  // namespace rsgate::agent::detail
