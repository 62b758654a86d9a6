// Private to gateway/tunnel/: one agent connection (tunnel_connection) and what all of them
// share (shared_ctx: the service, the limits, which tunnel serves each machine). The class is
// shared by tunnel_connection.cpp (frame queue and writer, channel frames, reading, the close
// and its journaling), tunnel_auth.cpp (HELLO, CHAP, the machine claim, replacing a silent
// tunnel, tunnel.auth) and tunnel_server.cpp (the listener). Each connection is shared between
// its two coroutines (reader and writer, on one strand) and the service, which holds it weakly
// as the tunnel_link it sends notices through. Heavy Asio headers: never include it from a
// public header.
#pragma once
#include <fmt/format.h>
#include <openssl/ssl.h>

#include <atomic>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/json/object.hpp>
#include <deque>
#include <map>
#include <mutex>
#include <optional>
#include <set>

#include "gateway/service.hpp"
#include "gateway/tunnel/change_signal.hpp"
#include "gateway/tunnel/admission.hpp"
#include "gateway/tunnel/tunnel_server.hpp"
#include "net/wake_signal.hpp"
#include "net/async_bridge.hpp"
#include "net/tls_stream.hpp"
#include "protocol/gateway_handshake.hpp"
#include "protocol/messages.hpp"
#include "protocol/wire.hpp"

namespace rsgate::gateway::detail {

namespace asio = boost::asio;
namespace json = boost::json;
using tcp = asio::ip::tcp;

inline constexpr auto use_tuple = asio::as_tuple(asio::use_awaitable);
// How long a newcomer waits for another newcomer of the same machine to be decided.
inline constexpr auto kClaimWait = std::chrono::seconds(3 * tunnel::kLivenessProbeSeconds);
// How long a newcomer waits for the tunnel it replaces to journal its close.
inline constexpr auto kReplaceWait = std::chrono::seconds(4);

// Completes on the caller's executor when the journal has (or has not) recorded `e`.
template <typename Token>
auto async_append(journal::writer& w, journal::entry e, Token&& token) {
  return net::async_from_callback<void(journal::append_result)>(
      [&w, en = std::move(e)](auto cb) mutable {
        w.append(std::move(en), [cb](const journal::append_result& r) { cb(r); });
      },
      token);
}

// A coroutine spawned on its own ends here: an exception is logged, never lost.
void log_end(std::string_view what, const std::exception_ptr& e);

class tunnel_connection;

// One machine's live tunnel, and whether a newcomer is deciding about it (one at a time).
struct machine_slot {
  std::weak_ptr<tunnel_connection> live;
  bool deciding = false;
  micros notice_window = 0;  // NOTICE tunnel_refused: the window's start and its count
  int notices = 0;
};

// What every tunnel shares: the service, the configuration, the CHAP failure limiter and the
// admission limits, and which tunnel serves each machine (each guarded by its mutex: tunnels
// run on different strands). Held by shared_ptr by the server and by every tunnel, so a
// tunnel's frame destroyed after the server (at shutdown) still finds it.
struct shared_ctx {
  shared_ctx(service& s, metrics& mm, tunnel_config c)
      : svc(s), m(mm), cfg(std::move(c)), adm(tunnel::admission_limits{.max_authenticated = cfg.max_tunnels}) {}
  service& svc;
  metrics& m;
  // The listener's settings. SIGHUP may change the tunnel timings (tunnel_server::reload), so
  // a connection takes a copy when it starts (snapshot) and keeps it: live tunnels keep theirs.
  tunnel_config cfg;  // guarded by cfg_mu after start
  std::mutex cfg_mu;
  [[nodiscard]] tunnel_config snapshot() {
    std::lock_guard lock(cfg_mu);
    return cfg;
  }
  std::mutex limiter_mu;
  auth::failure_limiter limiter{auth::limit_policy{}};
  tunnel::window_budget windows{tunnel::kGatewayWindowBudget};  // growth of every tunnel's windows
  tunnel::admission adm;
  std::mutex machines_mu;
  std::map<std::string, machine_slot> machines;  // guarded by machines_mu, taken as machines_lock
  // machines_mu, held for its scope; as it ends (the mutex still held) the gauge
  // rsgate_tunnel_machines takes the map's size, whatever the scope added or removed.
  class machines_lock {
   public:
    explicit machines_lock(shared_ctx& c) : c_(c), lock_(c.machines_mu) {}
    ~machines_lock() { c_.m.tunnel_machines.store(static_cast<std::int64_t>(c_.machines.size())); }
    machines_lock(const machines_lock&) = delete;
    machines_lock& operator=(const machines_lock&) = delete;

   private:
    shared_ctx& c_;
    std::lock_guard<std::mutex> lock_;
  };
  change_signal machines_changed;  // a machine's claim was released: its waiters look again
  // Set by tunnel_server::stop() before `stopping`; called (from any thread) whenever a tunnel
  // ends after that, so that the shutdown's drain wakes instead of polling.
  std::function<void()> on_end;
  std::atomic<bool> stopping{false};
  std::atomic<bool> draining{false};  // SIGTERM's drain: no new tunnel
};

using tunnel::kMaxQueuedBytes;

// A frame's channel is 0: a control frame (header bytes 4..7).
inline bool is_control_frame(const bytes& f) { return f.size() >= 8 && f[4] == 0 && f[5] == 0 && f[6] == 0 && f[7] == 0; }

enum class liveness { alive, silent, gone };

class tunnel_connection : public tunnel_link, public std::enable_shared_from_this<tunnel_connection> {
 public:
  tunnel_connection(tcp::socket sock, SSL_CTX* tls, std::string remote, std::string source,
                    std::shared_ptr<shared_ctx> ctx)
      : stream_(std::move(sock), tls, net::tls_stream::kTunnelBuffer), remote_(std::move(remote)),
        source_(std::move(source)), ctx_(std::move(ctx)), svc_(ctx_->svc), metrics_(ctx_->m), cfg_(ctx_->snapshot()),
        wake_(stream_.get_executor()), writer_end_(stream_.get_executor()), rekey_timer_(stream_.get_executor()),
        receipt_timer_(stream_.get_executor()),
        budget_(std::make_shared<tunnel::window_budget>(tunnel::kTunnelWindowBudget, &ctx_->windows)) {}

  void notify(const tunnel::notice& n) override {
    post_frame(tunnel::frame_type::notice, tunnel::to_payload(n));
  }
  void end_session(const std::string& reason) override {
    asio::post(stream_.get_executor(), [self = shared_from_this(), p = tunnel::to_payload(tunnel::reason_only{reason})] {
      self->queue_after_success(tunnel::encode(tunnel::frame_type::end, 0, p));
      self->await_receipt();
    });
  }
  void deliver_receipt(std::optional<bytes> payload) override {
    asio::post(stream_.get_executor(), [self = shared_from_this(), p = std::move(payload)] {
      // After STOP it may come before the stop's own step has returned to the reader (which
      // then finds the tunnel closing): the service sends it only to the tunnel of the end.
      if (p && self->authenticated_ && !self->closing_) {
        self->queue(tunnel::frame_type::receipt, *p);
        if (self->receipts_) {  // it acknowledges: the tunnel stays for the RECEIPT_ACK a while
          self->receipts_out_.insert(self->session_);
          self->await_receipt_ack();
          return;
        }
      }
      self->end_receipt_wait();
    });
  }
  void deliver_owed_receipt(std::string session_id, bytes payload) override {
    asio::post(stream_.get_executor(), [self = shared_from_this(), sid = std::move(session_id), p = std::move(payload)] {
      if (!self->authenticated_ || self->closing_ || self->ending_ ||
          self->receipts_out_.size() > static_cast<std::size_t>(tunnel::kOwedReceipts))
        return;  // it stays owed
      if (self->receipts_out_.insert(sid).second) self->queue(tunnel::frame_type::receipt, p);
    });
  }
  std::shared_ptr<channel_link> open_channel(const std::string& scope, const std::string& access_type,
                                             const std::string& actor) override {
    auto c = std::make_shared<channel_link>();
    c->scope = scope;
    c->access_type = access_type;
    c->user = actor;
    c->session_id = session_;
    c->opened_at = system_clock::instance().now();
    c->asks = ask_scopes_.contains(scope);
    if (c->asks) c->answer_seconds = approval_seconds_ + tunnel::kHandshakeTimeoutSeconds;
    c->budget = budget_;
    c->tunnel = weak_from_this();
    {
      std::lock_guard lock(ch_mu_);
      if (channels_.size() >= tunnel::kMaxChannelsPerTunnel || closing_flag_) {
        c->flow.abandon();  // never opened: no frame about it goes to the agent
        c->closed = true;
        c->reason = "too many open channels";
        return c;
      }
      c->id = next_channel_++;
      channels_[c->id] = c;
    }
    tunnel::channel_open m{scope, access_type, actor, tunnel::kInitialWindow};
    asio::post(stream_.get_executor(), [self = shared_from_this(), id = c->id, p = tunnel::to_payload(m)] {
      self->queue_after_success(tunnel::encode(tunnel::frame_type::channel_open, id, p));
    });
    return c;
  }
  // From the stream sides' threads: frame here, queue, wake the writer only if it is idle.
  void channel_data(std::uint32_t id, std::span<const std::uint8_t> d) override {
    // kMaxDataPayload, not kDataPayloadPerFrame: the representative's messages are up to
    // 64 KiB, which this cuts into two full frames (a cut at 32,756 would leave a third of 24
    // bytes); tls_stream cuts the writer's gathered frames at record boundaries anyway.
    for (std::size_t off = 0; off < d.size(); off += tunnel::kMaxDataPayload) {
      auto n = std::min(tunnel::kMaxDataPayload, d.size() - off);
      push(tunnel::encode(tunnel::frame_type::data, id, d.subspan(off, n)));
    }
  }
  void channel_window(std::uint32_t id, std::uint32_t increment) override {
    push(tunnel::encode_window(id, increment));
  }
  void channel_eof(std::uint32_t id) override { push(tunnel::encode(tunnel::frame_type::eof, id, {})); }
  void channel_close(std::uint32_t id, const std::string& reason) override {
    asio::post(stream_.get_executor(),
               [self = shared_from_this(), id, reason] { self->close_channel(id, reason, close_how::ours); });
  }

  // The gateway stops (docs/protocol.md §9): END `restart` to an authenticated agent, which
  // comes back to the next run within the grace; the session is kept (state.db), not ended.
  // After a drain, END `move`: the agent goes to the pair's other gateway first.
  void close_for_restart(bool move = false) {
    asio::post(stream_.get_executor(), [self = shared_from_this(), move] {
      self->end_connection(move ? tunnel::kMove : tunnel::kRestart,
                           move ? "the gateway stopped draining; the agent moves to the other gateway"
                                : "the gateway stops; the session is kept for its agent");
    });
  }
  // The drain's start: a tunnel whose session has no owner is handed to the other gateway now
  // (END `move`); one a representative holds stays until its session ends or the drain ends.
  void move_if_unowned() {
    asio::post(stream_.get_executor(), [self = shared_from_this()] {
      if (self->closing_ || self->ending_) return;
      if (self->authenticated_ && !self->session_.empty() && self->svc_.has_owner(self->session_)) return;
      self->end_connection(tunnel::kMove, "the gateway drains; the agent moves to the other gateway");
    });
  }
  void close_now() {
    asio::post(stream_.get_executor(), [self = shared_from_this()] {
      self->mark_closing();
      self->wake_.notify();
    });
  }

  // --- what a newcomer of the same machine asks of this tunnel (from its own strand) ---
  [[nodiscard]] const std::string& remote() const { return remote_; }
  // Closing, or its session ended and it only waits to deliver the receipt: either way not a
  // live tunnel of the machine for a newcomer (§9.1).
  [[nodiscard]] bool closing() const { return closing_ || ending_; }
  // Its session ended and its receipt is still to go (at most kReceiptWaitSeconds).
  [[nodiscard]] bool awaiting_receipt() const { return ending_ && !closing_; }
  [[nodiscard]] std::uint64_t frames_in() const { return frames_in_; }
  [[nodiscard]] bool finished() const { return finished_; }
  // Notified (from this tunnel's strand) when closing() or finished() becomes true, and at
  // the first frame after send_probe(): what a newcomer waiting on this tunnel looks at.
  [[nodiscard]] change_signal& changed() { return changed_; }
  // A PING: any frame that comes back proves the agent alive.
  void send_probe() {
    probe_waiting_ = true;  // before the PING: the reader notifies at every frame until end_probe()
    asio::post(stream_.get_executor(), [self = shared_from_this()] {
      if (!self->closing_) self->queue(tunnel::frame_type::ping, {});
    });
  }
  void end_probe() { probe_waiting_ = false; }
  // Declared dead: ERROR `replaced` (best effort), then closed within about a second.
  void replace_by(std::string newcomer) {
    asio::post(stream_.get_executor(), [self = shared_from_this(), newcomer = std::move(newcomer)] {
      self->set_close(fmt::format("replaced by a new tunnel from {} after not answering for {} s", newcomer,
                                  tunnel::kLivenessProbeSeconds),
                      journal::outcome::error);
      self->queue(tunnel::frame_type::error,
                  tunnel::to_payload(tunnel::error_message{
                      "replaced", "a new tunnel of this machine from " + newcomer +
                                      " took over because this one did not answer"}));
      self->mark_closing();
      self->stream_.expires_after(std::chrono::seconds(1));  // ends the reader's wait too
    });
  }

  asio::awaitable<void> run();

 private:
  // Whatever way run() ends (normally, by an exception, or its frame destroyed at shutdown),
  // the slots and counters of this connection are returned exactly once.
  struct accounting_guard {
    tunnel_connection* c;
    ~accounting_guard() { c->release(); }
  };

  void post_frame(tunnel::frame_type t, bytes payload) {
    asio::post(stream_.get_executor(), [self = shared_from_this(), t, p = std::move(payload)] {
      self->queue_after_success(tunnel::encode(t, 0, p));
    });
  }
  // On the strand: what the service sends through this tunnel (notices, END, CHANNEL_OPEN)
  // goes out after SUCCESS, never before it, even when the service learnt of the tunnel while
  // its SUCCESS waited for the journal (docs/protocol.md §10: the agent refuses such frames
  // before SUCCESS). A handful at most wait; more than kMaxHeldFrames is a defect, not queued.
  void queue_after_success(bytes frame) {
    if (authenticated_) return push(std::move(frame));
    if (held_.size() < kMaxHeldFrames) return held_.push_back(std::move(frame));
    // Never silently lost: a tunnel that cannot deliver what the service sends ends.
    set_close("too many frames for the agent before its SUCCESS", journal::outcome::error);
    mark_closing();
  }
  void release_held() {
    for (auto& f : held_) push(std::move(f));
    held_.clear();
  }
  static constexpr std::size_t kMaxHeldFrames = 64;
  // On the strand only.
  void queue(tunnel::frame_type t, std::span<const std::uint8_t> payload, std::uint32_t channel = 0) {
    push(tunnel::encode(t, channel, payload));
  }
  // From any thread.
  void push(bytes frame) {
    bool wake = false;
    {
      std::lock_guard lock(out_mu_);
      // Bounded: channel frames by the agent's windows, control frames by their own small
      // limit. Beyond either the agent is not reading, so give up on it.
      const bool control = is_control_frame(frame);
      const bool over = control ? control_bytes_ + frame.size() > tunnel::kMaxQueuedControlBytes
                                : out_bytes_ - control_bytes_ + frame.size() > kMaxQueuedBytes;
      if (over) {
        overflow_ = true;
        out_.clear();
        out_bytes_ = control_bytes_ = 0;
      } else {
        out_bytes_ += frame.size();
        if (control) control_bytes_ += frame.size();
        out_.push_back(std::move(frame));
      }
      wake = wake_writer_locked();
    }
    if (wake) wake_writer();
  }
  // PING: at most one PONG is ever pending; later PINGs share it.
  void request_pong() {
    bool wake = false;
    {
      std::lock_guard lock(out_mu_);
      pong_due_ = true;
      wake = wake_writer_locked();
    }
    if (wake) wake_writer();
  }
  bool pong_pending() {
    std::lock_guard lock(out_mu_);
    return pong_due_ || pong_in_flight_;
  }
  // At most kMaxPingsPerWindow PINGs per window (on the strand).
  bool ping_allowed() {
    const auto now = std::chrono::steady_clock::now();
    if (now - ping_window_start_ >= std::chrono::seconds(tunnel::kPingWindowSeconds)) {
      ping_window_start_ = now;
      pings_in_window_ = 0;
    }
    return ++pings_in_window_ <= tunnel::kMaxPingsPerWindow;
  }
  bool wake_writer_locked() { return std::exchange(writer_idle_, false); }
  // From any thread: one post to the strand (net/wake_signal.hpp), where a timer's cancel
  // from another strand would take two trips through the scheduler.
  void wake_writer() { wake_.notify(); }
  // Takes what the writer sends next (up to 1 MiB, and the PONG if one is due); under out_mu_.
  void take_batch_locked(std::vector<bytes>& batch) {
    std::size_t total = 0;
    while (!out_.empty() && total < (1u << 20)) {
      auto& f = out_.front();
      total += f.size();
      if (is_control_frame(f)) control_bytes_ -= f.size();
      batch.push_back(std::move(f));
      out_.pop_front();
    }
    out_bytes_ -= total;
    if (pong_due_) {
      pong_due_ = false;
      pong_in_flight_ = true;
      batch.push_back(tunnel::encode(tunnel::frame_type::pong, 0, {}));
    }
  }
  asio::awaitable<void> writer();
  // How a channel ends here: the gateway closes it (CLOSE unless its flow says the channel is
  // closed already), it answers the agent's CLOSE, or it ends without a frame (after
  // CHANNEL_REJECT, or with the tunnel).
  enum class close_how { ours, answer, silent };
  // On the strand: forget channel `id`, tell its stream side, and CLOSE it toward the agent.
  void close_channel(std::uint32_t id, const std::string& reason, close_how how) {
    std::shared_ptr<channel_link> c;
    {
      std::lock_guard lock(ch_mu_);
      auto it = channels_.find(id);
      if (it == channels_.end()) return;
      c = it->second;
      channels_.erase(it);
      recently_closed_.insert(id);
      if (recently_closed_.size() > 1024) recently_closed_.erase(recently_closed_.begin());
    }
    bool send_close = how == close_how::answer;
    {
      std::lock_guard lock(c->mu);
      if (how == close_how::ours) send_close = c->flow.close();
      if (how == close_how::silent) c->flow.abandon();
      if (!c->closed) {
        c->closed = true;
        c->reason = reason;
      }
    }
    c->wake();
    // Behind its CHANNEL_OPEN, which may still wait for SUCCESS.
    if (send_close) queue_after_success(tunnel::encode(tunnel::frame_type::close, id, {}));
  }
  void close_all_channels(const std::string& reason) {
    std::vector<std::uint32_t> ids;
    {
      std::lock_guard lock(ch_mu_);
      closing_flag_ = true;
      for (auto& [id, c] : channels_) ids.push_back(id);
    }
    for (auto id : ids) close_channel(id, reason, close_how::silent);
  }
  std::size_t open_channels() {
    std::lock_guard lock(ch_mu_);
    return channels_.size();
  }
  std::shared_ptr<channel_link> find_channel(std::uint32_t id) {
    std::lock_guard lock(ch_mu_);
    auto it = channels_.find(id);
    return it == channels_.end() ? nullptr : it->second;
  }
  bool on_channel_frame(tunnel::frame& f);
  asio::awaitable<bool> on_frame(tunnel::frame& f);
  asio::awaitable<bool> authenticate_step(const tunnel::frame& f);
  asio::awaitable<bool> on_hello_frame(const tunnel::frame& f);
  asio::awaitable<bool> on_chap_ok(tunnel::gateway_handshake::step step);
  asio::awaitable<bool> on_chap_denied(tunnel::gateway_handshake::step step);
  asio::awaitable<void> journal_denied(tunnel::gateway_handshake::step step);
  asio::awaitable<bool> refuse_after_chap(int id, std::string reason, json::object detail, std::string answer);
  asio::awaitable<bool> journal_auth_ok(int id, std::string replaced);
  asio::awaitable<bool> journal_join(int id, const service::tunnel_join& j);
  // FAILURE "cannot record" (retry in 60 s) and the close: fail closed.
  void refuse_unrecorded(int id);
  asio::awaitable<liveness> probe(std::shared_ptr<tunnel_connection> live);
  asio::awaitable<void> wait_finished(std::shared_ptr<tunnel_connection> old);
  asio::awaitable<bool> pong_keeps_up();
  asio::awaitable<void> serve();
  asio::awaitable<void> read_frames();
  asio::awaitable<void> finish();
  asio::awaitable<void> abandon_challenge();
  asio::awaitable<void> journal_close();
  // Rekey and re-challenge (tunnel_rekey.cpp, docs/protocol.md §6): a loop on the strand from
  // SUCCESS to the tunnel's end; the agent's answer arrives through on_frame.
  asio::awaitable<void> rekey_loop();
  bool start_rekey();
  void end_life();
  asio::awaitable<bool> on_rechallenge_response(const tunnel::frame& f);
  [[nodiscard]] std::string reauth_detail(json::object d) const;
  // Journals `e`: always once the machine's secret was proven; before that only while this
  // source is within its journal budget (the connection is then counted into a summary).
  asio::awaitable<void> journal_pre(journal::entry e);
  asio::awaitable<void> journal_connect_late();
  void teardown();
  void release() noexcept;
  void forget_machine_slot() noexcept;
  bool quiet();
  // From the strand: the tunnel is closing; whoever waits on it (a newcomer's probe or claim,
  // on its own strand) is told.
  void mark_closing() {
    if (closing_.exchange(true)) return;
    changed_.notify_all();
  }
  // On the strand: this connection ends, its session kept: END `end_reason` to an
  // authenticated agent, then the close (journaled `ok` with `close_reason`).
  void end_connection(std::string_view end_reason, std::string close_reason) {
    set_close(std::move(close_reason), journal::outcome::ok);
    if (authenticated_)
      queue(tunnel::frame_type::end, tunnel::to_payload(tunnel::reason_only{std::string(end_reason)}));
    mark_closing();
    wake_.notify();
  }
  // On the strand: the session ended (END sent, or the agent's STOP accepted); the tunnel
  // stays at most kReceiptWaitSeconds for deliver_receipt, then closes.
  void await_receipt() {
    if (ending_.exchange(true)) return;
    changed_.notify_all();
    receipt_timer_.expires_after(std::chrono::seconds(tunnel::kReceiptWaitSeconds));
    receipt_timer_.async_wait([self = shared_from_this()](boost::system::error_code ec) {
      if (!ec) self->end_receipt_wait();
    });
  }
  // On the strand: the ended session's receipt is queued; the agent's RECEIPT_ACK, or
  // kReceiptAckWaitSeconds, ends the wait (without the ACK the receipt stays owed).
  void await_receipt_ack() {
    receipt_timer_.expires_after(std::chrono::seconds(tunnel::kReceiptAckWaitSeconds));
    receipt_timer_.async_wait([self = shared_from_this()](boost::system::error_code ec) {
      if (!ec) self->end_receipt_wait();
    });
  }
  void end_receipt_wait() {
    receipt_timer_.cancel();
    mark_closing();
    wake_.notify();
    stream_.expires_after(std::chrono::seconds(2));  // ends the reader's wait; what is queued leaves first
  }
  void mark_finished() {
    finished_ = true;
    changed_.notify_all();
  }
  void mark_writer_done() {
    writer_done_ = true;
    writer_end_.cancel();
  }
  void set_close(std::string reason, journal::outcome o) {
    if (close_set_) return;  // the first reason is the real one
    close_set_ = true;
    close_reason_ = std::move(reason);
    close_outcome_ = o;
  }
  [[nodiscard]] std::string connect_detail() const;
  [[nodiscard]] tunnel::notice refused_notice() const;
  journal::entry entry(std::string kind, journal::outcome o, std::string detail = "{}") const {
    journal::entry e;
    e.kind = std::move(kind);
    e.actor = machine_.empty() ? "agent" : machine_;
    e.source = remote_;
    e.machine = machine_;
    e.session_id = session_;
    e.result = o;
    e.detail = std::move(detail);
    return e;
  }
  void protocol_error(std::string_view code, std::string_view message) {
    set_close(std::string(code) + ": " + std::string(message), journal::outcome::error);
    queue(tunnel::frame_type::error, tunnel::to_payload(tunnel::error_message{std::string(code), std::string(message)}));
    mark_closing();
  }
  // FAILURE with `reason`, then close (as refused).
  void send_failure(int id, std::string reason, std::string close_reason, std::int64_t retry_after = 0) {
    tunnel::failure f;
    f.id = id;
    f.reason = std::move(reason);
    f.retry_after_seconds = retry_after;
    queue(tunnel::frame_type::failure, tunnel::to_payload(f));
    set_close(std::move(close_reason), journal::outcome::denied);
    mark_closing();
  }

  net::tls_stream stream_;
  std::string remote_;
  std::string source_;  // the admission key of remote_'s address
  std::shared_ptr<shared_ctx> ctx_;
  service& svc_;
  metrics& metrics_;
  const tunnel_config cfg_;  // this tunnel's settings, as they were when it was accepted
  net::wake_signal wake_;         // the writer waits here while it has nothing to write
  asio::steady_timer writer_end_;  // cancelled when the writer ends: finish() waits on it
  asio::steady_timer rekey_timer_;  // the rekey loop's interval and answer deadline (on the strand)
  asio::steady_timer receipt_timer_;  // the wait for an ended session's receipt (on the strand)
  change_signal changed_;          // see changed()
  std::atomic<bool> probe_waiting_{false};
  std::mutex out_mu_;
  std::deque<bytes> out_;         // guarded by out_mu_
  std::size_t out_bytes_ = 0;     // guarded by out_mu_: all of out_
  std::size_t control_bytes_ = 0; // guarded by out_mu_: the channel-0 frames in out_
  bool pong_due_ = false;         // guarded by out_mu_: a PONG to send
  bool pong_in_flight_ = false;   // guarded by out_mu_: the writer is writing one
  bool writer_idle_ = false;      // guarded by out_mu_: the writer waits on wake_
  bool overflow_ = false;         // guarded by out_mu_
  bool key_update_due_ = false;   // guarded by out_mu_: KeyUpdate before the writer's next write
  std::atomic<bool> closing_{false};
  std::atomic<bool> ending_{false};  // its session ended: only the receipt is still to go
  std::atomic<bool> finished_{false};      // tunnel.close journaled (or counted)
  std::atomic<std::uint64_t> frames_in_{0};
  bool writer_started_ = false;
  bool writer_done_ = false;
  int stalled_ping_reads_ = 0;
  std::chrono::steady_clock::time_point ping_window_start_{};
  int pings_in_window_ = 0;
  std::optional<tunnel::gateway_handshake> hs_;
  std::string machine_;
  std::string session_;
  // HELLO's `ask` scopes and approval_seconds, set before tunnel_commit publishes this tunnel
  // to the service (whose mutex orders them before open_channel on the stream sides).
  std::set<std::string> ask_scopes_;
  int approval_seconds_ = 0;
  // HELLO's `receipts`: the agent stores and acknowledges receipts (docs/protocol.md §4.12).
  // receipts_out_: the sessions whose RECEIPT went out on this tunnel and awaits its
  // RECEIPT_ACK (on the strand; at most kOwedReceipts + 1).
  bool receipts_ = false;
  std::set<std::string> receipts_out_;
  std::string close_reason_ = "closed";
  journal::outcome close_outcome_ = journal::outcome::ok;
  bool close_set_ = false;
  std::string summary_reason_;        // overrides the close reason's category in a summary
  std::optional<bool> quiet_;         // decided at the first pre-authentication entry
  bool secret_proven_ = false;        // CHAP succeeded: every entry is written from now on
  bool connect_journaled_ = false;
  bool counted_authenticated_ = false;  // admission moved this tunnel to the authenticated count
  bool torn_down_ = false;
  bool released_ = false;
  bool authenticated_ = false;
  bool stopped_by_customer_ = false;
  std::uint64_t rekeys_ = 0;          // re-challenges started (on the strand)
  int rechallenge_id_ = 0;            // the last re-challenge's CHAP id
  bool key_update_failed_ = false;    // OpenSSL refused the last KeyUpdate (on the strand)
  bool reauth_journaling_ = false;    // a re-challenge's answer is being journaled (on the strand)
  std::mutex ch_mu_;  // channels_ is read by stream sides on other strands
  std::map<std::uint32_t, std::shared_ptr<channel_link>> channels_;
  std::set<std::uint32_t> recently_closed_;
  std::shared_ptr<tunnel::window_budget> budget_;  // growth of this tunnel's receive windows
  std::uint32_t next_channel_ = 1;
  bool closing_flag_ = false;
  std::vector<bytes> held_;  // on the strand: frames waiting for SUCCESS (queue_after_success)
};

}  // namespace rsgate::gateway::detail
