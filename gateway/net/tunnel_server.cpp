// See tunnel_server.hpp. Each connection is a tunnel_connection shared between its two
// coroutines (reader and writer, on one strand) and the service, which holds it weakly as
// the tunnel_link it sends notices through. Frames to the agent go through one queue guarded
// by a mutex, so the channel streams (on other threads) add DATA and WINDOW frames without a
// hand-off per frame; the writer is woken only when it said it was idle. The CHAP logic is gateway_handshake's; this file
// only moves frames, enforces deadlines, and journals tunnel.* entries — tunnel.auth before
// SUCCESS is sent (journal before access).
#include "gateway/net/tunnel_server.hpp"

#include <openssl/ssl.h>
#include <sodium.h>

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
#include "gateway/net/async_bridge.hpp"
#include "gateway/net/tls_stream.hpp"
#include "gateway/service.hpp"
#include "gateway/tunnel/handshake.hpp"
#include "gateway/tunnel/messages.hpp"
#include "gateway/tunnel/protocol.hpp"

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace ssl = asio::ssl;
namespace json = boost::json;
using tcp = asio::ip::tcp;

namespace rsgate::gateway {
namespace {

constexpr auto use_tuple = asio::as_tuple(asio::use_awaitable);

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

// What every tunnel shares: the service, the configuration, and the CHAP failure limiter
// (guarded by its mutex: tunnels run on different strands).
struct shared_ctx {
  shared_ctx(service& s, metrics& mm, tunnel_config c) : svc(s), m(mm), cfg(std::move(c)) {}
  service& svc;
  metrics& m;
  tunnel_config cfg;
  std::mutex limiter_mu;
  auth::failure_limiter limiter{auth::limit_policy{}};
  tunnel::window_budget windows{tunnel::kGatewayWindowBudget};  // growth of every tunnel's windows
};

// What the gateway holds for one agent before it gives up on it as not reading: every
// channel's initial window, the growth the agent may grant under rsgate's own policy
// (docs/protocol.md §8), and room for control frames.
constexpr std::size_t kMaxQueuedBytes =
    tunnel::kMaxChannelsPerTunnel * tunnel::kInitialWindow + tunnel::kTunnelWindowBudget + (1u << 20);

class tunnel_connection : public tunnel_link, public std::enable_shared_from_this<tunnel_connection> {
 public:
  tunnel_connection(tcp::socket sock, SSL_CTX* tls, std::string remote, shared_ctx& ctx)
      : stream_(std::move(sock), tls, net::tls_stream::kTunnelBuffer), remote_(std::move(remote)), ctx_(ctx), svc_(ctx.svc), metrics_(ctx.m),
        cfg_(ctx.cfg), wake_(stream_.get_executor()),
        budget_(std::make_shared<tunnel::window_budget>(tunnel::kTunnelWindowBudget, &ctx.windows)) {
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
    {
      std::lock_guard lock(ch_mu_);
      if (channels_.size() >= tunnel::kMaxChannelsPerTunnel || closing_flag_) {
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
    asio::post(stream_.get_executor(), [self = shared_from_this(), id, reason] { self->close_channel(id, reason, true); });
  }

  void close_now() {
    asio::post(stream_.get_executor(), [self = shared_from_this()] {
      self->closing_ = true;
      self->wake_.cancel();
    });
  }

  asio::awaitable<void> run();

 private:
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
      // Bounded by the agent's windows plus control frames: beyond that the agent is not
      // reading, so give up on it.
      if (out_bytes_ + frame.size() > kMaxQueuedBytes) {
        overflow_ = true;
        out_.clear();
        out_bytes_ = 0;
      } else {
        out_bytes_ += frame.size();
        out_.push_back(std::move(frame));
      }
      wake = writer_idle_;
      writer_idle_ = false;
    }
    if (!wake) return;
    if (on_strand)
      wake_.cancel();
    else
      asio::post(stream_.get_executor(), [self = shared_from_this()] { self->wake_.cancel(); });
  }
  asio::awaitable<void> writer();
  // On the strand: forget channel `id`, tell its stream side, and CLOSE it toward the agent.
  void close_channel(std::uint32_t id, const std::string& reason, bool send_close) {
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
    {
      std::lock_guard lock(c->mu);
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
    for (auto id : ids) close_channel(id, reason, false);
  }
  std::shared_ptr<channel_link> find_channel(std::uint32_t id) {
    std::lock_guard lock(ch_mu_);
    auto it = channels_.find(id);
    return it == channels_.end() ? nullptr : it->second;
  }
  bool on_channel_frame(tunnel::frame& f);
  asio::awaitable<bool> on_frame(tunnel::frame& f);
  asio::awaitable<bool> authenticate_step(const tunnel::frame& f);
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
    close_reason_ = std::string(code) + ": " + std::string(message);
    close_outcome_ = journal::outcome::error;
    queue(tunnel::frame_type::error, tunnel::to_payload(tunnel::error_message{std::string(code), std::string(message)}));
    closing_ = true;
  }

  net::tls_stream stream_;
  std::string remote_;
  shared_ctx& ctx_;
  service& svc_;
  metrics& metrics_;
  const tunnel_config& cfg_;
  asio::steady_timer wake_;
  std::mutex out_mu_;
  std::deque<bytes> out_;     // guarded by out_mu_
  std::size_t out_bytes_ = 0; // guarded by out_mu_
  bool writer_idle_ = false;  // guarded by out_mu_: the writer waits on wake_
  bool overflow_ = false;     // guarded by out_mu_
  bool closing_ = false;
  bool writer_done_ = false;
  std::optional<tunnel::gateway_handshake> hs_;
  std::string machine_;
  std::string session_;
  std::string close_reason_ = "closed";
  journal::outcome close_outcome_ = journal::outcome::ok;
  bool authenticated_ = false;
  bool stopped_by_customer_ = false;
  std::mutex ch_mu_;  // channels_ is read by stream sides on other strands
  std::map<std::uint32_t, std::shared_ptr<channel_link>> channels_;
  std::set<std::uint32_t> recently_closed_;
  std::shared_ptr<tunnel::window_budget> budget_;  // growth of this tunnel's receive windows
  std::uint32_t next_channel_ = 1;
  bool closing_flag_ = false;
};

bool tunnel_connection::on_channel_frame(tunnel::frame& f) {
  const auto id = f.header.channel;
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
  switch (f.header.type) {
    case tunnel::frame_type::channel_accept: {
      auto a = tunnel::parse_channel_accept(f.payload, why);
      if (!a) {
        protocol_error("bad_channel_accept", why);
        return false;
      }
      {
        std::lock_guard lock(c->mu);
        c->accepted = true;
        c->credit = a->window;
      }
      c->wake();
      return true;
    }
    case tunnel::frame_type::channel_reject: {
      auto r = tunnel::parse_reason(f.payload, why);
      close_channel(id, "refused by the customer's agent: " + (r ? r->reason : why), false);
      return true;
    }
    case tunnel::frame_type::data: {
      bool overflow = false;
      {
        std::lock_guard lock(c->mu);
        if (!c->closed) {
          if (c->inbox_bytes + f.payload.size() > c->window || c->agent_eof) {
            overflow = true;
          } else {
            c->inbox_bytes += f.payload.size();
            c->bytes_from_agent += static_cast<std::int64_t>(f.payload.size());
            c->inbox.push_back(std::move(f.payload));
          }
        }
      }
      if (overflow) {
        protocol_error("window_exceeded", "DATA beyond the window or after EOF");
        return false;
      }
      c->wake();
      return true;
    }
    case tunnel::frame_type::window: {
      const std::uint32_t inc = tunnel::window_increment(f);
      {
        std::lock_guard lock(c->mu);
        c->credit = std::min<std::int64_t>(c->credit + inc, tunnel::kMaxWindow);
      }
      c->wake();
      return true;
    }
    case tunnel::frame_type::eof: {
      {
        std::lock_guard lock(c->mu);
        c->agent_eof = true;
      }
      c->wake();
      return true;
    }
    case tunnel::frame_type::close:
      close_channel(id, "closed by the customer's side", true);
      return true;
    default:
      protocol_error("unexpected", "unexpected channel frame");
      return false;
  }
}

asio::awaitable<void> tunnel_connection::writer() {
  auto self = shared_from_this();
  std::vector<bytes> batch;
  std::vector<asio::const_buffer> bufs;
  for (;;) {
    // Everything queued (up to 1 MiB) in one write: fewer TLS records and system calls.
    batch.clear();
    bufs.clear();
    bool wait = false;
    {
      std::lock_guard lock(out_mu_);
      if (overflow_) closing_ = true;
      std::size_t total = 0;
      while (!out_.empty() && total < (1u << 20)) {
        total += out_.front().size();
        batch.push_back(std::move(out_.front()));
        out_.pop_front();
      }
      out_bytes_ -= total;
      if (batch.empty() && !closing_) {
        writer_idle_ = true;  // push() wakes us; until this wait begins it cannot run here
        wait = true;
      }
    }
    if (!batch.empty()) {
      for (auto& b : batch) bufs.emplace_back(asio::buffer(b));
      auto ec = co_await stream_.write(bufs);
      if (ec) {
        closing_ = true;
        std::lock_guard lock(out_mu_);
        out_.clear();
        out_bytes_ = 0;
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

asio::awaitable<bool> tunnel_connection::authenticate_step(const tunnel::frame& f) {
  std::string why;
  auto now = system_clock::instance().now();
  tunnel::gateway_handshake::step step;
  if (f.header.type == tunnel::frame_type::hello && hs_->current() == tunnel::gateway_handshake::state::await_hello) {
    auto h = tunnel::parse_hello(f.payload, why);
    if (!h) {
      auto e = entry(std::string("tunnel.connect"), journal::outcome::error,
                     json::serialize(json::object{{"reason", "invalid HELLO: " + why}}));
      (void)co_await async_append(svc_.journal(), std::move(e), asio::use_awaitable);
      std::string code = "bad_hello";
      protocol_error(code, why);
      co_return false;
    }
    machine_ = h->machine;
    json::array offered;
    for (auto& s : h->scopes) offered.emplace_back(s.name);
    auto e = entry(std::string("tunnel.connect"), journal::outcome::ok,
                   json::serialize(json::object{{"agent", h->agent}, {"scopes", offered}, {"version", h->version}}));
    (void)co_await async_append(svc_.journal(), std::move(e), asio::use_awaitable);
    {
      std::lock_guard lock(ctx_.limiter_mu);
      step = hs_->on_hello(*h, now);
    }
  } else if (f.header.type == tunnel::frame_type::response && hs_->current() == tunnel::gateway_handshake::state::challenged) {
    auto r = tunnel::parse_response(f.payload, why);
    if (!r) {
      std::string code = "bad_response";
      protocol_error(code, why);
      co_return false;
    }
    {
      std::lock_guard lock(ctx_.limiter_mu);
      step = hs_->on_response(*r, now);
    }
  } else {
    std::string msg = "unexpected " + std::string(tunnel::name_of(f.header.type)) + " before authentication";
    protocol_error("unexpected", msg);
    co_return false;
  }
  if (step.send_challenge) {
    queue(tunnel::frame_type::challenge, tunnel::to_payload(*step.send_challenge));
    co_return true;
  }
  if (step.auth_ok && *step.auth_ok) {
    std::vector<std::string> scopes;
    for (auto& s : hs_->hello_message().scopes) scopes.push_back(s.name);
    // Journal before access: SUCCESS is sent only once tunnel.auth is durable.
    auto e = entry(std::string("tunnel.auth"), journal::outcome::ok,
                   json::serialize(json::object{{"mechanism", hs_->mechanism()}}));
    auto rec = co_await async_append(svc_.journal(), std::move(e), asio::use_awaitable);
    if (!rec.ok()) {
      tunnel::failure fail_msg;
      fail_msg.id = step.send_success->id;
      fail_msg.reason = std::string("the gateway cannot record this session now");
      fail_msg.retry_after_seconds = 60;
      queue(tunnel::frame_type::failure, tunnel::to_payload(fail_msg));
      close_reason_ = "journal unavailable";
      close_outcome_ = journal::outcome::error;
      closing_ = true;
      co_return false;
    }
    session_ = svc_.tunnel_authenticated(machine_, scopes, shared_from_this());
    step.send_success->session = session_;
    authenticated_ = true;
    queue(tunnel::frame_type::success, tunnel::to_payload(*step.send_success));
    stream_.expires_after(std::chrono::milliseconds(cfg_.dead_peer_ms));
    co_return true;
  }
  // Denied: journal each failure (and a lock-out), answer FAILURE, close.
  auto denied = entry(std::string("tunnel.auth"), journal::outcome::denied,
                      json::serialize(json::object{{"reason", step.reason}, {"mechanism", hs_->mechanism()}}));
  (void)co_await async_append(svc_.journal(), std::move(denied), asio::use_awaitable);
  if (step.lockout_started) {
    auto lock_entry = entry(std::string("tunnel.auth"), journal::outcome::denied,
                            std::string(R"({"lockout":true,"reason":"too many failed authentications"})"));
    (void)co_await async_append(svc_.journal(), std::move(lock_entry), asio::use_awaitable);
  }
  if (step.send_failure) queue(tunnel::frame_type::failure, tunnel::to_payload(*step.send_failure));
  close_reason_ = "authentication failed";
  close_outcome_ = journal::outcome::denied;
  closing_ = true;
  co_return false;
}

asio::awaitable<bool> tunnel_connection::on_frame(tunnel::frame& f) {
  if (!authenticated_) co_return co_await authenticate_step(f);
  std::string why;
  stream_.expires_after(std::chrono::milliseconds(cfg_.dead_peer_ms));
  switch (f.header.type) {
    case tunnel::frame_type::ping:
      queue(tunnel::frame_type::pong, {});
      co_return true;
    case tunnel::frame_type::pong:
      co_return true;
    case tunnel::frame_type::key_offer: {
      auto k = tunnel::parse_key_offer(f.payload, why);
      if (!k) {
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
      close_reason_ = "stopped by the customer";
      closing_ = true;
      co_return false;
    }
    case tunnel::frame_type::error: {
      auto e = tunnel::parse_error(f.payload, why);
      close_reason_ = std::string("agent error: ") + (e ? e->code : std::string("unreadable"));
      close_outcome_ = journal::outcome::error;
      closing_ = true;
      co_return false;
    }
    default:
      if (f.header.channel != 0) co_return on_channel_frame(f);
      {
        std::string msg = "unexpected " + std::string(tunnel::name_of(f.header.type));
        protocol_error("unexpected", msg);
      }
      co_return false;
  }
}

asio::awaitable<void> tunnel_connection::run() {
  auto self = shared_from_this();
  ++metrics_.tunnels_active;
  stream_.expires_after(std::chrono::milliseconds(cfg_.handshake_timeout_ms));
  auto hec = co_await stream_.handshake(true);
  const unsigned char* alpn = nullptr;
  unsigned alpn_len = 0;
  if (!hec) SSL_get0_alpn_selected(stream_.native_handle(), &alpn, &alpn_len);
  if (hec || std::string_view(reinterpret_cast<const char*>(alpn), alpn_len) != tunnel::kAlpn) {
    ++metrics_.tls_handshake_failures;
    --metrics_.tunnels_active;
    co_return;
  }
  bytes exporter(tunnel::kExporterBytes);
  SSL_export_keying_material(stream_.native_handle(), exporter.data(), exporter.size(),
                             tunnel::kExporterLabel.data(), tunnel::kExporterLabel.size(), nullptr, 0, 0);
  hs_.emplace(
      exporter, [this](const std::string& m) { return svc_.machine_record_for(m); }, ctx_.limiter,
      [](std::span<std::uint8_t> out) { randombytes_buf(out.data(), out.size()); },
      [this](const std::string& m) {
        auto h = from_hex(svc_.hmac().hash_of("chap-decoy-salt:" + m)).value_or(bytes(32));
        return bytes(h.begin(), h.begin() + 16);
      });
  asio::co_spawn(stream_.get_executor(), writer(), asio::detached);
  tunnel::decoder dec;
  std::array<std::uint8_t, 16 * 1024> buf{};
  while (!closing_) {
    auto [ec, n] = co_await stream_.read_some(asio::buffer(buf));
    if (ec) {
      if (ec == asio::error::timed_out) {
        close_reason_ = authenticated_ ? "no frame from the agent for too long" : "handshake timed out";
        close_outcome_ = journal::outcome::error;
      } else if (!stopped_by_customer_ && close_reason_ == "closed") {
        close_reason_ = "connection lost";
      }
      break;
    }
    std::size_t used = 0;
    bool keep = true;
    while (used < n && keep) {
      used += dec.feed(std::span<const std::uint8_t>(buf.data() + used, n - used));
      if (dec.error() != tunnel::decode_error::none) {
        protocol_error("bad_frame", std::string(tunnel::describe(dec.error())));
        keep = false;
        break;
      }
      while (auto f = dec.next()) {
        if (!(co_await on_frame(*f))) {
          keep = false;
          break;
        }
      }
    }
    if (!keep) break;
  }
  closing_ = true;
  wake_.cancel();
  close_all_channels("the tunnel closed");
  if (!session_.empty()) svc_.tunnel_closed(session_, this);
  if (!machine_.empty() || close_outcome_ != journal::outcome::ok) {
    auto e = entry(std::string("tunnel.close"), close_outcome_, json::serialize(json::object{{"reason", close_reason_}}));
    (void)co_await async_append(svc_.journal(), std::move(e), asio::use_awaitable);
  }
  // Let the writer flush a final FAILURE/ERROR/END, bounded by its own deadline.
  asio::steady_timer t(stream_.get_executor());
  for (int i = 0; i < 100 && !writer_done_; ++i) {
    t.expires_after(std::chrono::milliseconds(20));
    co_await t.async_wait(use_tuple);
  }
  --metrics_.tunnels_active;
}

}  // namespace

struct tunnel_server::impl {
  asio::io_context& ioc;
  shared_ctx ctx;
  ssl::context tls{ssl::context::tls_server};
  tcp::acceptor acceptor;
  std::mutex live_mu;
  std::vector<std::weak_ptr<tunnel_connection>> live;

  impl(asio::io_context& io, tunnel_config c, service& s, metrics& mm)
      : ioc(io), ctx(s, mm, std::move(c)), acceptor(executor_for(io, ctx.cfg.strands)) {}
  static asio::any_io_executor executor_for(asio::io_context& io, bool strands) {
    if (strands) return asio::make_strand(io);
    return io.get_executor();
  }
};

namespace {

asio::awaitable<void> run_tunnel(std::shared_ptr<tunnel_connection> c) { co_await c->run(); }

asio::awaitable<void> accept_tunnels(tunnel_server::impl* st) {
  auto ex = co_await asio::this_coro::executor;
  for (;;) {
    asio::any_io_executor conn_ex = ex;
    if (st->ctx.cfg.strands) conn_ex = asio::make_strand(ex);
    auto [ec, sock] = co_await st->acceptor.async_accept(conn_ex, use_tuple);
    if (ec == asio::error::operation_aborted || !st->acceptor.is_open()) co_return;
    if (ec) {
      asio::steady_timer t(ex, std::chrono::milliseconds(100));
      co_await t.async_wait(use_tuple);
      continue;
    }
    if (static_cast<std::size_t>(st->ctx.m.tunnels_active.load()) >= st->ctx.cfg.max_tunnels) {
      beast::error_code ignored;
      sock.close(ignored);
      continue;
    }
    sock.set_option(tcp::no_delay(true), ec);
    std::string remote;
    auto rep = sock.remote_endpoint(ec);
    if (!ec) remote = rep.address().to_string() + ":" + std::to_string(rep.port());
    conn_ex = sock.get_executor();
    auto c = std::make_shared<tunnel_connection>(std::move(sock), st->tls.native_handle(), std::move(remote), st->ctx);
    {
      std::lock_guard lock(st->live_mu);
      std::erase_if(st->live, [](auto& w) { return w.expired(); });
      st->live.push_back(c);
    }
    asio::co_spawn(conn_ex, run_tunnel(std::move(c)), asio::detached);
  }
}

}  // namespace

tunnel_server::tunnel_server(asio::io_context& ioc, tunnel_config cfg, service& svc, metrics& m)
    : impl_(std::make_unique<impl>(ioc, std::move(cfg), svc, m)) {}

tunnel_server::~tunnel_server() = default;

std::string tunnel_server::start() {
  auto& st = *impl_;
  SSL_CTX* c = st.tls.native_handle();
  SSL_CTX_set_min_proto_version(c, TLS1_3_VERSION);
  SSL_CTX_set_options(c, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION);
  beast::error_code ec;
  st.tls.use_certificate_chain_file(st.ctx.cfg.cert_file, ec);
  if (ec) throw std::runtime_error("cannot load certificate " + st.ctx.cfg.cert_file + ": " + ec.message());
  st.tls.use_private_key_file(st.ctx.cfg.key_file, ssl::context::pem, ec);
  if (ec) throw std::runtime_error("cannot load private key " + st.ctx.cfg.key_file + ": " + ec.message());
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
  auto addr = asio::ip::make_address(st.ctx.cfg.host, ec);
  if (ec) throw std::runtime_error("invalid tunnel listen address " + st.ctx.cfg.host);
  tcp::endpoint ep(addr, st.ctx.cfg.port);
  st.acceptor.open(ep.protocol(), ec);
  if (!ec) st.acceptor.set_option(asio::socket_base::reuse_address(true), ec);
  if (!ec) st.acceptor.bind(ep, ec);
  if (!ec) st.acceptor.listen(asio::socket_base::max_listen_connections, ec);
  if (ec)
    throw std::runtime_error("cannot listen on " + st.ctx.cfg.host + ":" + std::to_string(st.ctx.cfg.port) +
                             " (tunnel): " + ec.message());
  auto bound = st.acceptor.local_endpoint();
  asio::co_spawn(st.acceptor.get_executor(), accept_tunnels(impl_.get()), asio::detached);
  return (bound.address().is_v6() ? "[" + bound.address().to_string() + "]" : bound.address().to_string()) + ":" +
         std::to_string(bound.port());
}

void tunnel_server::stop() {
  auto& st = *impl_;
  asio::post(st.acceptor.get_executor(), [&st] {
    beast::error_code ignored;
    st.acceptor.close(ignored);
  });
  std::lock_guard lock(st.live_mu);
  for (auto& w : st.live)
    if (auto c = w.lock()) c->end_session("the gateway is shutting down");
}

}  // namespace rsgate::gateway
