// See tunnel_server.hpp. Each connection is a tunnel_connection shared between its two
// coroutines (reader and writer, on one strand) and the service, which holds it weakly as
// the tunnel_link it sends notices through. Frames to the agent go through one queue guarded
// by a mutex, so the channel streams (on other threads) add DATA and WINDOW frames without a
// hand-off per frame; the writer is woken only when it said it was idle. Control frames are
// bounded apart from channel traffic, and PONGs coalesce. The CHAP logic is
// gateway_handshake's, the limits before authentication tunnel::admission's; this file moves
// frames, enforces deadlines, keeps one live tunnel per machine, and journals tunnel.*
// entries — tunnel.auth before SUCCESS is sent (journal before access).
#include "gateway/tunnel/tunnel_server.hpp"

#include <fmt/format.h>
#include <openssl/ssl.h>
#include <sodium.h>

#include <atomic>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/ssl/error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core.hpp>
#include <boost/json/serialize.hpp>
#include <boost/json/value.hpp>
#include <deque>
#include <map>
#include <mutex>
#include <set>

#include "core/log.hpp"
#include "core/timefmt.hpp"
#include "net/async_bridge.hpp"
#include "net/tls_stream.hpp"
#include "gateway/service.hpp"
#include "gateway/tunnel/admission.hpp"
#include "protocol/gateway_handshake.hpp"
#include "protocol/messages.hpp"
#include "protocol/wire.hpp"

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace ssl = asio::ssl;
namespace json = boost::json;
using tcp = asio::ip::tcp;

namespace rsgate::gateway {
namespace {

constexpr auto use_tuple = asio::as_tuple(asio::use_awaitable);
// How often a tunnel that waits on another one (its claim on the machine, a probe, a
// replacement) looks again: waits are short and rare (one per authentication at most).
constexpr auto kPoll = std::chrono::milliseconds(20);
// How long a newcomer waits for another newcomer of the same machine to be decided.
constexpr auto kClaimWait = std::chrono::seconds(3 * tunnel::kLivenessProbeSeconds);
// How long a newcomer waits for the tunnel it replaces to journal its close.
constexpr auto kReplaceWait = std::chrono::seconds(4);

// Completes on the caller's executor when the journal has (or has not) recorded `e`.
template <typename Token>
auto async_append(journal::writer& w, journal::entry e, Token&& token) {
  return net::async_from_callback<void(journal::append_result)>(
      [&w, en = std::move(e)](auto cb) mutable {
        w.append(std::move(en), [cb](const journal::append_result& r) { cb(r); });
      },
      token);
}

template <typename Token>
auto async_key(service& svc, std::string session, std::string key, micros life, std::string source, Token&& token) {
  return net::async_from_callback<void(std::optional<micros>)>(
      [&svc, session, key, life, source](auto cb) { svc.key_offered(session, key, life, source, cb); }, token);
}

template <typename Token>
auto async_stop(service& svc, std::string session, std::string source, Token&& token) {
  return net::async_from_callback<void()>(
      [&svc, session, source](auto cb) { svc.customer_stopped(session, source, cb); }, token);
}

// A coroutine spawned on its own ends here: an exception is logged, never lost.
void log_end(std::string_view what, const std::exception_ptr& e) {
  if (!e) return;
  try {
    std::rethrow_exception(e);
  } catch (const std::exception& x) {
    log::error("{} ended by an exception: {}", what, x.what());
  } catch (...) {
    log::error("{} ended by an unknown exception", what);
  }
}

// "bad_hello: scopes has more than 64 items" -> "bad_hello": what a summary counts by.
std::string reason_category(const std::string& reason) { return reason.substr(0, std::min<std::size_t>(reason.find(':'), 48)); }

// The unit of the limits before authentication: an IPv4 address, or an IPv6 /64 (one host
// usually holds a whole /64, so counting single IPv6 addresses would limit nothing).
std::string source_key(const asio::ip::address& a) {
  if (!a.is_v6()) return a.to_string();
  auto v6 = a.to_v6();
  if (v6.is_v4_mapped()) return asio::ip::make_address_v4(asio::ip::v4_mapped, v6).to_string();
  auto b = v6.to_bytes();
  std::fill(b.begin() + 8, b.end(), 0);
  return asio::ip::address_v6(b).to_string() + "/64";
}

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
  tunnel_config cfg;
  std::mutex limiter_mu;
  auth::failure_limiter limiter{auth::limit_policy{}};
  tunnel::window_budget windows{tunnel::kGatewayWindowBudget};  // growth of every tunnel's windows
  tunnel::admission adm;
  std::mutex machines_mu;
  std::map<std::string, machine_slot> machines;  // guarded by machines_mu
  std::atomic<bool> stopping{false};
};

// The right to decide who serves `machine`, held by a tunnel that passed CHAP until it has
// been refused or installed; released by the destructor, whatever way the decision ends.
class machine_claim {
 public:
  machine_claim(shared_ctx& ctx, std::string machine) : ctx_(ctx), machine_(std::move(machine)) {}
  ~machine_claim() {
    if (!held_) return;
    std::lock_guard lock(ctx_.machines_mu);
    auto it = ctx_.machines.find(machine_);
    if (it == ctx_.machines.end()) return;
    it->second.deciding = false;
    if (it->second.live.expired()) ctx_.machines.erase(it);
  }
  machine_claim(const machine_claim&) = delete;
  machine_claim& operator=(const machine_claim&) = delete;

  bool try_take() {
    std::lock_guard lock(ctx_.machines_mu);
    auto& s = ctx_.machines[machine_];
    if (s.deciding) return false;
    s.deciding = held_ = true;
    return true;
  }
  [[nodiscard]] std::shared_ptr<tunnel_connection> live() const {
    std::lock_guard lock(ctx_.machines_mu);
    auto it = ctx_.machines.find(machine_);
    return it == ctx_.machines.end() ? nullptr : it->second.live.lock();
  }
  void install(std::weak_ptr<tunnel_connection> c) {
    std::lock_guard lock(ctx_.machines_mu);
    ctx_.machines[machine_].live = std::move(c);
  }
  // NOTICE tunnel_refused is rate-limited per machine: refused newcomers cannot flood it.
  bool may_notify(micros now) {
    std::lock_guard lock(ctx_.machines_mu);
    auto& s = ctx_.machines[machine_];
    if (now - s.notice_window >= tunnel::kRefusedNoticeWindowSeconds * 1'000'000LL) {
      s.notice_window = now;
      s.notices = 0;
    }
    return ++s.notices <= tunnel::kRefusedNoticesPerWindow;
  }

 private:
  shared_ctx& ctx_;
  std::string machine_;
  bool held_ = false;
};

using tunnel::kMaxQueuedBytes;

// A frame's channel is 0: a control frame (header bytes 4..7).
bool is_control_frame(const bytes& f) { return f.size() >= 8 && f[4] == 0 && f[5] == 0 && f[6] == 0 && f[7] == 0; }

enum class liveness { alive, silent, gone };

class tunnel_connection : public tunnel_link, public std::enable_shared_from_this<tunnel_connection> {
 public:
  tunnel_connection(tcp::socket sock, SSL_CTX* tls, std::string remote, std::string source,
                    std::shared_ptr<shared_ctx> ctx)
      : stream_(std::move(sock), tls, net::tls_stream::kTunnelBuffer), remote_(std::move(remote)),
        source_(std::move(source)), ctx_(std::move(ctx)), svc_(ctx_->svc), metrics_(ctx_->m), cfg_(ctx_->cfg),
        wake_(stream_.get_executor()),
        budget_(std::make_shared<tunnel::window_budget>(tunnel::kTunnelWindowBudget, &ctx_->windows)) {
    wake_.expires_at(std::chrono::steady_clock::time_point::max());
  }

  void notify(const tunnel::notice& n) override {
    post_frame(tunnel::frame_type::notice, tunnel::to_payload(n));
  }
  void end_session(const std::string& reason) override {
    post_frame(tunnel::frame_type::end, tunnel::to_payload(tunnel::reason_only{reason}), true);
  }
  std::shared_ptr<channel_link> open_channel(const std::string& scope, const std::string& access_type,
                                             const std::string& actor) override {
    auto c = std::make_shared<channel_link>();
    c->scope = scope;
    c->access_type = access_type;
    c->user = actor;
    c->session_id = session_;
    c->opened_at = system_clock::instance().now();
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
      self->queue(tunnel::frame_type::channel_open, p, id);
    });
    return c;
  }
  // From the stream sides' threads: frame here, queue, wake the writer only if it is idle.
  void channel_data(std::uint32_t id, std::span<const std::uint8_t> d) override {
    for (std::size_t off = 0; off < d.size(); off += tunnel::kMaxDataPayload) {
      auto n = std::min(tunnel::kMaxDataPayload, d.size() - off);
      push(tunnel::encode(tunnel::frame_type::data, id, d.subspan(off, n)), false);
    }
  }
  void channel_window(std::uint32_t id, std::uint32_t increment) override {
    push(tunnel::encode_window(id, increment), false);
  }
  void channel_eof(std::uint32_t id) override { push(tunnel::encode(tunnel::frame_type::eof, id, {}), false); }
  void channel_close(std::uint32_t id, const std::string& reason) override {
    asio::post(stream_.get_executor(),
               [self = shared_from_this(), id, reason] { self->close_channel(id, reason, close_how::ours); });
  }

  void close_now() {
    asio::post(stream_.get_executor(), [self = shared_from_this()] {
      self->closing_ = true;
      self->wake_.cancel();
    });
  }

  // --- what a newcomer of the same machine asks of this tunnel (from its own strand) ---
  [[nodiscard]] const std::string& remote() const { return remote_; }
  [[nodiscard]] bool closing() const { return closing_; }
  [[nodiscard]] std::uint64_t frames_in() const { return frames_in_; }
  [[nodiscard]] bool finished() const { return finished_; }
  // A PING: any frame that comes back proves the agent alive.
  void send_probe() {
    asio::post(stream_.get_executor(), [self = shared_from_this()] {
      if (!self->closing_) self->queue(tunnel::frame_type::ping, {});
    });
  }
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
      self->closing_ = true;
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

  void post_frame(tunnel::frame_type t, bytes payload, bool close_after = false) {
    asio::post(stream_.get_executor(), [self = shared_from_this(), t, p = std::move(payload), close_after] {
      self->queue(t, p);
      if (close_after) self->closing_ = true;
    });
  }
  // On the strand only.
  void queue(tunnel::frame_type t, std::span<const std::uint8_t> payload, std::uint32_t channel = 0) {
    push(tunnel::encode(t, channel, payload), true);
  }
  // From any thread (`on_strand` says whether this is the connection's strand).
  void push(bytes frame, bool on_strand) {
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
    if (wake) wake_writer(on_strand);
  }
  // PING: at most one PONG is ever pending; later PINGs share it.
  void request_pong() {
    bool wake = false;
    {
      std::lock_guard lock(out_mu_);
      pong_due_ = true;
      wake = wake_writer_locked();
    }
    if (wake) wake_writer(true);
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
  void wake_writer(bool on_strand) {
    if (on_strand)
      wake_.cancel();
    else
      asio::post(stream_.get_executor(), [self = shared_from_this()] { self->wake_.cancel(); });
  }
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
    if (send_close) queue(tunnel::frame_type::close, {}, id);
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
  asio::awaitable<liveness> probe(std::shared_ptr<tunnel_connection> live);
  asio::awaitable<void> wait_finished(std::shared_ptr<tunnel_connection> old);
  asio::awaitable<bool> pong_keeps_up();
  asio::awaitable<void> serve();
  asio::awaitable<void> read_frames();
  asio::awaitable<void> finish();
  asio::awaitable<void> abandon_challenge();
  asio::awaitable<void> journal_close();
  // Journals `e`: always once the machine's secret was proven; before that only while this
  // source is within its journal budget (the connection is then counted into a summary).
  asio::awaitable<void> journal_pre(journal::entry e);
  asio::awaitable<void> journal_connect_late();
  void teardown();
  void release() noexcept;
  bool quiet();
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
    closing_ = true;
  }
  // FAILURE with `reason`, then close (as refused).
  void send_failure(int id, std::string reason, std::string close_reason, std::int64_t retry_after = 0) {
    tunnel::failure f;
    f.id = id;
    f.reason = std::move(reason);
    f.retry_after_seconds = retry_after;
    queue(tunnel::frame_type::failure, tunnel::to_payload(f));
    set_close(std::move(close_reason), journal::outcome::denied);
    closing_ = true;
  }

  net::tls_stream stream_;
  std::string remote_;
  std::string source_;  // the admission key of remote_'s address
  std::shared_ptr<shared_ctx> ctx_;
  service& svc_;
  metrics& metrics_;
  const tunnel_config& cfg_;
  asio::steady_timer wake_;
  std::mutex out_mu_;
  std::deque<bytes> out_;         // guarded by out_mu_
  std::size_t out_bytes_ = 0;     // guarded by out_mu_: all of out_
  std::size_t control_bytes_ = 0; // guarded by out_mu_: the channel-0 frames in out_
  bool pong_due_ = false;         // guarded by out_mu_: a PONG to send
  bool pong_in_flight_ = false;   // guarded by out_mu_: the writer is writing one
  bool writer_idle_ = false;      // guarded by out_mu_: the writer waits on wake_
  bool overflow_ = false;         // guarded by out_mu_
  std::atomic<bool> closing_{false};
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
  std::mutex ch_mu_;  // channels_ is read by stream sides on other strands
  std::map<std::uint32_t, std::shared_ptr<channel_link>> channels_;
  std::set<std::uint32_t> recently_closed_;
  std::shared_ptr<tunnel::window_budget> budget_;  // growth of this tunnel's receive windows
  std::uint32_t next_channel_ = 1;
  bool closing_flag_ = false;
};

// A frame on a channel we opened: its flow (protocol/channel_flow.hpp) judges it under the
// channel's mutex, and the verdict is carried out here (docs/protocol.md §8).
bool tunnel_connection::on_channel_frame(tunnel::frame& f) {
  const auto id = f.header.channel;
  const auto type = f.header.type;
  auto c = find_channel(id);
  if (!c) {
    bool late;
    {
      std::lock_guard lock(ch_mu_);
      late = recently_closed_.count(id) > 0;
    }
    if (late) return true;  // frames in flight when we closed it
    protocol_error("unknown_channel", "a frame for a channel that is not open");
    return false;
  }
  std::string why;
  std::uint32_t value = 0;
  if (type == tunnel::frame_type::channel_accept) {
    auto a = tunnel::parse_channel_accept(f.payload, why);
    if (!a) {
      protocol_error("bad_channel_accept", why);
      return false;
    }
    value = a->window;
  } else if (type == tunnel::frame_type::channel_reject) {
    auto r = tunnel::parse_reason(f.payload, why);
    why = "refused by the customer's agent: " + (r ? r->reason : why);
  } else if (type == tunnel::frame_type::data) {
    value = static_cast<std::uint32_t>(f.payload.size());
  } else if (type == tunnel::frame_type::window) {
    value = tunnel::window_increment(f);
  }
  tunnel::channel_verdict v;
  {
    std::lock_guard lock(c->mu);
    v = c->flow.on_frame(type, value);
    if (v == tunnel::channel_verdict::deliver && !c->closed) {  // closed: the stream side left
      c->bytes_from_agent += static_cast<std::int64_t>(f.payload.size());
      c->inbox.push_back(std::move(f.payload));
    }
  }
  switch (v) {
    case tunnel::channel_verdict::ignore:
      return true;
    case tunnel::channel_verdict::deliver:
    case tunnel::channel_verdict::credit:
    case tunnel::channel_verdict::eof:
      c->wake();
      return true;
    case tunnel::channel_verdict::closed:  // CHANNEL_REJECT (our CLOSE's answer never gets here)
      close_channel(id, type == tunnel::frame_type::channel_reject ? why : "closed by the customer's side",
                    close_how::silent);
      return true;
    case tunnel::channel_verdict::answer_close:
      close_channel(id, "closed by the customer's side", close_how::answer);
      return true;
    case tunnel::channel_verdict::window_exceeded:
      protocol_error("window_exceeded", type == tunnel::frame_type::window
                                            ? "WINDOW beyond 16 MiB of credit"
                                            : "DATA beyond the window or after EOF");
      return false;
    case tunnel::channel_verdict::unexpected:
      break;
  }
  protocol_error("unexpected", "unexpected " + std::string(tunnel::name_of(type)) + " on a channel");
  return false;
}


asio::awaitable<void> tunnel_connection::writer() {
  auto self = shared_from_this();
  std::vector<bytes> batch;
  std::vector<asio::const_buffer> bufs;
  for (;;) {
    // Everything queued (up to 1 MiB) in one write: fewer TLS records and system calls.
    batch.clear();
    bufs.clear();
    bool wait = false, overflow = false;
    {
      std::lock_guard lock(out_mu_);
      overflow = overflow_;
      if (!overflow) take_batch_locked(batch);
      if (batch.empty() && !closing_ && !overflow) {
        writer_idle_ = true;  // push() wakes us; until this wait begins it cannot run here
        wait = true;
      }
    }
    if (overflow) {
      // ERROR is not sent: it would wait behind what the agent does not read.
      set_close("not reading: the send queue toward the agent is full", journal::outcome::error);
      closing_ = true;
      break;
    }
    if (!batch.empty()) {
      for (auto& b : batch) bufs.emplace_back(asio::buffer(b));
      auto ec = co_await stream_.write(bufs);
      std::lock_guard lock(out_mu_);
      pong_in_flight_ = false;
      if (ec) {
        closing_ = true;
        out_.clear();
        out_bytes_ = control_bytes_ = 0;
        break;
      }
      continue;
    }
    if (!wait) break;  // closing, and everything queued is written
    wake_.expires_at(std::chrono::steady_clock::time_point::max());
    co_await wake_.async_wait(use_tuple);
    {
      std::lock_guard lock(out_mu_);
      writer_idle_ = false;
    }
  }
  writer_done_ = true;
  // Closing the socket ends the reader's pending read too.
  stream_.expires_after(std::chrono::seconds(2));
  co_await stream_.shutdown();
}

bool tunnel_connection::quiet() {
  if (secret_proven_) return false;
  if (!quiet_) quiet_ = !ctx_->adm.journal_individually(source_, system_clock::instance().now());
  return *quiet_;
}

asio::awaitable<void> tunnel_connection::journal_pre(journal::entry e) {
  if (quiet()) co_return;
  (void)co_await async_append(svc_.journal(), std::move(e), asio::use_awaitable);
}

std::string tunnel_connection::connect_detail() const {
  // The scope list (up to 64 names) is recorded once the machine has authenticated, with
  // tunnel.auth: before that it is only a claim, and would cost the journal 5 KB a try.
  const auto& h = hs_->hello_message();
  return json::serialize(json::object{{"agent", h.agent}, {"scopes_offered", h.scopes.size()}, {"version", h.version}});
}

// A connection journaled only in a summary so far proved the machine's secret: from now on
// it is journaled entry by entry, starting with the tunnel.connect it skipped.
asio::awaitable<void> tunnel_connection::journal_connect_late() {
  if (connect_journaled_) co_return;
  connect_journaled_ = true;
  (void)co_await async_append(svc_.journal(), entry(std::string("tunnel.connect"), journal::outcome::ok, connect_detail()),
                              asio::use_awaitable);
}

asio::awaitable<bool> tunnel_connection::on_hello_frame(const tunnel::frame& f) {
  std::string why;
  auto h = tunnel::parse_hello(f.payload, why);
  if (!h) {
    auto e = entry(std::string("tunnel.connect"), journal::outcome::error,
                   json::serialize(json::object{{"reason", "invalid HELLO: " + why}}));
    co_await journal_pre(std::move(e));
    protocol_error("bad_hello", why);
    co_return false;
  }
  machine_ = h->machine;
  const auto now = system_clock::instance().now();
  if (!ctx_->adm.on_hello(source_, now)) {
    static constexpr std::string_view kTooMany = "too many HELLOs from this address";
    auto e = entry(std::string("tunnel.connect"), journal::outcome::denied,
                   json::serialize(json::object{{"reason", kTooMany}, {"agent", h->agent}}));
    co_await journal_pre(std::move(e));
    summary_reason_ = kTooMany;
    send_failure(0, fmt::format("too many connection attempts from this address; retry in {} s", tunnel::kSourceWindowSeconds),
                 std::string(kTooMany));
    co_return false;
  }
  tunnel::gateway_handshake::step step;
  {
    std::lock_guard lock(ctx_->limiter_mu);
    step = hs_->on_hello(*h, now);
  }
  if (!quiet()) {
    connect_journaled_ = true;
    (void)co_await async_append(svc_.journal(), entry(std::string("tunnel.connect"), journal::outcome::ok, connect_detail()),
                                asio::use_awaitable);
  }
  if (step.send_challenge) {
    queue(tunnel::frame_type::challenge, tunnel::to_payload(*step.send_challenge));
    co_return true;
  }
  co_return co_await on_chap_denied(std::move(step));
}

asio::awaitable<bool> tunnel_connection::authenticate_step(const tunnel::frame& f) {
  using state = tunnel::gateway_handshake::state;
  if (f.header.type == tunnel::frame_type::hello && hs_->current() == state::await_hello)
    co_return co_await on_hello_frame(f);
  if (f.header.type != tunnel::frame_type::response || hs_->current() != state::challenged) {
    protocol_error("unexpected", "unexpected " + std::string(tunnel::name_of(f.header.type)) + " before authentication");
    co_return false;
  }
  std::string why;
  auto r = tunnel::parse_response(f.payload, why);
  if (!r) {
    co_await abandon_challenge();  // a challenge answered with garbage is not answered
    protocol_error("bad_response", why);
    co_return false;
  }
  tunnel::gateway_handshake::step step;
  {
    std::lock_guard lock(ctx_->limiter_mu);
    step = hs_->on_response(*r, system_clock::instance().now());
  }
  if (step.auth_ok && *step.auth_ok) co_return co_await on_chap_ok(std::move(step));
  co_return co_await on_chap_denied(std::move(step));
}

// A CHAP failure: journaled (and a lock-out it started). A lock-out of an enrolled machine is
// always journaled; the rest of an unauthenticated connection only within its source's budget.
asio::awaitable<void> tunnel_connection::journal_denied(tunnel::gateway_handshake::step step) {
  summary_reason_ = step.reason;
  auto e = entry(std::string("tunnel.auth"), journal::outcome::denied,
                 json::serialize(json::object{{"reason", step.reason}, {"mechanism", hs_->mechanism()}}));
  co_await journal_pre(std::move(e));
  if (!step.lockout_started) co_return;
  auto lock_entry = entry(std::string("tunnel.auth"), journal::outcome::denied,
                          std::string(R"({"lockout":true,"reason":"too many failed authentications"})"));
  if (hs_->known())
    (void)co_await async_append(svc_.journal(), std::move(lock_entry), asio::use_awaitable);
  else
    co_await journal_pre(std::move(lock_entry));
}

// Denied: journal, answer FAILURE, close.
asio::awaitable<bool> tunnel_connection::on_chap_denied(tunnel::gateway_handshake::step step) {
  co_await journal_denied(step);
  const auto f = step.send_failure.value_or(tunnel::failure{0, "authentication failed", 0});
  send_failure(f.id, f.reason, "authentication failed", f.retry_after_seconds);
  co_return false;
}

// The connection ends while a CHALLENGE waits for its answer: a failure for the lock-out.
asio::awaitable<void> tunnel_connection::abandon_challenge() {
  if (!hs_ || hs_->current() != tunnel::gateway_handshake::state::challenged) co_return;
  tunnel::gateway_handshake::step step;
  {
    std::lock_guard lock(ctx_->limiter_mu);
    step = hs_->on_abandon(system_clock::instance().now());
  }
  co_await journal_denied(std::move(step));
}

tunnel::notice tunnel_connection::refused_notice() const {
  tunnel::notice n;
  n.event = "tunnel_refused";
  n.ts = format_rfc3339(system_clock::instance().now());
  n.actor = remote_;
  n.reason =
      "another agent authenticated with this machine's secret and was refused, because this tunnel is live; "
      "if you did not start it, someone else holds this machine's profile";
  return n;
}

// Refused after a correct CHAP answer (not a failure for the lock-out): journaled before the
// answer, always (the secret was proven), with the tunnel.connect it may have skipped.
asio::awaitable<bool> tunnel_connection::refuse_after_chap(int id, std::string reason, json::object detail,
                                                           std::string answer) {
  co_await journal_connect_late();
  detail["reason"] = reason;
  detail["mechanism"] = hs_->mechanism();
  (void)co_await async_append(svc_.journal(), entry(std::string("tunnel.auth"), journal::outcome::denied, json::serialize(detail)),
                              asio::use_awaitable);
  send_failure(id, std::move(answer), "refused: " + reason);
  co_return false;
}

// Asks `live` for a sign of life (docs/protocol.md §9.1): a PING, then up to
// kLivenessProbeSeconds for any frame from its agent.
asio::awaitable<liveness> tunnel_connection::probe(std::shared_ptr<tunnel_connection> live) {
  const auto before = live->frames_in();
  live->send_probe();
  asio::steady_timer t(stream_.get_executor());
  const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(tunnel::kLivenessProbeSeconds);
  for (;;) {
    if (live->closing()) co_return liveness::gone;
    if (live->frames_in() != before) co_return liveness::alive;
    if (std::chrono::steady_clock::now() >= until) co_return liveness::silent;
    t.expires_after(kPoll);
    co_await t.async_wait(use_tuple);
  }
}

// Until `old` has journaled its tunnel.close (bounded): the journal then tells the old
// tunnel's end before the new one's start.
asio::awaitable<void> tunnel_connection::wait_finished(std::shared_ptr<tunnel_connection> old) {
  asio::steady_timer t(stream_.get_executor());
  const auto until = std::chrono::steady_clock::now() + kReplaceWait;
  while (!old->finished() && std::chrono::steady_clock::now() < until) {
    t.expires_after(kPoll);
    co_await t.async_wait(use_tuple);
  }
}

asio::awaitable<bool> tunnel_connection::journal_auth_ok(int id, std::string replaced) {
  co_await journal_connect_late();
  json::array scopes;
  for (auto& s : hs_->hello_message().scopes) scopes.emplace_back(s.name);
  json::object d{{"mechanism", hs_->mechanism()}, {"scopes", std::move(scopes)}};
  if (!replaced.empty()) d["replaced"] = replaced;
  // Journal before access: SUCCESS is sent only once tunnel.auth is durable.
  auto rec = co_await async_append(svc_.journal(), entry(std::string("tunnel.auth"), journal::outcome::ok, json::serialize(d)),
                                   asio::use_awaitable);
  if (rec.ok()) co_return true;
  tunnel::failure f;
  f.id = id;
  f.reason = "the gateway cannot record this session now";
  f.retry_after_seconds = 60;
  queue(tunnel::frame_type::failure, tunnel::to_payload(f));
  set_close("journal unavailable", journal::outcome::error);
  closing_ = true;
  co_return false;
}

// CHAP succeeded. One live tunnel per machine (docs/protocol.md §9.1), decided by one
// newcomer at a time: with no live tunnel, this one serves the machine's session; with a live
// one that answers a probe, this one is refused; with a silent one, this one replaces it.
asio::awaitable<bool> tunnel_connection::on_chap_ok(tunnel::gateway_handshake::step step) {
  secret_proven_ = true;
  const int id = step.send_success->id;
  stream_.expires_after(std::chrono::milliseconds(cfg_.handshake_timeout_ms));  // room for the probe
  machine_claim claim(*ctx_, machine_);
  asio::steady_timer t(stream_.get_executor());
  const auto until = std::chrono::steady_clock::now() + kClaimWait;
  while (!claim.try_take()) {
    if (closing_ || std::chrono::steady_clock::now() >= until)
      co_return co_await refuse_after_chap(id, std::string("concurrent"), {},
                                                     std::string("another tunnel of this machine is being set up; retry"));
    t.expires_after(kPoll);
    co_await t.async_wait(use_tuple);
  }
  stream_.expires_after(std::chrono::milliseconds(cfg_.handshake_timeout_ms));
  std::string replaced;
  if (auto live = claim.live()) {
    auto state = liveness::gone;
    if (!live->closing()) state = co_await probe(live);
    if (state == liveness::alive) {
      json::object detail{{"live_source", live->remote()}};
      co_await refuse_after_chap(id, std::string("duplicate"), std::move(detail),
                                 std::string("this machine already has a live tunnel (from ") + live->remote() +
                                     "); stop that agent first");
      if (claim.may_notify(system_clock::instance().now())) live->notify(refused_notice());
      co_return false;
    }
    if (state == liveness::silent) {
      replaced = live->remote();
      live->replace_by(remote_);
    }
    co_await wait_finished(live);
  }
  if (!ctx_->adm.on_authenticated(source_))
    co_return co_await refuse_after_chap(id, std::string("tunnel limit"), {},
                                                   std::string("the gateway has reached its tunnel limit; retry later"));
  counted_authenticated_ = true;
  if (!co_await journal_auth_ok(id, replaced)) co_return false;
  std::vector<std::string> scopes;
  for (auto& s : hs_->hello_message().scopes) scopes.push_back(s.name);
  session_ = svc_.tunnel_authenticated(machine_, scopes, shared_from_this());
  claim.install(weak_from_this());
  step.send_success->session = session_;
  authenticated_ = true;
  queue(tunnel::frame_type::success, tunnel::to_payload(*step.send_success));
  stream_.expires_after(std::chrono::milliseconds(cfg_.dead_peer_ms));
  co_return true;
}

asio::awaitable<bool> tunnel_connection::on_frame(tunnel::frame& f) {
  if (!authenticated_) co_return co_await authenticate_step(f);
  std::string why;
  stream_.expires_after(std::chrono::milliseconds(cfg_.dead_peer_ms));
  switch (f.header.type) {
    case tunnel::frame_type::ping:
      if (!ping_allowed()) {
        protocol_error("ping_flood", fmt::format("more than {} PINGs in {} s: the agent floods or does not read",
                                                 tunnel::kMaxPingsPerWindow, tunnel::kPingWindowSeconds));
        co_return false;
      }
      request_pong();
      co_return true;
    case tunnel::frame_type::pong:
      co_return true;
    case tunnel::frame_type::key_offer: {
      auto k = tunnel::parse_key_offer(f.payload, why);
      if (!k) {  // a malformed key (length, alphabet, check symbol) is a protocol error
        protocol_error("bad_key_offer", why);
        co_return false;
      }
      auto expires = co_await async_key(svc_, session_, k->key, k->expires_in * 1'000'000, remote_, asio::use_awaitable);
      if (!expires) {
        tunnel::error_message em;
        em.code = std::string("key_refused");
        em.message = std::string("the gateway could not record the key");
        queue(tunnel::frame_type::error, tunnel::to_payload(em));
        co_return true;
      }
      queue(tunnel::frame_type::key_ack, tunnel::to_payload(tunnel::key_ack{format_rfc3339(*expires)}));
      co_return true;
    }
    case tunnel::frame_type::stop: {
      stopped_by_customer_ = true;
      co_await async_stop(svc_, session_, remote_, asio::use_awaitable);
      set_close("stopped by the customer", journal::outcome::ok);
      closing_ = true;
      co_return false;
    }
    case tunnel::frame_type::error: {
      auto e = tunnel::parse_error(f.payload, why);
      set_close(std::string("agent error: ") + (e ? e->code : std::string("unreadable")), journal::outcome::error);
      closing_ = true;
      co_return false;
    }
    default:
      if (f.header.channel != 0) co_return on_channel_frame(f);
      protocol_error("unexpected", "unexpected " + std::string(tunnel::name_of(f.header.type)));
      co_return false;
  }
}

// After a read that held PINGs: true while their PONG gets written. The writer gets its turn
// first (a read that finds data at once does not yield); if the PONG is still unwritten after
// that, the agent is not taking what we send, and a run of such reads closes the tunnel.
asio::awaitable<bool> tunnel_connection::pong_keeps_up() {
  if (pong_pending()) co_await asio::post(stream_.get_executor(), asio::use_awaitable);
  if (!pong_pending()) {
    stalled_ping_reads_ = 0;
    co_return true;
  }
  co_return ++stalled_ping_reads_ <= tunnel::kMaxStalledPingReads;
}

asio::awaitable<void> tunnel_connection::read_frames() {
  tunnel::decoder dec;
  std::array<std::uint8_t, 16 * 1024> buf{};
  while (!closing_) {
    auto [ec, n] = co_await stream_.read_some(asio::buffer(buf));
    if (ec) {
      if (ec == asio::error::timed_out)
        set_close(authenticated_ ? "no frame from the agent for too long" : "handshake timed out", journal::outcome::error);
      else
        set_close("connection lost", journal::outcome::ok);
      co_return;
    }
    std::size_t used = 0;
    bool pinged = false;
    while (used < n) {
      used += dec.feed(std::span<const std::uint8_t>(buf.data() + used, n - used));
      if (dec.error() != tunnel::decode_error::none) {
        protocol_error("bad_frame", std::string(tunnel::describe(dec.error())));
        co_return;
      }
      while (auto f = dec.next()) {
        ++frames_in_;
        pinged = pinged || f->header.type == tunnel::frame_type::ping;
        if (!(co_await on_frame(*f))) co_return;
      }
    }
    if (pinged && authenticated_ && !(co_await pong_keeps_up())) {
      set_close("not reading: it sends PINGs but does not take the answers", journal::outcome::error);
      co_return;
    }
  }
}

asio::awaitable<void> tunnel_connection::serve() {
  stream_.expires_after(std::chrono::milliseconds(cfg_.handshake_timeout_ms));
  auto hec = co_await stream_.handshake(true);
  const unsigned char* alpn = nullptr;
  unsigned alpn_len = 0;
  if (!hec) SSL_get0_alpn_selected(stream_.native_handle(), &alpn, &alpn_len);
  if (hec || std::string_view(reinterpret_cast<const char*>(alpn), alpn_len) != tunnel::kAlpn) {
    ++metrics_.tls_handshake_failures;  // counted, not journaled (docs/protocol.md §11)
    co_return;
  }
  bytes exporter(tunnel::kExporterBytes);
  if (SSL_export_keying_material(stream_.native_handle(), exporter.data(), exporter.size(),
                                 tunnel::kExporterLabel.data(), tunnel::kExporterLabel.size(), nullptr, 0, 0) != 1) {
    // Never authenticate with a made-up channel binding.
    set_close("TLS exporter unavailable", journal::outcome::error);
    co_return;
  }
  hs_.emplace(
      exporter, [this](const std::string& m) { return svc_.machine_record_for(m); }, ctx_->limiter,
      [](std::span<std::uint8_t> out) { randombytes_buf(out.data(), out.size()); },
      [this](const std::string& m) {
        auto h = from_hex(svc_.hmac().hash_of("chap-decoy-salt:" + m)).value_or(bytes(32));
        return bytes(h.begin(), h.begin() + 16);
      });
  writer_started_ = true;
  asio::co_spawn(stream_.get_executor(), writer(), [self = shared_from_this()](std::exception_ptr e) {
    if (!e) return;
    log_end("tunnel writer " + self->remote_, e);
    self->writer_done_ = true;
    self->closing_ = true;
    self->stream_.close();
  });
  co_await read_frames();
}

// Once per connection, on the strand: its channels end, and the service learns that this
// tunnel no longer serves its session.
void tunnel_connection::teardown() {
  if (torn_down_) return;
  torn_down_ = true;
  closing_ = true;
  wake_.cancel();
  close_all_channels("the tunnel closed");
  if (!session_.empty()) svc_.tunnel_closed(session_, this);
}

asio::awaitable<void> tunnel_connection::journal_close() {
  if (machine_.empty() && close_outcome_ == journal::outcome::ok) co_return;  // TLS only, nothing said
  if (quiet()) {
    auto why = summary_reason_.empty() ? reason_category(close_reason_) : summary_reason_;
    ctx_->adm.suppressed(source_, why, machine_, system_clock::instance().now());
    co_return;
  }
  auto e = entry(std::string("tunnel.close"), close_outcome_, json::serialize(json::object{{"reason", close_reason_}}));
  (void)co_await async_append(svc_.journal(), std::move(e), asio::use_awaitable);
}

asio::awaitable<void> tunnel_connection::finish() {
  closing_ = true;
  wake_.cancel();
  co_await abandon_challenge();
  teardown();
  co_await journal_close();
  finished_ = true;
  if (!writer_started_) {
    stream_.close();
    co_return;
  }
  // Let the writer flush a final FAILURE/ERROR/END, bounded by its own deadline; then close
  // whatever is left (a writer blocked on an agent that does not read).
  asio::steady_timer t(stream_.get_executor());
  for (int i = 0; i < 100 && !writer_done_; ++i) {
    t.expires_after(std::chrono::milliseconds(20));
    co_await t.async_wait(use_tuple);
  }
  if (!writer_done_) stream_.close();
}

// The last word on a connection, from accounting_guard: slots and counters back, and, if
// finish() never ran to its end (an exception in it, or the frame destroyed at shutdown),
// the teardown and a best-effort tunnel.close.
void tunnel_connection::release() noexcept {
  if (released_) return;
  released_ = true;
  try {
    if (!finished_) {
      teardown();
      if (!machine_.empty() && !quiet()) {
        auto reason = close_set_ ? close_reason_ : std::string("the tunnel ended without closing normally");
        auto e = entry("tunnel.close", journal::outcome::error, json::serialize(json::object{{"reason", reason}}));
        svc_.journal().append(std::move(e), [](const journal::append_result&) {});
      }
      finished_ = true;
    }
  } catch (const std::exception& e) {
    log::error("tunnel {}: release: {}", remote_, e.what());
  } catch (...) {
    log::error("tunnel {}: release failed", remote_);
  }
  ctx_->adm.on_close(source_, counted_authenticated_);
  --metrics_.tunnels_active;
}

asio::awaitable<void> tunnel_connection::run() {
  auto self = shared_from_this();
  ++metrics_.tunnels_active;
  accounting_guard guard{this};
  try {
    co_await serve();
  } catch (const std::exception& e) {
    // Accounted and journaled like any other end; the gateway goes on.
    log::error("tunnel {}: {}", remote_, e.what());
    set_close(std::string("internal error: ") + std::string(e.what()).substr(0, 200), journal::outcome::error);
  }
  co_await finish();
}

}  // namespace

struct tunnel_server::impl {
  asio::io_context& ioc;
  std::shared_ptr<shared_ctx> ctx;
  ssl::context tls{ssl::context::tls_server};
  tcp::acceptor acceptor;
  std::mutex live_mu;
  std::vector<std::weak_ptr<tunnel_connection>> live;

  impl(asio::io_context& io, tunnel_config c, service& s, metrics& mm)
      : ioc(io), ctx(std::make_shared<shared_ctx>(s, mm, std::move(c))), acceptor(executor_for(io, ctx->cfg.strands)) {}
  static asio::any_io_executor executor_for(asio::io_context& io, bool strands) {
    if (strands) return asio::make_strand(io);
    return io.get_executor();
  }
};

namespace {

asio::awaitable<void> run_tunnel(std::shared_ptr<tunnel_connection> c) { co_await c->run(); }

// Journals the summaries of unauthenticated connections that were not journaled one by one.
void journal_summaries(shared_ctx& ctx, std::vector<tunnel::source_summary> due) {
  for (auto& s : due) {
    json::object reasons;
    for (auto& [r, n] : s.reasons) reasons[r] = n;
    json::array machines;
    for (auto& m : s.machines) machines.emplace_back(m);
    journal::entry e;
    e.kind = "tunnel.connect";
    e.actor = "agent";
    e.source = s.source;
    e.result = journal::outcome::denied;
    e.detail = json::serialize(json::object{{"summary", true},
                                            {"connections", s.connections},
                                            {"since", format_rfc3339(s.since)},
                                            {"window_seconds", tunnel::kSourceWindowSeconds},
                                            {"reasons", std::move(reasons)},
                                            {"machines", std::move(machines)}});
    ctx.svc.journal().append(std::move(e), [](const journal::append_result&) {});
  }
}

asio::awaitable<void> flush_summaries(std::shared_ptr<shared_ctx> ctx) {
  asio::steady_timer t(co_await asio::this_coro::executor);
  while (!ctx->stopping) {
    t.expires_after(std::chrono::seconds(1));
    co_await t.async_wait(use_tuple);
    if (ctx->stopping) break;
    journal_summaries(*ctx, ctx->adm.take_due(system_clock::instance().now()));
  }
}

// A connection over the limits before authentication is closed at once; journaled (or
// counted into its source's summary) like any unauthenticated connection.
void refuse_at_accept(shared_ctx& ctx, const tunnel::admission::ticket& t, const std::string& remote) {
  const std::string reason = t.v == tunnel::admission::verdict::source_full
                                 ? "too many unauthenticated connections from this address"
                                 : "too many unauthenticated connections";
  const auto now = system_clock::instance().now();
  if (!ctx.adm.journal_individually(t.source, now)) {
    ctx.adm.suppressed(t.source, reason, "", now);
    return;
  }
  journal::entry e;
  e.kind = "tunnel.connect";
  e.actor = "agent";
  e.source = remote;
  e.result = journal::outcome::denied;
  e.detail = json::serialize(json::object{{"reason", reason}});
  ctx.svc.journal().append(std::move(e), [](const journal::append_result&) {});
}

asio::awaitable<void> accept_tunnels(tunnel_server::impl* st) {
  auto ex = co_await asio::this_coro::executor;
  auto ctx = st->ctx;
  for (;;) {
    asio::any_io_executor conn_ex = ex;
    if (ctx->cfg.strands) conn_ex = asio::make_strand(ex);
    auto [ec, sock] = co_await st->acceptor.async_accept(conn_ex, use_tuple);
    if (ec == asio::error::operation_aborted || !st->acceptor.is_open()) co_return;
    if (ec) {
      asio::steady_timer t(ex, std::chrono::milliseconds(100));
      co_await t.async_wait(use_tuple);
      continue;
    }
    auto rep = sock.remote_endpoint(ec);
    if (ec) continue;  // gone already
    std::string remote = rep.address().to_string() + ":" + std::to_string(rep.port());
    auto ticket = ctx->adm.on_accept(source_key(rep.address()), system_clock::instance().now());
    if (ticket.v != tunnel::admission::verdict::admit) {
      refuse_at_accept(*ctx, ticket, remote);
      beast::error_code ignored;
      sock.close(ignored);
      continue;
    }
    sock.set_option(tcp::no_delay(true), ec);
    conn_ex = sock.get_executor();
    auto c = std::make_shared<tunnel_connection>(std::move(sock), st->tls.native_handle(), std::move(remote),
                                                 std::move(ticket.source), ctx);
    {
      std::lock_guard lock(st->live_mu);
      std::erase_if(st->live, [](auto& w) { return w.expired(); });
      st->live.push_back(c);
    }
    asio::co_spawn(conn_ex, run_tunnel(std::move(c)), [](std::exception_ptr e) { log_end("tunnel", e); });
  }
}

}  // namespace

tunnel_server::tunnel_server(asio::io_context& ioc, tunnel_config cfg, service& svc, metrics& m)
    : impl_(std::make_unique<impl>(ioc, std::move(cfg), svc, m)) {}

// Connections that ended after stop() may have left summaries: recorded now, while the journal
// is still open.
tunnel_server::~tunnel_server() {
  journal_summaries(*impl_->ctx, impl_->ctx->adm.take_due(system_clock::instance().now(), true));
}

std::string tunnel_server::start() {
  auto& st = *impl_;
  SSL_CTX* c = st.tls.native_handle();
  SSL_CTX_set_min_proto_version(c, TLS1_3_VERSION);
  SSL_CTX_set_options(c, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION);
  beast::error_code ec;
  st.tls.use_certificate_chain_file(st.ctx->cfg.cert_file, ec);
  if (ec) throw std::runtime_error("cannot load certificate " + st.ctx->cfg.cert_file + ": " + ec.message());
  st.tls.use_private_key_file(st.ctx->cfg.key_file, ssl::context::pem, ec);
  if (ec) throw std::runtime_error("cannot load private key " + st.ctx->cfg.key_file + ": " + ec.message());
  // ALPN "rsgate/1" is required: anything else fails the handshake.
  SSL_CTX_set_alpn_select_cb(
      c,
      [](SSL*, const unsigned char** out, unsigned char* outlen, const unsigned char* in, unsigned int inlen,
         void*) -> int {
        static const unsigned char want[] = {8, 'r', 's', 'g', 'a', 't', 'e', '/', '1'};
        unsigned char* sel = nullptr;
        if (SSL_select_next_proto(&sel, outlen, want, sizeof want, in, inlen) != OPENSSL_NPN_NEGOTIATED)
          return SSL_TLSEXT_ERR_ALERT_FATAL;
        *out = sel;
        return SSL_TLSEXT_ERR_OK;
      },
      nullptr);
  auto addr = asio::ip::make_address(st.ctx->cfg.host, ec);
  if (ec) throw std::runtime_error("invalid tunnel listen address " + st.ctx->cfg.host);
  tcp::endpoint ep(addr, st.ctx->cfg.port);
  st.acceptor.open(ep.protocol(), ec);
  if (!ec) st.acceptor.set_option(asio::socket_base::reuse_address(true), ec);
  if (!ec) st.acceptor.bind(ep, ec);
  if (!ec) st.acceptor.listen(asio::socket_base::max_listen_connections, ec);
  if (ec)
    throw std::runtime_error("cannot listen on " + st.ctx->cfg.host + ":" + std::to_string(st.ctx->cfg.port) +
                             " (tunnel): " + ec.message());
  auto bound = st.acceptor.local_endpoint();
  asio::co_spawn(st.acceptor.get_executor(), accept_tunnels(impl_.get()),
                 [](std::exception_ptr e) { log_end("tunnel listener", e); });
  asio::co_spawn(st.acceptor.get_executor(), flush_summaries(st.ctx),
                 [](std::exception_ptr e) { log_end("tunnel journal summaries", e); });
  return (bound.address().is_v6() ? "[" + bound.address().to_string() + "]" : bound.address().to_string()) + ":" +
         std::to_string(bound.port());
}

void tunnel_server::stop() {
  auto& st = *impl_;
  st.ctx->stopping = true;
  asio::post(st.acceptor.get_executor(), [&st] {
    beast::error_code ignored;
    st.acceptor.close(ignored);
  });
  // What the journal has not recorded one by one yet is recorded now, as summaries.
  journal_summaries(*st.ctx, st.ctx->adm.take_due(system_clock::instance().now(), true));
  std::lock_guard lock(st.live_mu);
  for (auto& w : st.live)
    if (auto c = w.lock()) c->end_session("the gateway is shutting down");
}

}  // namespace rsgate::gateway
