// One end of one channel's flow control (docs/protocol.md §8): the only implementation, used
// by the gateway's tunnel and stream sides and by the agent. It holds our receive window (what
// the peer may have sent and we have not handed on yet, its growth, the WINDOW increments to
// return), our send credit (the peer's window), the half-close of each direction and the
// close, and judges every channel frame the peer sends: `on_frame(type, value) -> verdict`,
// which the caller carries out (queue the bytes, wake a waiting pump, answer CLOSE, or close
// the tunnel with ERROR). Pure: no I/O, no clock, no allocation, no lock.
//
// Not thread-safe. The agent owns one per channel on its single thread; in the gateway the
// channel_link's mutex guards it, which both of the channel's ends already hold when they
// touch the channel.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "protocol/flow.hpp"
#include "protocol/wire.hpp"

namespace rsgate::tunnel {

// What the caller does with a channel frame from the peer.
enum class channel_verdict : std::uint8_t {
  ignore,           // nothing: a frame that was in flight when this end closed the channel
  deliver,          // DATA within the window: queue its bytes to hand on
  credit,           // CHANNEL_ACCEPT or WINDOW: the send credit grew; a stalled sender goes on
  eof,              // the peer's EOF: hand it on once everything before it is handed on
  closed,           // CHANNEL_REJECT, or the CLOSE that answers ours: the channel is gone
  answer_close,     // the peer's CLOSE: send CLOSE (this once) and forget the channel
  window_exceeded,  // protocol error: ERROR `window_exceeded`, then close the tunnel
  unexpected,       // protocol error: ERROR `unexpected`, then close the tunnel
};

// The ERROR code for a protocol-error verdict ("" for the others).
[[nodiscard]] std::string_view error_code(channel_verdict v);

class channel_flow {
 public:
  enum class role : std::uint8_t {
    opener,    // the gateway: sent CHANNEL_OPEN, may send once CHANNEL_ACCEPT brings a window
    acceptor,  // the agent: knows the opener's window from CHANNEL_OPEN, sends once it accepted
  };

  // `peer_window`: for an acceptor, the window CHANNEL_OPEN announced (for an opener it comes
  // with CHANNEL_ACCEPT). Our own window starts at kInitialWindow, as both sides announce.
  explicit channel_flow(role r, std::uint32_t peer_window = 0);

  // A frame from the peer. `value` is the DATA payload's length, the WINDOW increment or the
  // window CHANNEL_ACCEPT carries (parsed and range-checked by the caller); 0 otherwise.
  [[nodiscard]] channel_verdict on_frame(frame_type t, std::uint32_t value = 0);

  // --- sending: DATA and EOF from this end ---
  // The acceptor sent CHANNEL_ACCEPT: from now on frames flow both ways.
  void accepted_locally();
  // How many of `want` bytes may go out as DATA now: the credit, or 0 while it is used up
  // (wait for a WINDOW without reading the source) or sending has ended (sending_ended()).
  [[nodiscard]] std::uint32_t sendable(std::size_t want) const;
  // `n` (at most sendable()) bytes went out as DATA.
  void sent(std::uint32_t n) { credit_ -= n; }
  // This end's source ended cleanly: true (once) when EOF is to be sent now.
  [[nodiscard]] bool send_eof();
  // No more DATA from this end: EOF sent, or the channel closed.
  [[nodiscard]] bool sending_ended() const { return eof_sent_ || closed(); }

  // --- receiving: handing the peer's bytes and EOF on ---
  // `n` bytes of delivered DATA were handed on (written to the target or the WebSocket).
  // Returns the WINDOW increment to send now, or 0 (batched: a quarter window at a time;
  // none once the channel is closed). Growth comes from `budget` (null: none) and raises the
  // DATA limit before this returns.
  [[nodiscard]] std::uint32_t handed_on(std::uint32_t n, window_budget* budget);
  // True (once) when the peer's EOF is to be handed on now: it came, and everything before it
  // was handed on.
  [[nodiscard]] bool take_eof();
  // The peer's EOF came and every byte before it was handed on: the input ended cleanly.
  [[nodiscard]] bool received_all() const { return eof_received_ && buffered_ == 0; }
  // take_eof() returned true: the peer's EOF was handed on.
  [[nodiscard]] bool eof_handed_on() const { return eof_handed_on_; }
  // Both directions ended cleanly: our EOF sent, the peer's handed on.
  [[nodiscard]] bool both_ended() const { return eof_sent_ && eof_handed_on_; }

  // --- close ---
  // This end closes the channel: true when CLOSE is to be sent (not after CHANNEL_REJECT, nor
  // twice, nor after the peer's CLOSE, which on_frame had answered).
  [[nodiscard]] bool close();
  // The tunnel ended: the channel is gone without a frame.
  void abandon() { close_sent_ = close_received_ = true; }
  // Gives the window's growth back to `budget`; once, when the channel ends (idempotent).
  void release(window_budget* budget) { window_.release(budget); }

  [[nodiscard]] bool accepted() const { return accepted_; }
  [[nodiscard]] bool closed() const { return close_sent_ || close_received_; }
  [[nodiscard]] std::uint32_t credit() const { return credit_; }
  [[nodiscard]] std::uint32_t window() const { return window_.window(); }
  [[nodiscard]] std::uint32_t buffered() const { return buffered_; }
  [[nodiscard]] bool eof_sent() const { return eof_sent_; }
  [[nodiscard]] bool eof_received() const { return eof_received_; }

 private:
  channel_verdict on_data(std::uint32_t n);
  channel_verdict on_window(std::uint32_t increment);

  receive_window window_;      // ours: the peer's DATA limit, its growth and WINDOW batching
  std::uint32_t buffered_ = 0;  // DATA delivered and not yet handed on (≤ window_.window())
  std::uint32_t credit_ = 0;    // DATA we may still send (≤ kMaxWindow)
  role role_;
  bool accepted_ = false;
  bool eof_sent_ = false, eof_received_ = false, eof_handed_on_ = false;
  bool close_sent_ = false, close_received_ = false;
};

}  // namespace rsgate::tunnel
