// See client_hello.hpp. A cursor over the record that refuses to read past its end; the
// ClientHello layout is RFC 8446 §4.1.2 (legacy_version, random, legacy_session_id,
// cipher_suites, legacy_compression_methods, extensions), ALPN RFC 7301 §3.1.
#include "protocol/client_hello.hpp"

#include <optional>

namespace rsgate::tunnel {
namespace {

class cursor {
 public:
  explicit cursor(std::span<const std::uint8_t> b) : b_(b) {}
  bool skip(std::size_t n) {
    if (n > b_.size() - at_) return false;
    at_ += n;
    return true;
  }
  std::optional<std::size_t> u8() { return n(1); }
  std::optional<std::size_t> u16() { return n(2); }
  std::optional<std::size_t> u24() { return n(3); }
  std::optional<cursor> sub(std::size_t len) {
    if (len > b_.size() - at_) return std::nullopt;
    cursor c(b_.subspan(at_, len));
    at_ += len;
    return c;
  }
  [[nodiscard]] bool empty() const { return at_ == b_.size(); }
  [[nodiscard]] std::span<const std::uint8_t> rest() const { return b_.subspan(at_); }

 private:
  std::optional<std::size_t> n(std::size_t bytes) {
    if (bytes > b_.size() - at_) return std::nullopt;
    std::size_t v = 0;
    for (std::size_t i = 0; i < bytes; ++i) v = (v << 8) | b_[at_ + i];
    at_ += bytes;
    return v;
  }
  std::span<const std::uint8_t> b_;
  std::size_t at_ = 0;
};

client_hello_scan fail() { return {client_hello_scan::result::not_hello, {}}; }

}  // namespace

client_hello_scan scan_client_hello(std::span<const std::uint8_t> bytes) {
  client_hello_scan need{client_hello_scan::result::need_more, {}};
  // Record header: handshake (22), legacy_record_version 0x03xx, length 1..2^14.
  if (!bytes.empty() && bytes[0] != 22) return fail();
  if (bytes.size() >= 2 && bytes[1] != 3) return fail();
  if (bytes.size() < 5) return need;
  const std::size_t len = (std::size_t{bytes[3]} << 8) | bytes[4];
  if (len == 0 || len > 16384) return fail();
  if (bytes.size() < 5 + len) return need;
  cursor rec(bytes.subspan(5, len));
  auto type = rec.u8();
  auto hlen = rec.u24();
  if (!type || *type != 1 || !hlen) return fail();  // client_hello (1)
  // A ClientHello longer than this record continues in the next: its extensions are not here.
  auto body = rec.sub(*hlen);
  if (!body) return {client_hello_scan::result::hello, {}};
  auto& h = *body;
  if (!h.skip(2 + 32)) return fail();  // legacy_version, random
  auto sid = h.u8();
  if (!sid || *sid > 32 || !h.skip(*sid)) return fail();
  auto suites = h.u16();
  if (!suites || *suites < 2 || *suites % 2 != 0 || !h.skip(*suites)) return fail();
  auto comp = h.u8();
  if (!comp || *comp < 1 || !h.skip(*comp)) return fail();
  client_hello_scan out{client_hello_scan::result::hello, {}};
  if (h.empty()) return out;  // no extensions at all
  auto ext_len = h.u16();
  if (!ext_len) return fail();
  auto exts = h.sub(*ext_len);
  if (!exts || !h.empty()) return fail();
  bool seen = false;
  while (!exts->empty()) {
    auto et = exts->u16();
    auto el = exts->u16();
    if (!et || !el) return fail();
    auto data = exts->sub(*el);
    if (!data) return fail();
    if (*et != 16) continue;  // application_layer_protocol_negotiation
    if (seen) return fail();  // an extension appears at most once (RFC 8446 §4.2)
    seen = true;
    auto list_len = data->u16();
    if (!list_len || *list_len < 2) return fail();
    auto list = data->sub(*list_len);
    if (!list || !data->empty()) return fail();
    while (!list->empty()) {
      auto n = list->u8();
      if (!n || *n == 0) return fail();
      auto name = list->sub(*n);
      if (!name) return fail();
      auto r = name->rest();
      out.alpn.emplace_back(reinterpret_cast<const char*>(r.data()), r.size());
    }
  }
  return out;
}

}  // namespace rsgate::tunnel
