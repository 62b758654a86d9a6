// The frame decoder, table-tested: every header rule, byte-at-a-time feeding, several frames
// in one read, and the bound on what it buffers.
#include "protocol/wire.hpp"

#include <catch2/catch.hpp>
#include <set>
#include <string>

using namespace rsgate::tunnel;

namespace {
std::vector<std::uint8_t> json(std::string_view s) { return {s.begin(), s.end()}; }

std::vector<std::uint8_t> raw_header(std::uint8_t type, std::uint8_t flags, std::uint16_t rsvd,
                                     std::uint32_t channel, std::uint32_t length) {
  return {type,
          flags,
          static_cast<std::uint8_t>(rsvd >> 8),
          static_cast<std::uint8_t>(rsvd),
          static_cast<std::uint8_t>(channel >> 24),
          static_cast<std::uint8_t>(channel >> 16),
          static_cast<std::uint8_t>(channel >> 8),
          static_cast<std::uint8_t>(channel),
          static_cast<std::uint8_t>(length >> 24),
          static_cast<std::uint8_t>(length >> 16),
          static_cast<std::uint8_t>(length >> 8),
          static_cast<std::uint8_t>(length)};
}

decode_error decode_one(const std::vector<std::uint8_t>& bytes) {
  decoder d;
  d.feed(bytes);
  return d.error();
}
}  // namespace

TEST_CASE("encode then decode, whole and byte by byte") {
  auto hello = encode(frame_type::hello, 0, json(R"({"v":1})"));
  auto data = encode(frame_type::data, 7, json("payload bytes"));
  auto win = encode_window(7, 4096);
  auto eof = encode(frame_type::eof, 7, {});
  std::vector<std::uint8_t> stream;
  for (auto* f : {&hello, &data, &win, &eof}) stream.insert(stream.end(), f->begin(), f->end());

  for (std::size_t chunk : {stream.size(), std::size_t{1}, std::size_t{5}, std::size_t{13}}) {
    INFO("chunk " << chunk);
    decoder d;
    std::vector<frame> got;
    std::size_t pos = 0;
    while (pos < stream.size()) {
      auto n = std::min(chunk, stream.size() - pos);
      std::size_t used = 0;
      while (used < n) {
        used += d.feed(std::span(stream).subspan(pos + used, n - used));
        while (auto f = d.next()) got.push_back(std::move(*f));
        REQUIRE(d.error() == decode_error::none);
      }
      pos += n;
    }
    REQUIRE(got.size() == 4);
    CHECK(got[0].header.type == frame_type::hello);
    CHECK(std::string(got[0].payload.begin(), got[0].payload.end()) == R"({"v":1})");
    CHECK(got[1].header.type == frame_type::data);
    CHECK(got[1].header.channel == 7);
    CHECK(got[1].payload.size() == 13);
    CHECK(got[2].header.type == frame_type::window);
    CHECK(got[2].payload == std::vector<std::uint8_t>{0, 0, 0x10, 0});
    CHECK(window_increment(got[2]) == 4096);
    CHECK(got[3].header.type == frame_type::eof);
    CHECK(got[3].payload.empty());
    CHECK(d.buffered() == 0);
  }
}

TEST_CASE("header rules") {
  struct row {
    const char* what;
    std::vector<std::uint8_t> bytes;
    decode_error expect;
  };
  const row rows[] = {
      {"unknown type 0x00", raw_header(0x00, 0, 0, 0, 2), decode_error::unknown_type},
      {"unknown type 0x13", raw_header(0x13, 0, 0, 0, 2), decode_error::unknown_type},
      {"RECEIPT_ACK is known", raw_header(0x12, 0, 0, 0, 2), decode_error::none},
      {"unknown type 0x27", raw_header(0x27, 0, 0, 1, 2), decode_error::unknown_type},
      {"unknown type 0xff", raw_header(0xff, 0, 0, 0, 2), decode_error::unknown_type},
      {"flags set", raw_header(0x23, 1, 0, 1, 2), decode_error::reserved_bits},
      {"reserved bytes set", raw_header(0x23, 0, 1, 1, 2), decode_error::reserved_bits},
      {"control frame on a channel", raw_header(0x01, 0, 0, 3, 2), decode_error::bad_channel},
      {"DATA on channel 0", raw_header(0x23, 0, 0, 0, 2), decode_error::bad_channel},
      {"channel id too large", raw_header(0x23, 0, 0, 0x80000000u, 2), decode_error::bad_channel},
      {"control too large", raw_header(0x01, 0, 0, 0, kMaxControlPayload + 1), decode_error::oversized},
      {"DATA too large", raw_header(0x23, 0, 0, 1, kMaxDataPayload + 1), decode_error::oversized},
      {"length 4 GiB", raw_header(0x23, 0, 0, 1, 0xffffffffu), decode_error::oversized},
      {"WINDOW of 3 bytes", raw_header(0x24, 0, 0, 1, 3), decode_error::bad_window_length},
      {"EOF with payload", raw_header(0x25, 0, 0, 1, 1), decode_error::oversized},
      {"HELLO without payload", raw_header(0x01, 0, 0, 0, 0), decode_error::empty_control},
      {"CHANNEL_OPEN without payload", raw_header(0x20, 0, 0, 1, 0), decode_error::empty_control},
  };
  for (auto& r : rows) {
    INFO(r.what);
    CHECK(decode_one(r.bytes) == r.expect);
  }
  // Limits exactly at the boundary are fine.
  CHECK(decode_one(raw_header(0x23, 0, 0, kMaxChannelId, kMaxDataPayload)) == decode_error::none);
  CHECK(decode_one(raw_header(0x0c, 0, 0, 0, 0)) == decode_error::none);  // PING may be empty
}

TEST_CASE("an oversized header is refused before any payload is buffered") {
  decoder d;
  auto h = raw_header(0x23, 0, 0, 1, 0xffffffffu);
  d.feed(h);
  CHECK(d.error() == decode_error::oversized);
  CHECK(d.buffered() <= kHeaderBytes);
  // Once failed, it stays failed and takes nothing more.
  std::vector<std::uint8_t> more(100, 0);
  CHECK(d.feed(more) == 0);
  CHECK_FALSE(d.next().has_value());
}

TEST_CASE("a frame waits in the decoder until taken") {
  auto a = encode(frame_type::ping, 0, {});
  auto b = encode(frame_type::pong, 0, {});
  std::vector<std::uint8_t> both(a);
  both.insert(both.end(), b.begin(), b.end());
  decoder d;
  auto used = d.feed(both);
  CHECK(used == a.size());  // stops after the first complete frame
  REQUIRE(d.next()->header.type == frame_type::ping);
  CHECK(d.feed(std::span(both).subspan(used)) == b.size());
  CHECK(d.next()->header.type == frame_type::pong);
}

TEST_CASE("names") {
  CHECK(name_of(frame_type::channel_open) == "CHANNEL_OPEN");
  CHECK(is_control(frame_type::hello));
  CHECK_FALSE(is_control(frame_type::data));
}

// The pull interface the agent reads the tunnel with: room() is the rest of the header, then
// the rest of the payload; the same frames come out as from feed(), in any read sizes, and a
// recycled buffer's stale bytes never show (a shorter frame in a longer buffer).
TEST_CASE("reading straight into the decoder gives the same frames, in recycled buffers") {
  std::vector<std::uint8_t> big(kMaxDataPayload, 0xaa), small(13, 0x55);
  auto a = encode(frame_type::data, 3, big);
  auto b = encode(frame_type::data, 3, small);
  auto c = encode(frame_type::eof, 3, {});
  std::vector<std::uint8_t> stream(a);
  for (auto* f : {&b, &c, &a}) stream.insert(stream.end(), f->begin(), f->end());
  for (std::size_t chunk : {std::size_t{1}, std::size_t{7}, std::size_t{5000}, stream.size()}) {
    INFO("chunk " << chunk);
    decoder d;
    std::vector<frame> got;
    std::size_t pos = 0;
    while (pos < stream.size()) {
      if (auto f = d.next()) {
        got.push_back(std::move(*f));
        if (got.size() == 1) d.recycle(std::vector<std::uint8_t>(got[0].payload));  // 32 KiB of 0xaa
        continue;
      }
      auto room = d.room();
      REQUIRE_FALSE(room.empty());
      auto n = std::min({chunk, room.size(), stream.size() - pos});
      std::copy_n(stream.begin() + static_cast<long>(pos), n, room.begin());
      d.commit(n);
      pos += n;
      REQUIRE(d.error() == decode_error::none);
    }
    if (auto f = d.next()) got.push_back(std::move(*f));
    REQUIRE(got.size() == 4);
    CHECK(got[0].payload == big);
    CHECK(got[1].payload == small);  // in the recycled 32 KiB buffer: exactly 13 bytes of 0x55
    CHECK(got[2].header.type == frame_type::eof);
    CHECK(got[2].payload.empty());
    CHECK(got[3].payload == big);
    CHECK(d.buffered() == 0);
  }
}

TEST_CASE("the pull interface refuses a bad header before any payload, and keeps a bounded pool") {
  decoder d;
  auto h = raw_header(0x23, 0, 0, 1, kMaxDataPayload + 1);
  auto room = d.room();
  REQUIRE(room.size() == kHeaderBytes);
  std::copy(h.begin(), h.end(), room.begin());
  d.commit(h.size());
  CHECK(d.error() == decode_error::oversized);
  CHECK(d.room().empty());
  CHECK(d.buffered() <= kHeaderBytes);
  // Oversized buffers are not kept; recycling more than the pool holds is harmless.
  d.recycle(std::vector<std::uint8_t>(kMaxDataPayload * 4));
  for (std::size_t i = 0; i < decoder::kSpareBuffers + 3; ++i) d.recycle(std::vector<std::uint8_t>(64));
  CHECK_FALSE(d.next().has_value());
}

// A large DATA payload's fresh buffer holds any DATA payload: recycled, it serves a longer one
// in place (a grown vector would be too big to keep, and the next payload a new allocation).
// A small payload is not given that much memory: a queue of tiny frames stays small.
TEST_CASE("a recycled DATA buffer serves a longer payload without growing, small ones stay small") {
  decoder d;
  auto read_in = [&d](const std::vector<std::uint8_t>& wire) {
    std::size_t pos = 0;
    while (pos < wire.size()) {
      auto room = d.room();
      REQUIRE_FALSE(room.empty());
      auto n = std::min(room.size(), wire.size() - pos);
      std::copy_n(wire.begin() + static_cast<long>(pos), n, room.begin());
      d.commit(n);
      pos += n;
    }
    auto f = d.next();
    REQUIRE(f.has_value());
    return std::move(*f);
  };
  auto first = read_in(encode(frame_type::data, 1, std::vector<std::uint8_t>(28 * 1024, 1)));
  CHECK(first.payload.capacity() == kMaxDataPayload);
  const auto* memory = first.payload.data();
  d.recycle(std::move(first.payload));
  auto second = read_in(encode(frame_type::data, 1, std::vector<std::uint8_t>(kMaxDataPayload, 2)));
  CHECK(second.payload.data() == memory);  // the same block, not grown
  CHECK(second.payload == std::vector<std::uint8_t>(kMaxDataPayload, 2));
  auto tiny = read_in(encode(frame_type::data, 1, std::vector<std::uint8_t>(64, 3)));
  CHECK(tiny.payload.capacity() < kMaxDataPayload / 2);
}

TEST_CASE("the reconnect backoff doubles from 1 s to 30 s, each wait between half and all of it") {
  using rsgate::tunnel::reconnect_backoff_ms;
  CHECK(reconnect_backoff_ms(0, 0.0) == 500);
  CHECK(reconnect_backoff_ms(0, 1.0) == 1000);
  CHECK(reconnect_backoff_ms(1, 0.0) == 1000);
  CHECK(reconnect_backoff_ms(1, 1.0) == 2000);
  CHECK(reconnect_backoff_ms(4, 1.0) == 16000);
  // capped at 30 s from the fifth attempt on, however many follow
  CHECK(reconnect_backoff_ms(5, 1.0) == 30000);
  CHECK(reconnect_backoff_ms(5, 0.0) == 15000);
  CHECK(reconnect_backoff_ms(1000, 0.5) == 22500);
  // out-of-range inputs stay within the bounds
  CHECK(reconnect_backoff_ms(-3, 2.0) == 1000);
  CHECK(reconnect_backoff_ms(2, -1.0) == 2000);
  // the draw spreads the waits: 1000 draws over [0, 1) give 1000 distinct waits in [15 s, 30 s]
  std::set<std::int64_t> seen;
  for (int i = 0; i < 1000; ++i) {
    auto w = reconnect_backoff_ms(7, i / 1000.0);
    CHECK(w >= 15000);
    CHECK(w <= 30000);
    seen.insert(w);
  }
  CHECK(seen.size() == 1000);
}
