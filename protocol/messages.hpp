// The control messages of rsgate/1 (docs/protocol.md §4): one struct per message, a parser
// that validates every field and length before anything else sees it, and a serialiser.
// Parsers are strict: an unknown key, a wrong type or an out-of-range value is an error, so
// both sides agree on exactly one reading of every message. No I/O; fuzzed directly.
#pragma once
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "core/encoding.hpp"
#include "protocol/receipt.hpp"
#include "protocol/wire.hpp"

namespace rsgate::tunnel {

inline constexpr std::string_view kMechanismScram = "scram-sha-256";
inline constexpr std::string_view kMechanismMd5 = "md5";
inline constexpr std::size_t kNonceMinBytes = 18;
inline constexpr std::size_t kNonceMaxBytes = 64;
inline constexpr std::size_t kMaxReasonBytes = 256;
inline constexpr std::size_t kMaxApproverBytes = 64;

struct scope_offer {
  std::string name;   // [a-z0-9][a-z0-9:._-]{0,63}, e.g. "hmc", "partition:LP01"
  std::string label;  // for people, up to 128 printable bytes; may be empty
  bool ask = false;   // the customer approves each channel to it (docs/protocol.md §8.1)
};

struct hello {
  int version = kProtocolVersion;
  std::string agent;       // "rsgate-agent/0.1.0"
  std::string machine;     // "TTTT-MMM*SSSSSSS", upper case
  std::vector<std::string> mechanisms;  // preference order
  std::string client_nonce;             // printable base64 text, 24..88 chars
  std::vector<scope_offer> scopes;
  std::string resume;                   // a session id to resume after a drop, or ""
  // How long the customer has to approve a channel to an `ask` scope: kMinApprovalSeconds..
  // kMaxApprovalSeconds when a scope asks, else 0 (absent on the wire).
  int approval_seconds = 0;
  // This agent stores the receipts of its machine's earlier sessions that the gateway sends
  // after SUCCESS, and acknowledges every receipt with RECEIPT_ACK (`receipts`: true).
  bool receipts = false;
};

struct challenge {
  int id = 0;  // CHAP identifier, 0..255
  std::string mechanism;
  // scram-sha-256
  std::string nonce;        // client_nonce followed by the gateway's part
  bytes salt;
  std::uint32_t iterations = 0;
  // md5
  bytes value;              // the CHAP challenge, 16..64 bytes
};

struct response {
  int id = 0;
  bytes proof;  // scram: ClientProof, 32 bytes; md5: MD5 digest, 16 bytes
};

struct success {
  int id = 0;
  bytes server_signature;  // scram only (32 bytes); empty for md5
  std::string session;     // the session id this tunnel serves
  int rekey_seconds = kRekeySeconds;
  int max_tunnel_seconds = kMaxTunnelSeconds;
  int keepalive_seconds = kDeadPeerSeconds;  // the dead-peer bound both sides keep (§2.1)
  int grace_seconds = kReconnectGraceSeconds;  // how long the session waits for a reconnect (§9)
};

struct failure {
  int id = 0;
  std::string reason;
  std::int64_t retry_after_seconds = 0;  // > 0 while the machine is locked out
};

struct key_offer {
  std::string key;              // display form, e.g. "7KQ4-M2XP-9RTA-W"
  std::int64_t expires_in = 3600;  // seconds, 60..86400
};

struct key_ack {
  std::string expires_at;  // RFC 3339
};

struct notice {
  std::string event;  // attach, attach_refused, grant, revoke, transfer, channel_open,
                      // channel_close, session_end, key_used
  std::string ts;     // RFC 3339
  std::string actor, user, pmr, scope, access_type, reason;
  std::uint32_t channel = 0;
  std::int64_t bytes_in = 0, bytes_out = 0;
};

struct channel_open {
  std::string scope;
  std::string access_type;
  std::string actor;  // who opened it, for the customer's screen
  std::uint32_t window = kInitialWindow;
};

// The customer's decision on a channel to an `ask` scope (docs/protocol.md §8.1).
struct approval {
  std::string decision;  // "approved", "refused" or "timeout"
  std::string by;        // the customer's account that decided; "" for a timeout
};

struct channel_accept {
  std::uint32_t window = kInitialWindow;
  std::optional<approval> approved;  // decision "approved": present exactly on an `ask` scope
};

struct channel_reject {
  std::string reason;
  std::optional<approval> decided;  // on an `ask` scope once the customer decided (or timed out)
};

struct reason_only {  // STOP, END, CHANNEL_REJECT
  std::string reason;
};

struct receipt_ack {  // RECEIPT_ACK: the receipt of `session` is stored at the agent
  std::string session;
};

struct rekey {};  // REKEY: `{}` (docs/protocol.md §6)

struct error_message {
  std::string code;
  std::string message;
};

// Access types a channel may carry (SPEC §2.7).
[[nodiscard]] bool is_access_type(std::string_view s);
[[nodiscard]] bool is_scope_name(std::string_view s);
[[nodiscard]] bool is_notice_event(std::string_view s);

// Parsers: nullopt with `why` set when the payload is not exactly a valid message.
[[nodiscard]] std::optional<hello> parse_hello(std::span<const std::uint8_t> p, std::string& why);
[[nodiscard]] std::optional<challenge> parse_challenge(std::span<const std::uint8_t> p, std::string& why);
[[nodiscard]] std::optional<response> parse_response(std::span<const std::uint8_t> p, std::string& why);
[[nodiscard]] std::optional<success> parse_success(std::span<const std::uint8_t> p, std::string& why);
[[nodiscard]] std::optional<failure> parse_failure(std::span<const std::uint8_t> p, std::string& why);
[[nodiscard]] std::optional<key_offer> parse_key_offer(std::span<const std::uint8_t> p, std::string& why);
[[nodiscard]] std::optional<key_ack> parse_key_ack(std::span<const std::uint8_t> p, std::string& why);
[[nodiscard]] std::optional<notice> parse_notice(std::span<const std::uint8_t> p, std::string& why);
[[nodiscard]] std::optional<channel_open> parse_channel_open(std::span<const std::uint8_t> p, std::string& why);
[[nodiscard]] std::optional<channel_accept> parse_channel_accept(std::span<const std::uint8_t> p, std::string& why);
[[nodiscard]] std::optional<channel_reject> parse_channel_reject(std::span<const std::uint8_t> p, std::string& why);
[[nodiscard]] std::optional<reason_only> parse_reason(std::span<const std::uint8_t> p, std::string& why);
// RECEIPT (docs/protocol.md §4.12): `receipt` printable, `signature` 128 and `key_id` 16 hex
// digits; `profile` is the stored file's, never the frame's.
[[nodiscard]] std::optional<signed_receipt> parse_receipt(std::span<const std::uint8_t> p, std::string& why);
[[nodiscard]] std::optional<receipt_ack> parse_receipt_ack(std::span<const std::uint8_t> p, std::string& why);
[[nodiscard]] std::optional<rekey> parse_rekey(std::span<const std::uint8_t> p, std::string& why);
[[nodiscard]] std::optional<error_message> parse_error(std::span<const std::uint8_t> p, std::string& why);

// Serialisers: the JSON payload for a frame of the matching type.
[[nodiscard]] bytes to_payload(const hello& m);
[[nodiscard]] bytes to_payload(const signed_receipt& m);
[[nodiscard]] bytes to_payload(const receipt_ack& m);
[[nodiscard]] bytes to_payload(const challenge& m);
[[nodiscard]] bytes to_payload(const response& m);
[[nodiscard]] bytes to_payload(const success& m);
[[nodiscard]] bytes to_payload(const failure& m);
[[nodiscard]] bytes to_payload(const key_offer& m);
[[nodiscard]] bytes to_payload(const key_ack& m);
[[nodiscard]] bytes to_payload(const notice& m);
[[nodiscard]] bytes to_payload(const channel_open& m);
[[nodiscard]] bytes to_payload(const channel_accept& m);
[[nodiscard]] bytes to_payload(const channel_reject& m);
[[nodiscard]] bytes to_payload(const reason_only& m);
[[nodiscard]] bytes to_payload(const rekey& m);
[[nodiscard]] bytes to_payload(const error_message& m);

// The SCRAM AuthMessage of a CHAP round (docs/protocol.md §5): client-first-bare ","
// server-first "," client-final-without-proof, with tls-exporter channel binding.
[[nodiscard]] std::string scram_auth_message(std::string_view machine, std::string_view client_nonce,
                                             const challenge& c,
                                             std::span<const std::uint8_t> exporter);

}  // namespace rsgate::tunnel
