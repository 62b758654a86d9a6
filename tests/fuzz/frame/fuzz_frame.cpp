// Fuzz target for the tunnel frame decoder (gateway/tunnel/protocol.hpp), the first code that
// reads an agent's bytes off the network. The decoder must never crash, must hold no more
// than one frame, must stay failed after an error, must hand out only frames that pass
// check_header, and must decode the same frames whether the bytes arrive at once or in
// pieces; re-encoding those frames must give back exactly the bytes they came from.
//
// Also read through the pull interface (room/commit) with recycled payload buffers, which
// must give the very same frames.
//
// Input: the first byte picks the piece sizes for the second decoder; the rest is the stream.
#include "protocol/wire.hpp"

#include <algorithm>
#include <vector>

#include "tests/fuzz/fuzz_support.hpp"

namespace tunnel = rsgate::tunnel;

namespace {

struct decoded {
  std::vector<tunnel::frame> frames;
  tunnel::decode_error error = tunnel::decode_error::none;
  std::size_t consumed = 0;  // bytes taken by the decoder in all
};

bool same(const tunnel::frame& a, const tunnel::frame& b) {
  return a.header.type == b.header.type && a.header.flags == b.header.flags &&
         a.header.channel == b.header.channel && a.header.length == b.header.length &&
         a.payload == b.payload;
}

// Feeds `stream` in pieces of the sizes `piece(i)` returns, taking frames as they complete.
template <typename Piece>
decoded run(std::span<const std::uint8_t> stream, Piece piece) {
  decoded out;
  tunnel::decoder d;
  std::size_t at = 0;
  for (std::size_t i = 0; at < stream.size(); ++i) {
    auto chunk = stream.subspan(at, std::min(piece(i), stream.size() - at));
    std::size_t off = 0;
    while (off < chunk.size()) {
      auto used = d.feed(chunk.subspan(off));
      FUZZ_CHECK(used <= chunk.size() - off);
      off += used;
      FUZZ_CHECK(d.buffered() <= std::max(tunnel::kHeaderBytes, tunnel::kMaxDataPayload));
      if (auto f = d.next()) {
        FUZZ_CHECK(tunnel::check_header(f->header) == tunnel::decode_error::none);
        FUZZ_CHECK(f->payload.size() == f->header.length);
        FUZZ_CHECK(f->header.length <= tunnel::max_payload(f->header.type));
        FUZZ_CHECK(!d.next());  // one frame at a time
        if (f->header.type == tunnel::frame_type::window) {
          // What both ends read out of a WINDOW frame: re-encoding it gives the same bytes.
          auto again = tunnel::encode_window(f->header.channel, tunnel::window_increment(*f));
          FUZZ_CHECK(std::equal(again.begin() + tunnel::kHeaderBytes, again.end(), f->payload.begin()));
        }
        out.frames.push_back(std::move(*f));
        continue;
      }
      if (d.error() != tunnel::decode_error::none) {
        // Failed for good: nothing more is taken, the error stays.
        auto e = d.error();
        FUZZ_CHECK(d.feed(chunk.subspan(off)) == 0 && d.error() == e && !d.next());
        FUZZ_CHECK(!tunnel::describe(e).empty());
        out.error = e;
        out.consumed = at + off;
        return out;
      }
      FUZZ_CHECK(used > 0);  // neither a frame nor an error: it must have taken bytes
    }
    at += chunk.size();
  }
  out.consumed = at;
  return out;
}

// The same stream through the pull interface (room/commit, as the agent reads the tunnel), in
// pieces, each frame's payload recycled for the next ones: the same frames, error and count.
decoded pull(std::span<const std::uint8_t> stream, std::uint8_t mode) {
  decoded out;
  tunnel::decoder d;
  std::size_t at = 0;
  for (std::size_t i = 0;; ++i) {
    if (auto f = d.next()) {
      FUZZ_CHECK(f->payload.size() == f->header.length);
      out.frames.push_back(*f);
      d.recycle(std::move(f->payload));
      continue;
    }
    if (d.error() != tunnel::decode_error::none) {
      FUZZ_CHECK(d.room().empty());
      out.error = d.error();
      break;
    }
    if (at == stream.size()) break;
    auto room = d.room();
    FUZZ_CHECK(!room.empty());
    auto n = std::min({room.size(), stream.size() - at, 1 + (i * 13 + mode) % (1 + mode % 61)});
    std::copy_n(stream.begin() + static_cast<long>(at), n, room.begin());
    d.commit(n);
    at += n;
    FUZZ_CHECK(d.buffered() <= std::max(tunnel::kHeaderBytes, tunnel::kMaxDataPayload));
  }
  out.consumed = at;
  return out;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  const std::uint8_t mode = data[0];
  std::span<const std::uint8_t> stream(data + 1, size - 1);

  auto whole = run(stream, [](std::size_t) { return std::size_t{1} << 30; });
  auto pieces = run(stream, [mode](std::size_t i) {
    return mode == 0 ? std::size_t{1} : 1 + (i * 7 + mode) % (1 + mode % 29);
  });

  auto pulled = pull(stream, mode);

  FUZZ_CHECK(whole.error == pieces.error && whole.consumed == pieces.consumed);
  FUZZ_CHECK(whole.frames.size() == pieces.frames.size());
  FUZZ_CHECK(whole.error == pulled.error && whole.consumed == pulled.consumed);
  FUZZ_CHECK(whole.frames.size() == pulled.frames.size());
  std::vector<std::uint8_t> again;
  for (std::size_t i = 0; i < whole.frames.size(); ++i) {
    const auto& f = whole.frames[i];
    FUZZ_CHECK(same(f, pieces.frames[i]) && same(f, pulled.frames[i]));
    auto bytes = tunnel::encode(f.header.type, f.header.channel, f.payload, f.header.flags);
    again.insert(again.end(), bytes.begin(), bytes.end());
    (void)tunnel::name_of(f.header.type);
  }
  // The frames are a prefix of the stream, byte for byte; what follows is at most a partial
  // frame (no error) or the header that was refused.
  FUZZ_CHECK(again.size() <= whole.consumed);
  FUZZ_CHECK(std::equal(again.begin(), again.end(), stream.begin()));
  if (whole.error == tunnel::decode_error::none)
    FUZZ_CHECK(whole.consumed == stream.size());
  else
    FUZZ_CHECK(whole.consumed - again.size() <= tunnel::kHeaderBytes);
  return 0;
}
