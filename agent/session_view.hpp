// What a running agent knows about its session and shows the customer: the phase, the
// gateway, the session, the key's expiry, the owner, PMR and grants as NOTICEs told it, and
// how `status` renders that (with the open channels) as JSON. Pure: no I/O; owned by the
// agent's runtime and touched only on its one thread.
#pragma once
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "protocol/messages.hpp"

namespace rsgate::agent {

struct session_view {
  std::string state = "connecting";  // connecting, authenticating, authenticated, active, reconnecting, ended, replaced, disconnected
  std::string gateway, session, key_expires_at, owner, pmr;
  std::vector<std::string> grants;
};

// One open channel as `status` lists it.
struct channel_view {
  std::uint32_t id = 0;
  std::string scope, access_type, actor;
  std::int64_t bytes_in = 0, bytes_out = 0;
  bool awaiting_approval = false;  // an `ask` scope's request the customer has not decided yet
  std::uint32_t request = 0;       // its number (0: not a request)
};

// What a NOTICE changes: attach (owner, PMR, state active), grant, revoke, transfer; other
// events change nothing.
void apply_notice(session_view& v, const tunnel::notice& n);

// The control socket's answer to `status` (one JSON object, docs: SPEC `status --json`).
[[nodiscard]] std::string status_json(const session_view& v, const std::string& machine,
                                      const std::vector<channel_view>& channels);

// Text from the network or a parser (which may quote it) on its way to a terminal or a frame:
// printable ASCII only (anything else becomes '?'), at most `max` bytes.
[[nodiscard]] std::string printable(std::string_view s, std::size_t max);

}  // namespace rsgate::agent
