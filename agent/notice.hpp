// What the agent shows the customer for a NOTICE (docs/protocol.md §4.8). Every notice is
// shown: the events this agent knows get a sentence of their own, any other well-formed one a
// generic line with its event name and fields (a newer gateway may send events this agent
// does not know). A malformed NOTICE is a protocol error (ERROR `bad_notice`). Pure: no I/O.
#pragma once
#include <optional>
#include <span>
#include <string>

#include "protocol/messages.hpp"

namespace rsgate::agent {

// tunnel::parse_notice, except that an `event` this version does not know is accepted when
// it is a plain name ([a-z0-9_], 1-32 characters) and every other field is valid.
[[nodiscard]] std::optional<tunnel::notice> parse_notice_for_display(std::span<const std::uint8_t> payload,
                                                                     std::string& why);

// The customer's line for a notice, without the "[ts] " prefix. Every field is printable
// ASCII (the parser checked), so nothing can reach the terminal as a control sequence.
[[nodiscard]] std::string describe_notice(const tunnel::notice& n);

}  // namespace rsgate::agent
