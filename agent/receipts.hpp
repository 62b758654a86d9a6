// The customer's receipts (SPEC §2.8, docs/protocol.md §4.12): what the agent checks when one
// arrives and `rsgate-agent receipt verify` checks later, and where a receipt is stored. A
// receipt is valid when its signature verifies with a gateway key the profile pins
// (`receipt_keys`), its body is well formed and it is for the profile's machine. No I/O.
#pragma once
#include <optional>
#include <string>
#include <string_view>

#include "core/clock.hpp"
#include "protocol/profile.hpp"
#include "protocol/receipt.hpp"

namespace rsgate::agent {

struct receipt_verdict {
  bool valid = false;
  std::string problem;  // when !valid: why, one sentence for the customer
  std::optional<tunnel::receipt_body> body;  // when the body could be read
  std::string key_id;   // the pinned key that verified it
};

[[nodiscard]] receipt_verdict check_receipt(const tunnel::signed_receipt& r, const profile& p);
// One line for people: session, machine, PMRs, owners, grants, channels, the end, the anchor.
[[nodiscard]] std::string describe_receipt(const tunnel::receipt_body& b);
// "<session>-<YYYYMMDDTHHMMSSZ>.json", with anything outside [A-Za-z0-9._-] of the session
// id replaced, so that a gateway's id can never name a path elsewhere.
[[nodiscard]] std::string receipt_file_name(std::string_view session, micros now);

}  // namespace rsgate::agent
