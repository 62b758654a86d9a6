// One journal entry and its canonical encoding (docs/journal.md, "Canonical encoding").
// Plain data and pure functions: no I/O, no clock.
#pragma once
#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "core/clock.hpp"
#include "core/encoding.hpp"

namespace rsgate::journal {

enum class outcome { ok, denied, error };
[[nodiscard]] std::string_view to_string(outcome o);
[[nodiscard]] std::optional<outcome> parse_outcome(std::string_view s);

// What a caller fills in; the writer assigns seq, ts, gateway, prev_hash and hash.
struct entry {
  std::int64_t seq = 0;
  micros ts = 0;
  std::string gateway;
  std::string kind;
  std::string actor;
  std::string source;
  std::string session_id;
  std::string pmr;
  std::string machine;
  std::string access_type;
  std::string scope;
  outcome result = outcome::ok;
  std::string secret_hmac;  // keyed hash (hex) of a secret this entry concerns, or ""
  std::string detail = "{}";  // a JSON object, stored byte for byte
  std::string prev_hash;      // hex, 64 digits
  std::string hash;           // hex, 64 digits
  // The account the action was done to (not by), e.g. the account admin.user created or
  // changed; "" when none. Added after v1: encoded only when non-empty (docs/journal.md §5).
  std::string subject;
};

using digest = std::array<std::uint8_t, 32>;

inline constexpr std::string_view kEncodingTag = "rsgate-journal-entry-v1";
inline constexpr std::string_view kGenesisHash =
    "0000000000000000000000000000000000000000000000000000000000000000";

// Limits an entry must respect before it is accepted for append (bytes).
inline constexpr std::size_t kMaxFieldBytes = 256;
inline constexpr std::size_t kMaxDetailBytes = 16 * 1024;

// The bytes that `hash` covers: every field and prev_hash, length-prefixed, in a fixed order;
// then the fields added after v1 (today `subject`), up to the last non-empty one, so that an
// entry without them encodes exactly as it did before they existed.
[[nodiscard]] bytes canonical_encoding(const entry& e);
// SHA-256 of canonical_encoding(e), lowercase hex. Requires e.prev_hash to be 64 hex digits.
[[nodiscard]] std::string compute_hash(const entry& e);

// Empty when the caller-supplied fields may be appended; otherwise why not.
[[nodiscard]] std::string validate_for_append(const entry& e);

// Gateway names go into every entry and every signature: 1-64 of A-Z a-z 0-9 . _ -
// (the rule of `rsgate init --name`; no space, no control or escape character).
[[nodiscard]] bool is_valid_gateway_name(std::string_view name);

// `s` made fit for a text field of an entry and for a terminal: printable ASCII is kept,
// every other byte and the backslash become "\xHH", and the result is cut to at most
// `max_bytes` (never inside an escape). For values a caller cannot trust to be well formed,
// such as a refused name, so that the refusal itself can still be journaled.
[[nodiscard]] std::string escape_for_journal(std::string_view s, std::size_t max_bytes = kMaxFieldBytes);

// The statement a gateway signs for a checkpoint or for the signed head (docs/journal.md).
enum class statement { checkpoint, head };
[[nodiscard]] bytes signed_statement(statement which, std::string_view gateway, std::int64_t seq,
                                     std::string_view hash_hex);

}  // namespace rsgate::journal
