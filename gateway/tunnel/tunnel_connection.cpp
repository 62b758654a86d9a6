// The moving parts of one tunnel (see tunnel_connection.hpp): frames to the agent go through
// one queue guarded by a mutex, so the channel streams (on other threads) add DATA and WINDOW
// frames without a hand-off per frame; the writer is woken only when it said it was idle.
// Control frames are bounded apart from channel traffic, and PONGs coalesce. Frames from the
// agent are read, decoded and dispatched here (channel frames to their flow); the close is
// journaled here as tunnel.close, or counted into its source's summary.
#include "gateway/tunnel/tunnel_connection.hpp"

#include <sodium.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/json/serialize.hpp>

#include "core/log.hpp"
#include "core/timefmt.hpp"

namespace rsgate::gateway::detail {
namespace {

// How long the writer may take to flush a final FAILURE/ERROR/END once the reader ended.
constexpr auto kWriterFlush = std::chrono::seconds(2);

template <typename Token>
auto async_key(service& svc, std::string session, std::string key, micros life, std::string source, Token&& token) {
  return net::async_from_callback<void(std::optional<micros>)>(
      [&svc, session, key, life, source](auto cb) { svc.key_offered(session, key, life, source, cb); }, token);
}

template <typename Token>
auto async_stop(service& svc, std::string session, std::string source, Token&& token) {
  return net::async_from_callback<void(bool)>(
      [&svc, session, source](auto cb) { svc.customer_stopped(session, source, cb); }, token);
}

// "bad_hello: scopes has more than 64 items" -> "bad_hello": what a summary counts by.
std::string reason_category(const std::string& reason) { return reason.substr(0, std::min<std::size_t>(reason.find(':'), 48)); }

}  // namespace

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

namespace {

// What a channel frame tells its flow: CHANNEL_ACCEPT's window, DATA's length, WINDOW's
// increment (0 otherwise); CHANNEL_REJECT's reason goes into `why`, and the customer's
// decision on an `ask` scope (docs/protocol.md §8.1) into `decided`. False, with the error
// code and `why`, when CHANNEL_ACCEPT is malformed or an answer's decision does not fit the
// scope: an `ask` scope's CHANNEL_ACCEPT carries the approval, no other answer may.
bool channel_frame_value(const tunnel::frame& f, bool asks, std::string& code, std::string& why, std::uint32_t& value,
                         std::optional<tunnel::approval>& decided) {
  switch (f.header.type) {
    case tunnel::frame_type::channel_accept: {
      code = "bad_channel_accept";
      auto a = tunnel::parse_channel_accept(f.payload, why);
      if (!a) return false;
      if (asks != a->approved.has_value()) {
        why = asks ? "CHANNEL_ACCEPT on an ask scope without the customer's approval"
                   : "CHANNEL_ACCEPT carries an approval on a scope that does not ask";
        return false;
      }
      value = a->window;
      decided = a->approved;
      return true;
    }
    case tunnel::frame_type::channel_reject: {
      auto r = tunnel::parse_channel_reject(f.payload, why);
      if (r && r->decided && !asks) {
        code = "bad_channel_reject";
        why = "CHANNEL_REJECT carries a decision on a scope that does not ask";
        return false;
      }
      if (r) decided = r->decided;
      why = "refused by the customer's agent: " + (r ? r->reason : why);
      return true;
    }
    case tunnel::frame_type::data:
      value = static_cast<std::uint32_t>(f.payload.size());
      return true;
    case tunnel::frame_type::window:
      value = tunnel::window_increment(f);
      return true;
    default:
      return true;
  }
}

}  // namespace

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
  std::string code, why;
  std::uint32_t value = 0;
  std::optional<tunnel::approval> decided;
  if (!channel_frame_value(f, c->asks, code, why, value, decided)) {
    protocol_error(code, why);
    return false;
  }
  tunnel::channel_verdict v;
  {
    std::lock_guard lock(c->mu);
    v = c->flow.on_frame(type, value);
    if (decided && (v == tunnel::channel_verdict::credit || v == tunnel::channel_verdict::closed)) {
      c->decision = decided->decision;  // journaled by the stream side (channel.approval)
      c->decided_by = decided->by;
    }
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
    bool wait = false, overflow = false, key_update = false;
    {
      std::lock_guard lock(out_mu_);
      overflow = overflow_;
      if (!overflow) take_batch_locked(batch);
      if (!batch.empty()) key_update = std::exchange(key_update_due_, false);
      if (batch.empty() && !closing_ && !overflow) {
        writer_idle_ = true;  // push() wakes us (a wake-up before the wait begins is kept)
        wait = true;
      }
    }
    if (overflow) {
      // ERROR is not sent: it would wait behind what the agent does not read.
      set_close("not reading: the send queue toward the agent is full", journal::outcome::error);
      mark_closing();
      break;
    }
    if (!batch.empty()) {
      for (auto& b : batch) bufs.emplace_back(asio::buffer(b));
      // A rekey (tunnel_rekey.cpp): the KeyUpdate leaves with this write, before REKEY; no
      // other write can come between, since this one starts before the writer yields.
      if (key_update) key_update_failed_ = !stream_.request_key_update();
      auto ec = co_await stream_.write(bufs);
      std::lock_guard lock(out_mu_);
      pong_in_flight_ = false;
      if (ec) {
        mark_closing();
        out_.clear();
        out_bytes_ = control_bytes_ = 0;
        break;
      }
      continue;
    }
    if (!wait) break;  // closing, and everything queued is written
    co_await wake_.wait();
    {
      std::lock_guard lock(out_mu_);
      writer_idle_ = false;
    }
  }
  mark_writer_done();
  // Closing the socket ends the reader's pending read too.
  stream_.expires_after(std::chrono::seconds(2));
  co_await stream_.shutdown();
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
    case tunnel::frame_type::response:  // the answer to a re-challenge (docs/protocol.md §6)
      co_return co_await on_rechallenge_response(f);
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
      const bool ended = co_await async_stop(svc_, session_, remote_, asio::use_awaitable);
      set_close("stopped by the customer", journal::outcome::ok);
      if (ended && !closing_) {  // the receipt follows once the end is durable (deliver_receipt)
        await_receipt();
        co_return true;
      }
      mark_closing();
      co_return false;
    }
    case tunnel::frame_type::receipt_ack: {
      auto a = tunnel::parse_receipt_ack(f.payload, why);
      if (!a || !receipts_out_.erase(a->session)) {
        protocol_error(a ? "unexpected" : "bad_receipt_ack",
                       a ? "RECEIPT_ACK for a receipt this tunnel did not send" : why);
        co_return false;
      }
      svc_.receipt_acknowledged(machine_, a->session);
      if (ending_ && a->session == session_) end_receipt_wait();  // the ended session's own
      co_return true;
    }
    case tunnel::frame_type::error: {
      auto e = tunnel::parse_error(f.payload, why);
      set_close(std::string("agent error: ") + (e ? e->code : std::string("unreadable")), journal::outcome::error);
      mark_closing();
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

// Reads straight into the decoder (the rest of a header, then the payload's own buffer), so
// the connection holds no read buffer of its own and a DATA payload is copied once, by
// SSL_read. Before it sleeps, a tunnel without channels gives back its TLS buffers: an idle
// tunnel costs little memory however long it stays (docs/performance.md, scale).
asio::awaitable<void> tunnel_connection::read_frames() {
  tunnel::decoder dec;
  bool pinged = false;  // frames read since the last sleep held a PING
  while (!closing_) {
    if (auto f = dec.next()) {
      ++frames_in_;
      if (probe_waiting_) changed_.notify_all();  // a newcomer's probe waits for any frame
      pinged = pinged || f->header.type == tunnel::frame_type::ping;
      if (!(co_await on_frame(*f))) co_return;
      continue;
    }
    if (dec.error() != tunnel::decode_error::none) {
      protocol_error("bad_frame", std::string(tunnel::describe(dec.error())));
      co_return;
    }
    auto room = dec.room();
    auto got = stream_.read_now(asio::buffer(room.data(), room.size()));
    if (got.would_block) {
      // Everything there was is read.
      if (std::exchange(pinged, false) && authenticated_) {
        const bool keeps_up = co_await pong_keeps_up();  // not inside `&&`: GCC 12 miscompiles that
        if (!keeps_up) {
          set_close("not reading: it sends PINGs but does not take the answers", journal::outcome::error);
          co_return;
        }
        if (closing_) break;
      }
      const bool idle = authenticated_ && open_channels() == 0;
      stream_.set_idle(idle);
      if (idle) (void)stream_.release_buffers();
      std::tie(got.ec, got.n) = co_await stream_.read_some(asio::buffer(room.data(), room.size()));
    }
    if (got.ec) {
      if (got.ec == asio::error::timed_out)
        set_close(authenticated_ ? fmt::format("no frame from the agent for {} s: the tunnel is dead", cfg_.dead_peer_ms / 1000)
                                 : std::string("handshake timed out"),
                  journal::outcome::error);
      else
        set_close("connection lost", journal::outcome::ok);
      co_return;
    }
    dec.commit(got.n);
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
  stream_.count_key_updates();  // for tunnel.reauth's detail (docs/protocol.md §6)
  writer_started_ = true;
  asio::co_spawn(stream_.get_executor(), writer(), [self = shared_from_this()](std::exception_ptr e) {
    if (!e) return;
    log_end("tunnel writer " + self->remote_, e);
    self->mark_writer_done();
    self->mark_closing();
    self->stream_.close();
  });
  co_await read_frames();
}

// Once per connection, on the strand: its channels end, and the service learns that this
// tunnel no longer serves its session.
void tunnel_connection::teardown() {
  if (torn_down_) return;
  torn_down_ = true;
  mark_closing();
  wake_.notify();
  rekey_timer_.cancel();  // the rekey loop ends
  receipt_timer_.cancel();
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
  mark_closing();
  wake_.notify();
  co_await abandon_challenge();
  teardown();
  co_await journal_close();
  mark_finished();
  if (!writer_started_) {
    stream_.close();
    co_return;
  }
  // Let the writer flush a final FAILURE/ERROR/END, bounded by its own deadline; then close
  // whatever is left (a writer blocked on an agent that does not read).
  // writer_end_ is a condition variable on this strand: the writer's end cancels it.
  if (!writer_done_) {
    writer_end_.expires_after(kWriterFlush);
    co_await writer_end_.async_wait(use_tuple);
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
      mark_finished();
    }
  } catch (const std::exception& e) {
    log::error("tunnel {}: release: {}", remote_, e.what());
  } catch (...) {
    log::error("tunnel {}: release failed", remote_);
  }
  forget_machine_slot();
  ctx_->adm.on_close(source_, counted_authenticated_);
  --metrics_.tunnels_active;
  try {
    if (ctx_->stopping && ctx_->on_end) ctx_->on_end();
  } catch (...) {
    // the drain then ends at its deadline instead
  }
}

// The machine's slot names this tunnel no longer (unless a newcomer is deciding about the
// machine): it goes, so that slots do not pile up for every machine ever connected, and its
// weak reference, which would keep this object's memory (one allocation with the control
// block), is gone with it.
void tunnel_connection::forget_machine_slot() noexcept {
  if (machine_.empty()) return;
  shared_ctx::machines_lock lock(*ctx_);
  auto it = ctx_->machines.find(machine_);
  if (it == ctx_->machines.end() || it->second.deciding) return;
  auto live = it->second.live.lock();
  if (!live || live.get() == this) ctx_->machines.erase(it);
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

}  // namespace rsgate::gateway::detail
