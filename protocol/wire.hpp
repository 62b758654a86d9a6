// The tunnel wire protocol "rsgate/1" (docs/protocol.md says the same in prose): every frame
// layout, message type and limit in one place, the way WireGuard's messages.h or Beast's
// rfc6455.hpp do it. The agent and the gateway both speak it; nothing here does I/O.
//
// Transport: TLS 1.3 only, ALPN "rsgate/1". Frames, all integers big-endian:
//
//   0       1       2       4               8               12
//   +-------+-------+-------+---------------+---------------+----------------+
//   | type  | flags | rsvd  | channel (u32) | length (u32)  | payload[length] |
//   +-------+-------+-------+---------------+---------------+----------------+
//
// Channel 0 carries control messages whose payload is one JSON object (UTF-8). Channels
// 1..2^31-1 are opened by the gateway; their DATA payloads are raw bytes.
#pragma once
#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string_view>
#include <vector>

namespace rsgate::tunnel {

inline constexpr std::string_view kAlpn = "rsgate/1";
inline constexpr int kProtocolVersion = 1;
// RFC 9266 channel binding: 32 bytes from SSL_export_keying_material with this label.
inline constexpr std::string_view kExporterLabel = "EXPORTER-Channel-Binding";
inline constexpr std::size_t kExporterBytes = 32;

inline constexpr std::size_t kHeaderBytes = 12;
inline constexpr std::size_t kMaxControlPayload = 16 * 1024;  // one JSON object
inline constexpr std::size_t kMaxDataPayload = 32 * 1024;     // one DATA frame
// What rsgate's senders put in one DATA frame (below the limit): with its header the frame
// fills exactly two 16 KiB TLS records; 32 KiB of payload left a third record of 12 bytes.
inline constexpr std::size_t kDataPayloadPerFrame = 2 * 16 * 1024 - kHeaderBytes;
inline constexpr std::uint32_t kMaxChannelId = 0x7fffffff;
inline constexpr std::uint32_t kInitialWindow = 256 * 1024;   // per channel, each direction
inline constexpr std::uint32_t kMaxWindow = 16 * 1024 * 1024;
inline constexpr std::size_t kMaxChannelsPerTunnel = 256;
inline constexpr std::size_t kMaxChannelsPerSession = 256;    // open at once, all its tunnels
// Window growth (docs/protocol.md §8, protocol/flow.hpp): rsgate's own policy.
inline constexpr std::uint32_t kGrownWindowMax = 4 * 1024 * 1024;        // per channel and direction
inline constexpr std::int64_t kTunnelWindowBudget = 16 * 1024 * 1024;    // growth, per tunnel and direction
inline constexpr std::int64_t kGatewayWindowBudget = 256 * 1024 * 1024;  // growth, whole gateway
// What the gateway holds for one agent before it gives up on it as not reading: every
// channel's initial window, the growth the agent may grant under rsgate's own policy, and room
// for CHANNEL_OPEN, WINDOW, EOF and CLOSE frames. Frames on channel 0 are bounded apart, by
// kMaxQueuedControlBytes below.
inline constexpr std::size_t kMaxQueuedBytes =
    kMaxChannelsPerTunnel * kInitialWindow + static_cast<std::size_t>(kTunnelWindowBudget) + (1u << 20);
// The channel stream (docs/api.md §5.5): one WebSocket message at most, either way.
inline constexpr std::size_t kMaxStreamMessage = 64 * 1024;
inline constexpr std::size_t kMaxScopes = 64;
inline constexpr std::size_t kMaxNameBytes = 64;             // scope names, machine fields

// Timers (defaults; the gateway's configuration may shorten or lengthen them).
inline constexpr int kHandshakeTimeoutSeconds = 20;   // TLS + HELLO + CHAP must finish
inline constexpr int kDeadPeerSeconds = 90;           // no frame at all: the tunnel is dead (default)
inline constexpr int kMinDeadPeerSeconds = 6;         // tunnel.keepalive's range: PINGs every 2 s at most
inline constexpr int kMaxDeadPeerSeconds = 3600;
inline constexpr int kRekeySeconds = 900;             // TLS KeyUpdate + CHAP re-challenge
inline constexpr int kMaxTunnelSeconds = 24 * 3600;   // then re-authenticate from scratch
inline constexpr std::string_view kReauthenticate = "reauthenticate";  // END's reason at tunnel life's end
inline constexpr std::string_view kRestart = "restart";  // END's reason when the gateway stops, keeping sessions
inline constexpr std::string_view kMove = "move";  // END's reason when a draining gateway hands the agent to its peer
inline constexpr int kMinTunnelSeconds = 5;           // the range of tunnel.reauth and of
inline constexpr int kMaxTunnelLifeSeconds = 7 * 86400;  // SUCCESS's max_tunnel_seconds
// The customer's time to approve a channel to an `ask` scope (HELLO approval_seconds, §8.1);
// the gateway waits that long plus kHandshakeTimeoutSeconds for the agent's answer. At most
// 240 s: the representative's channel stream, silent meanwhile, is dropped after 300 s.
inline constexpr int kMinApprovalSeconds = 5;
inline constexpr int kMaxApprovalSeconds = 240;
inline constexpr int kReconnectGraceSeconds = 120;    // session survives a drop this long
// The agent's wait before reconnect attempt `attempt` (0: the first after a loss): 1 s doubling
// to 30 s, each wait drawn between half and all of it (`draw` uniform in [0, 1)), so that agents
// cut off together come back spread out (docs/protocol.md §9). rsgate-agent and the scale
// benchmark's load tool share it.
inline constexpr std::int64_t kBackoffFirstMs = 1000;
inline constexpr std::int64_t kBackoffMaxMs = 30'000;
[[nodiscard]] std::int64_t reconnect_backoff_ms(int attempt, double draw);

// One live tunnel per machine (docs/protocol.md §9.1). When a second tunnel of a machine
// passes CHAP while the first is up, the gateway PINGs the first and waits this long for any
// frame from it: an answer refuses the newcomer, silence replaces the first.
inline constexpr int kLivenessProbeSeconds = 5;
// An ended session's tunnel stays open this long after END (or after the agent's STOP) for
// its RECEIPT (docs/protocol.md §4.12), then closes; the agent reads that long plus 5 s.
inline constexpr int kReceiptWaitSeconds = 10;
// Owed receipts (docs/protocol.md §4.12): after SUCCESS, an agent that announced `receipts`
// gets the receipts of its machine's last kOwedReceipts ended sessions it has not
// acknowledged. After END or STOP the gateway waits this long for the RECEIPT_ACK of the
// session's receipt before it closes (the receipt stays owed without it).
inline constexpr int kOwedReceipts = 8;
inline constexpr int kReceiptAckWaitSeconds = 5;
// NOTICE `tunnel_refused` to the live tunnel: at most this many per machine and window.
inline constexpr int kRefusedNoticesPerWindow = 3;
inline constexpr int kRefusedNoticeWindowSeconds = 60;

// Admission before authentication (docs/protocol.md §1.1, docs/security.md §5). A "source"
// is the peer's IPv4 address, or the /64 prefix of its IPv6 address.
inline constexpr std::size_t kMaxTunnels = 1024;             // authenticated tunnels at once
inline constexpr std::size_t kMaxPreAuthTunnels = 128;       // in TLS, HELLO or CHAP at once
inline constexpr std::size_t kMaxPreAuthPerSource = 8;       // of those, from one source
inline constexpr int kSourceWindowSeconds = 60;              // the window of the two below
inline constexpr int kMaxHellosPerSource = 60;               // HELLOs per source and window
// Unauthenticated connections whose entries the journal records one by one, per source and
// window; the others of that window are counted into one summary entry when it ends.
inline constexpr int kJournalBurstPerSource = 5;
inline constexpr std::size_t kMaxTrackedSources = 4096;      // beyond, new sources share one
inline constexpr std::size_t kMaxSummaryReasons = 8;         // distinct reasons in a summary
inline constexpr std::size_t kMaxSummaryMachines = 4;        // claimed names in a summary

// The gateway's send queue toward one agent: frames on channel 0 (answers, notices, key
// acknowledgements, errors) are bounded apart from channel traffic, and PONGs coalesce (at
// most one is pending). An agent that keeps sending PINGs while the answer to earlier ones
// cannot be written (it does not read) is closed after this many such reads; so is one that
// sends more PINGs than kMaxPingsPerWindow within kPingWindowSeconds (ERROR `ping_flood`):
// a keepalive is one PING per third of the dead-peer bound (kMinDeadPeerSeconds: every 2 s).
inline constexpr std::size_t kMaxQueuedControlBytes = 64 * 1024;
inline constexpr int kMaxStalledPingReads = 16;
inline constexpr int kMaxPingsPerWindow = 60;
inline constexpr int kPingWindowSeconds = 60;

enum class frame_type : std::uint8_t {
  // control, channel 0, JSON payload
  hello = 0x01,            // agent -> gateway: version, machine, mechanisms, scopes
  challenge = 0x02,        // gateway -> agent: CHAP identifier + mechanism parameters
  response = 0x03,         // agent -> gateway: CHAP response
  success = 0x04,          // gateway -> agent: authenticated (+ SCRAM server signature)
  failure = 0x05,          // gateway -> agent: authentication refused; the tunnel closes
  key_offer = 0x06,        // agent -> gateway: a new session key (voids the previous one)
  key_ack = 0x07,          // gateway -> agent: key registered, with its expiry
  notice = 0x08,           // gateway -> agent: attach, grant, revoke, channel events
  stop = 0x09,             // agent -> gateway: the customer ends everything
  end = 0x0a,              // gateway -> agent: the session ended (owner, revocation, expiry)
  receipt = 0x0b,          // gateway -> agent: signed receipt of the ended session
  ping = 0x0c,             // either: keepalive
  pong = 0x0d,             // either: keepalive answer
  rekey = 0x0e,            // gateway -> agent: KeyUpdate done, a CHALLENGE follows
  error = 0x0f,            // either: protocol error, then close
  status = 0x10,           // agent -> gateway: asks for the session state (owner, grants)
  status_reply = 0x11,     // gateway -> agent
  receipt_ack = 0x12,      // agent -> gateway: {session}: the receipt of that session is stored
  // channels, channel id >= 1
  channel_open = 0x20,     // gateway -> agent: JSON {scope, access_type, window}
  channel_accept = 0x21,   // agent -> gateway: JSON {window}
  channel_reject = 0x22,   // agent -> gateway: JSON {reason}
  data = 0x23,             // either: raw bytes, at most the peer's window
  window = 0x24,           // either: 4-byte increment of the sender's receive window
  eof = 0x25,              // either: no more DATA in this direction (half-close)
  close = 0x26,            // either: the channel is gone; answered by close
  // reserved for file transfer (SPEC §2.10)
  upload_begin = 0x30,
  upload_chunk = 0x31,
  upload_end = 0x32,
  upload_ack = 0x33,
};

[[nodiscard]] bool is_known(std::uint8_t t);
[[nodiscard]] bool is_control(frame_type t);   // travels on channel 0 with a JSON payload
[[nodiscard]] std::string_view name_of(frame_type t);

inline constexpr std::uint8_t kFlagsNone = 0;

struct frame_header {
  frame_type type = frame_type::ping;
  std::uint8_t flags = 0;
  std::uint32_t channel = 0;
  std::uint32_t length = 0;
};

struct frame {
  frame_header header;
  std::vector<std::uint8_t> payload;
};

enum class decode_error {
  none = 0,
  unknown_type,       // a type byte this version does not know
  reserved_bits,      // flags or the reserved bytes are not zero
  bad_channel,        // control frame off channel 0, channel frame on 0, or id too large
  oversized,          // length above the limit for this frame type
  bad_window_length,  // WINDOW payload is not exactly 4 bytes
  empty_control,      // a control frame without its JSON object
};
[[nodiscard]] std::string_view describe(decode_error e);

// Checks a header against the protocol's rules (what the decoder does for every frame).
[[nodiscard]] decode_error check_header(const frame_header& h);
[[nodiscard]] std::size_t max_payload(frame_type t);

// Writes the 12-byte header for `h`.
void encode_header(const frame_header& h, std::span<std::uint8_t, kHeaderBytes> out);
[[nodiscard]] std::vector<std::uint8_t> encode(frame_type t, std::uint32_t channel,
                                               std::span<const std::uint8_t> payload,
                                               std::uint8_t flags = kFlagsNone);
[[nodiscard]] std::vector<std::uint8_t> encode_window(std::uint32_t channel, std::uint32_t increment);
// The increment a WINDOW frame carries (its payload is exactly 4 bytes once decoded).
[[nodiscard]] std::uint32_t window_increment(const frame& f);

// Incremental decoder: feed bytes as they arrive, take frames out. Holds at most one
// partial frame (kHeaderBytes + the largest payload) and kSpareBuffers payload buffers given
// back with recycle(), so memory per tunnel is bounded. After an error it stays failed: the
// caller closes the tunnel with a protocol error.
//
// Two ways in, which may be mixed: feed() copies bytes the caller read elsewhere; room() and
// commit() let the caller read the stream straight into the decoder (the rest of the header,
// then the rest of the payload, in the buffer the frame will carry), so a DATA payload is not
// copied once more on its way (docs/performance.md, the data path).
class decoder {
 public:
  // 32 payloads of at most 32 KiB: 1 MiB per decoder at most, only where recycle() is used
  // (the agent, one tunnel); enough for a writer's usual batch, so its payloads come back.
  static constexpr std::size_t kSpareBuffers = 32;

  // Consumes as much of `bytes` as it can; returns how many bytes it took. Stops early
  // when a complete frame is ready (take it with next()) or on error.
  std::size_t feed(std::span<const std::uint8_t> bytes);
  // Where the next bytes of the stream go: the rest of the current header or payload. Empty
  // while a complete frame waits to be taken, and after an error.
  [[nodiscard]] std::span<std::uint8_t> room();
  // `n` bytes (at most room().size()) were written at the start of room().
  void commit(std::size_t n);
  [[nodiscard]] std::optional<frame> next();
  [[nodiscard]] decode_error error() const { return error_; }
  // Bytes of the partial frame held now (of its header, or of its payload).
  [[nodiscard]] std::size_t buffered() const { return header_ ? have_ : head_have_; }
  // A payload the caller is done with: its memory serves a later frame's payload instead of a
  // new allocation (kept only while fewer than kSpareBuffers wait, and if not oversized).
  void recycle(std::vector<std::uint8_t>&& b);

 private:
  void header_complete();
  void payload_progress();
  void put_payload(const std::uint8_t* p, std::size_t n);

  std::array<std::uint8_t, kHeaderBytes> head_{};
  std::size_t head_have_ = 0;
  std::optional<frame_header> header_;
  std::vector<std::uint8_t> payload_;  // [0, have_) received; may be longer (a recycled buffer)
  std::size_t have_ = 0;
  std::optional<frame> ready_;
  std::vector<std::vector<std::uint8_t>> spare_;
  decode_error error_ = decode_error::none;
};

}  // namespace rsgate::tunnel
