// The customer's receipt of an ended session (SPEC §2.8, docs/protocol.md §4.12): what the
// RECEIPT frame carries and the agent stores, how its signature is checked against the gateway
// keys a profile pins, and the few facts of its body a verifier needs (the journal position it
// anchors, the machine, the session). The gateway builds and signs the body from its journal
// (journal/receipt.hpp); this side only reads it. Pure: no I/O, no clock.
#pragma once
#include <array>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace rsgate::tunnel {

inline constexpr std::string_view kReceiptFormat = "rsgate-receipt/1";
// What the signature covers: this prefix, then the body's bytes exactly as carried. The prefix
// keeps a receipt's signature from ever being valid as a journal checkpoint's, or the reverse.
inline constexpr std::string_view kReceiptSignedPrefix = "rsgate-receipt/1\n";
// A stored receipt file is read up to this size (its frame was at most 16 KiB).
inline constexpr std::size_t kMaxReceiptFileBytes = 64 * 1024;

using receipt_key = std::array<std::uint8_t, 32>;  // an Ed25519 public key (the journal's)

// RECEIPT's payload, and the file the agent stores (plus `profile`).
struct signed_receipt {
  std::string receipt;    // the body: one JSON object's text, printable ASCII
  std::string signature;  // 128 hex digits: Ed25519 over kReceiptSignedPrefix ‖ receipt
  std::string key_id;     // 16 hex digits: the first 8 bytes of SHA-256 of the signing public key
  std::string profile;    // in the stored file only: the profile the agent ran with, or ""
};

// The facts of a body that verification and anchoring use; the rest is for people.
struct receipt_body {
  std::string gateway, session, machine;
  std::string issued_at, started_at, ended_at, ended_by, end_reason;
  std::vector<std::string> pmrs, owners;  // owners: every owner in order (attach, transfers)
  std::int64_t grants = 0, channels = 0, refusals = 0;
  std::int64_t journal_seq = 0;  // the journal's head when the receipt was built
  std::string journal_hash;      // 64 lower-case hex digits
  bool truncated = false;
};

[[nodiscard]] std::string signed_message(std::string_view body);
[[nodiscard]] std::string receipt_key_id(const receipt_key& k);
// 64 hex digits (either case), nothing else.
[[nodiscard]] std::optional<receipt_key> parse_receipt_key(std::string_view hex);
[[nodiscard]] bool verify_receipt(const signed_receipt& r, const receipt_key& k);

// The stored file: RECEIPT's three keys and optionally `profile`; strict otherwise.
[[nodiscard]] std::optional<signed_receipt> parse_receipt_file(std::string_view text, std::string& why);
[[nodiscard]] std::string format_receipt_file(const signed_receipt& r);

// The body's required fields, typed and bounded; keys it does not know are allowed (the body
// is signed by the gateway, and a newer gateway may add facts). nullopt with `why` otherwise.
[[nodiscard]] std::optional<receipt_body> parse_receipt_body(std::string_view body, std::string& why);

}  // namespace rsgate::tunnel
