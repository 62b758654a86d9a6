// See channel_flow.hpp. The rules, in docs/protocol.md §8's words: DATA beyond the window
// (more than the window delivered and not yet handed on) or after the peer's EOF is
// `window_exceeded`, and so is a WINDOW that would raise the credit beyond 16 MiB (no peer that
// keeps within its window can send one); a channel frame the peer may not send in this state
// (before CHANNEL_ACCEPT, a second ACCEPT or EOF, REJECT after ACCEPT, a type only the other
// role sends) is `unexpected`; once this end closed the channel, frames that were in flight
// are ignored and the peer's CLOSE is the answer.
#include "protocol/channel_flow.hpp"

#include <algorithm>

namespace rsgate::tunnel {

std::string_view error_code(channel_verdict v) {
  switch (v) {
    case channel_verdict::window_exceeded: return "window_exceeded";
    case channel_verdict::unexpected: return "unexpected";
    default: return "";
  }
}

channel_flow::channel_flow(role r, std::uint32_t peer_window)
    : credit_(r == role::acceptor ? std::min(peer_window, kMaxWindow) : 0), role_(r) {}

channel_verdict channel_flow::on_frame(frame_type t, std::uint32_t value) {
  if (closed()) {
    if (t == frame_type::close && !close_received_) {
      close_received_ = true;  // the answer to our CLOSE
      return channel_verdict::closed;
    }
    return channel_verdict::ignore;
  }
  const bool opener = role_ == role::opener;
  switch (t) {
    case frame_type::channel_accept:
      if (!opener || accepted_) return channel_verdict::unexpected;
      if (value > kMaxWindow) return channel_verdict::window_exceeded;
      accepted_ = true;
      credit_ = value;
      return channel_verdict::credit;
    case frame_type::channel_reject:
      if (!opener || accepted_) return channel_verdict::unexpected;
      close_received_ = true;  // no CLOSE follows a CHANNEL_REJECT
      return channel_verdict::closed;
    case frame_type::data:
      return accepted_ ? on_data(value) : channel_verdict::unexpected;
    case frame_type::window:
      return accepted_ ? on_window(value) : channel_verdict::unexpected;
    case frame_type::eof:
      if (!accepted_ || eof_received_) return channel_verdict::unexpected;
      eof_received_ = true;
      return channel_verdict::eof;
    case frame_type::close:
      close_received_ = close_sent_ = true;  // the caller sends the answer
      return channel_verdict::answer_close;
    default:
      return channel_verdict::unexpected;
  }
}

channel_verdict channel_flow::on_data(std::uint32_t n) {
  if (eof_received_ || n > window_.window() - buffered_) return channel_verdict::window_exceeded;
  if (n == 0) return channel_verdict::ignore;
  buffered_ += n;
  return channel_verdict::deliver;
}

channel_verdict channel_flow::on_window(std::uint32_t increment) {
  if (increment > kMaxWindow - credit_) return channel_verdict::window_exceeded;
  credit_ += increment;
  return channel_verdict::credit;
}

void channel_flow::accepted_locally() {
  if (role_ == role::acceptor) accepted_ = true;
}

std::uint32_t channel_flow::sendable(std::size_t want) const {
  if (!accepted_ || sending_ended()) return 0;
  return static_cast<std::uint32_t>(std::min<std::size_t>(want, credit_));
}

bool channel_flow::send_eof() {
  if (!accepted_ || sending_ended()) return false;
  eof_sent_ = true;
  return true;
}

std::uint32_t channel_flow::handed_on(std::uint32_t n, window_budget* budget) {
  buffered_ -= std::min(n, buffered_);
  if (closed()) return 0;  // no frame after CLOSE, and no growth for a channel that ended
  return window_.consumed(n, budget);
}

bool channel_flow::take_eof() {
  if (!eof_received_ || eof_handed_on_ || buffered_ != 0) return false;
  eof_handed_on_ = true;
  return true;
}

bool channel_flow::close() {
  if (closed()) return false;
  close_sent_ = true;
  return true;
}

}  // namespace rsgate::tunnel
