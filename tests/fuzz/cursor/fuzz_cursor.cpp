// Fuzz target for query cursors (journal/reader.hpp), which come back from people and
// programs as `rsgate journal query --cursor TEXT`: cursor::decode must never crash, what it
// accepts must be a position the reader can hold, and decode(encode(c)) == c for it and for a
// cursor built straight from the input bytes.
#include "journal/reader.hpp"

#include <cstring>

#include "tests/fuzz/fuzz_support.hpp"

using rsgate::journal::cursor;

namespace {

void check_round_trip(const cursor& c) {
  auto text = c.encode();
  auto back = cursor::decode(text);
  FUZZ_CHECK(back && *back == c);
  FUZZ_CHECK(back->encode() == text);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (auto c = cursor::decode(rsgate::fuzz::as_text(data, size))) {
    FUZZ_CHECK(c->ts >= 0 && c->seq >= 0);
    FUZZ_CHECK(c->gateway.size() <= rsgate::journal::kMaxFieldBytes);
    check_round_trip(*c);
  }

  // Any position a reader can produce: ts and seq not negative, gateway any bytes up to the
  // field limit.
  if (size >= 16) {
    std::uint64_t ts = 0, seq = 0;
    std::memcpy(&ts, data, 8);
    std::memcpy(&seq, data + 8, 8);
    cursor c;
    c.ts = static_cast<std::int64_t>(ts >> 1);
    c.seq = static_cast<std::int64_t>(seq >> 1);
    c.gateway.assign(reinterpret_cast<const char*>(data) + 16,
                     std::min(size - 16, rsgate::journal::kMaxFieldBytes));
    check_round_trip(c);
  }
  return 0;
}
