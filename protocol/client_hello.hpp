// Which application protocols (ALPN, RFC 7301) a TLS ClientHello offers, read from the bytes
// a client sent first, before any TLS is done: what lets the gateway serve agent tunnels and
// HTTPS on one TCP port (docs/protocol.md §1, docs/operations.md §13). Only the first TLS
// record is read (RFC 8446 §5.1: a ClientHello may span records; rsgate's agent sends one of
// a few hundred bytes). Every length is checked against what encloses it. Pure: no I/O.
#pragma once
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

namespace rsgate::tunnel {

// The first record's bytes a scan may need: a 5-byte header and at most 2^14 bytes of payload.
inline constexpr std::size_t kMaxClientHelloRecord = 5 + 16384;

struct client_hello_scan {
  enum class result {
    need_more,  // a prefix of a well-formed record: read more (up to kMaxClientHelloRecord)
    not_hello,  // not a TLS handshake record holding a well-formed ClientHello
    hello,      // a ClientHello; `alpn` lists what it offers (empty: no ALPN extension)
  };
  result state = result::need_more;
  std::vector<std::string> alpn;
};

[[nodiscard]] client_hello_scan scan_client_hello(std::span<const std::uint8_t> bytes);

}  // namespace rsgate::tunnel
