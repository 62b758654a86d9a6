// Building and signing a session's receipt from the journal (SPEC §2.8, docs/protocol.md
// §4.12): the gateway reads the session's own entries once its session.end is durable, and
// the journal's head at that moment, and signs the result with the journal key. What the body
// says comes from the journal alone, so an auditor can rebuild it; the receipt's format and
// its checks are protocol/receipt.hpp's.
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "journal/entry.hpp"
#include "journal/keys.hpp"
#include "protocol/receipt.hpp"

namespace rsgate::journal {

class reader;

struct receipt_input {
  std::string gateway;           // the journal's gateway name
  std::vector<entry> entries;    // the session's entries, in seq order
  std::int64_t head_seq = 0;     // the journal's head when the receipt is built
  std::string head_hash;
  micros issued_at = 0;
};

// The body's lists are cut, marked `truncated`, until the signed RECEIPT fits a control frame
// (16 KiB); the totals keep the full counts.
[[nodiscard]] std::string build_receipt_body(const receipt_input& in);
[[nodiscard]] tunnel::signed_receipt sign_receipt(std::string body, const signing_key& key);

// The receipt of `session_id` from journal file 0 of `rd`: its entries and the head, read in one
// transaction. nullopt when the journal holds no ok session.end for it (yet).
[[nodiscard]] std::optional<tunnel::signed_receipt> make_receipt(reader& rd, const std::string& session_id,
                                                                 const signing_key& key, micros now);

}  // namespace rsgate::journal
