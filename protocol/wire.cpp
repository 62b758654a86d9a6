// See protocol.hpp.
#include "protocol/wire.hpp"

#include <algorithm>
#include <cstring>

namespace rsgate::tunnel {
namespace {

std::uint32_t get_u32(const std::uint8_t* p) {
  return static_cast<std::uint32_t>(p[0]) << 24 | static_cast<std::uint32_t>(p[1]) << 16 |
         static_cast<std::uint32_t>(p[2]) << 8 | p[3];
}
void put_u32(std::uint8_t* p, std::uint32_t v) {
  p[0] = static_cast<std::uint8_t>(v >> 24);
  p[1] = static_cast<std::uint8_t>(v >> 16);
  p[2] = static_cast<std::uint8_t>(v >> 8);
  p[3] = static_cast<std::uint8_t>(v);
}

}  // namespace

std::int64_t reconnect_backoff_ms(int attempt, double draw) {
  const std::int64_t full = std::min(kBackoffMaxMs, kBackoffFirstMs << std::clamp(attempt, 0, 5));
  const double d = std::clamp(draw, 0.0, 1.0);
  return full / 2 + static_cast<std::int64_t>(d * static_cast<double>(full / 2));
}

bool is_known(std::uint8_t t) {
  return (t >= 0x01 && t <= 0x12) || (t >= 0x20 && t <= 0x26) || (t >= 0x30 && t <= 0x33);
}

bool is_control(frame_type t) { return static_cast<std::uint8_t>(t) < 0x20; }

std::string_view name_of(frame_type t) {
  switch (t) {
    case frame_type::hello: return "HELLO";
    case frame_type::challenge: return "CHALLENGE";
    case frame_type::response: return "RESPONSE";
    case frame_type::success: return "SUCCESS";
    case frame_type::failure: return "FAILURE";
    case frame_type::key_offer: return "KEY_OFFER";
    case frame_type::key_ack: return "KEY_ACK";
    case frame_type::notice: return "NOTICE";
    case frame_type::stop: return "STOP";
    case frame_type::end: return "END";
    case frame_type::receipt: return "RECEIPT";
    case frame_type::ping: return "PING";
    case frame_type::pong: return "PONG";
    case frame_type::rekey: return "REKEY";
    case frame_type::error: return "ERROR";
    case frame_type::status: return "STATUS";
    case frame_type::status_reply: return "STATUS_REPLY";
    case frame_type::receipt_ack: return "RECEIPT_ACK";
    case frame_type::channel_open: return "CHANNEL_OPEN";
    case frame_type::channel_accept: return "CHANNEL_ACCEPT";
    case frame_type::channel_reject: return "CHANNEL_REJECT";
    case frame_type::data: return "DATA";
    case frame_type::window: return "WINDOW";
    case frame_type::eof: return "EOF";
    case frame_type::close: return "CLOSE";
    case frame_type::upload_begin: return "UPLOAD_BEGIN";
    case frame_type::upload_chunk: return "UPLOAD_CHUNK";
    case frame_type::upload_end: return "UPLOAD_END";
    case frame_type::upload_ack: return "UPLOAD_ACK";
  }
  return "UNKNOWN";
}

std::string_view describe(decode_error e) {
  switch (e) {
    case decode_error::none: return "no error";
    case decode_error::unknown_type: return "unknown frame type";
    case decode_error::reserved_bits: return "reserved bits set";
    case decode_error::bad_channel: return "frame on the wrong channel";
    case decode_error::oversized: return "frame larger than allowed";
    case decode_error::bad_window_length: return "WINDOW frame is not 4 bytes";
    case decode_error::empty_control: return "control frame without a payload";
  }
  return "unknown error";
}

std::size_t max_payload(frame_type t) {
  switch (t) {
    case frame_type::data:
    case frame_type::upload_chunk: return kMaxDataPayload;
    case frame_type::window: return 4;
    case frame_type::eof:
    case frame_type::close: return 0;
    default: return kMaxControlPayload;
  }
}

decode_error check_header(const frame_header& h) {
  auto t = static_cast<std::uint8_t>(h.type);
  if (!is_known(t)) return decode_error::unknown_type;
  if (h.flags != 0) return decode_error::reserved_bits;
  bool channel_frame = t >= 0x20 && t <= 0x26;
  if (channel_frame ? (h.channel == 0 || h.channel > kMaxChannelId) : h.channel != 0)
    return decode_error::bad_channel;
  if (h.length > max_payload(h.type)) return decode_error::oversized;
  if (h.type == frame_type::window && h.length != 4) return decode_error::bad_window_length;
  if ((is_control(h.type) || h.type == frame_type::channel_open ||
       h.type == frame_type::channel_accept || h.type == frame_type::channel_reject) &&
      h.length == 0 && h.type != frame_type::ping && h.type != frame_type::pong)
    return decode_error::empty_control;
  return decode_error::none;
}

void encode_header(const frame_header& h, std::span<std::uint8_t, kHeaderBytes> out) {
  out[0] = static_cast<std::uint8_t>(h.type);
  out[1] = h.flags;
  out[2] = 0;
  out[3] = 0;
  put_u32(out.data() + 4, h.channel);
  put_u32(out.data() + 8, h.length);
}

std::vector<std::uint8_t> encode(frame_type t, std::uint32_t channel,
                                 std::span<const std::uint8_t> payload, std::uint8_t flags) {
  // Reserved, then appended: the payload is written once, not zero-filled first (a memset of
  // every relayed byte in the gateway's profile).
  std::vector<std::uint8_t> out;
  out.reserve(kHeaderBytes + payload.size());
  out.resize(kHeaderBytes);
  encode_header({t, flags, channel, static_cast<std::uint32_t>(payload.size())},
                std::span<std::uint8_t, kHeaderBytes>(out.data(), kHeaderBytes));
  out.insert(out.end(), payload.begin(), payload.end());
  return out;
}

std::vector<std::uint8_t> encode_window(std::uint32_t channel, std::uint32_t increment) {
  std::uint8_t b[4];
  put_u32(b, increment);
  return encode(frame_type::window, channel, b);
}

std::uint32_t window_increment(const frame& f) {
  return f.payload.size() == 4 ? get_u32(f.payload.data()) : 0;
}

std::size_t decoder::feed(std::span<const std::uint8_t> bytes) {
  std::size_t used = 0;
  while (used < bytes.size() && !ready_ && error_ == decode_error::none) {
    const std::size_t left = bytes.size() - used;
    if (!header_) {
      const std::size_t take = std::min(kHeaderBytes - head_have_, left);
      std::memcpy(head_.data() + head_have_, bytes.data() + used, take);
      used += take;
      commit(take);
      continue;
    }
    // Appended, not zero-filled first: a fresh payload buffer is written once.
    const std::size_t take = std::min(header_->length - have_, left);
    put_payload(bytes.data() + used, take);
    used += take;
    payload_progress();
  }
  return used;
}

std::span<std::uint8_t> decoder::room() {
  if (ready_ || error_ != decode_error::none) return {};
  if (!header_) return {head_.data() + head_have_, kHeaderBytes - head_have_};
  if (payload_.size() < header_->length) payload_.resize(header_->length);
  return {payload_.data() + have_, header_->length - have_};
}

void decoder::commit(std::size_t n) {
  if (ready_ || error_ != decode_error::none || n == 0) return;
  if (header_) {
    have_ += std::min(n, header_->length - have_);
    payload_progress();
    return;
  }
  head_have_ += std::min(n, kHeaderBytes - head_have_);
  if (head_have_ == kHeaderBytes) header_complete();
}

void decoder::header_complete() {
  frame_header h;
  h.type = static_cast<frame_type>(head_[0]);
  h.flags = head_[1];
  h.channel = get_u32(head_.data() + 4);
  h.length = get_u32(head_.data() + 8);
  if (head_[2] != 0 || head_[3] != 0) {
    error_ = decode_error::reserved_bits;
    return;
  }
  if (auto e = check_header(h); e != decode_error::none) {
    error_ = e;
    return;
  }
  head_have_ = 0;
  header_ = h;
  have_ = 0;
  payload_.clear();
  if (h.length > 0 && !spare_.empty()) {
    payload_ = std::move(spare_.back());  // its stale bytes are all overwritten before use
    spare_.pop_back();
  } else if (h.length > 0) {
    // A large DATA payload's buffer holds any DATA payload: recycled, it serves the next
    // one, whatever its length, without growing (a grown vector is too big to keep). Only a
    // large one: the memory a queue of frames holds stays within twice their payloads.
    const bool large = h.type == frame_type::data && h.length > kMaxDataPayload / 2;
    payload_.reserve(large ? kMaxDataPayload : h.length);
  }
  payload_progress();  // an empty payload: the frame is complete
}

void decoder::payload_progress() {
  if (!header_ || have_ != header_->length) return;
  payload_.resize(have_);  // never grows here: drops a recycled buffer's stale tail
  ready_ = frame{*header_, std::move(payload_)};
  payload_ = {};
  have_ = 0;
  header_.reset();
}

void decoder::put_payload(const std::uint8_t* p, std::size_t n) {
  if (payload_.size() >= have_ + n) {
    std::memcpy(payload_.data() + have_, p, n);
  } else {
    payload_.resize(have_);  // only shrinks (size() >= have_ always)
    payload_.insert(payload_.end(), p, p + n);
  }
  have_ += n;
}

void decoder::recycle(std::vector<std::uint8_t>&& b) {
  if (spare_.size() >= kSpareBuffers || b.capacity() == 0 || b.capacity() > kMaxDataPayload + kHeaderBytes) return;
  spare_.push_back(std::move(b));
}

std::optional<frame> decoder::next() {
  auto f = std::move(ready_);
  ready_.reset();
  return f;
}

}  // namespace rsgate::tunnel
