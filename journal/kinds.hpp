// The event kinds a journal entry may carry (SPEC §5), in one list so the CLI can refuse an
// unknown --kind and the gateway cannot invent one by a typo.
#pragma once
#include <span>
#include <string_view>

namespace rsgate::journal {

inline constexpr std::string_view kKinds[] = {
    "gateway.start",      "gateway.stop",      "gateway.reload",      "gateway.drain",      "tunnel.connect",    "tunnel.auth",
    "tunnel.reauth",      "tunnel.close",      "session.key_issued", "session.attach",
    "session.grant",      "session.revoke",    "session.transfer",  "session.end",
    "channel.open",       "channel.approval",  "channel.close",     "file.upload",       "file.download",
    "user.login",         "user.lockout",      "admin.user",        "admin.machine",
    "audit.query",        "journal.checkpoint",
};

[[nodiscard]] constexpr bool is_known_kind(std::string_view k) {
  for (auto known : kKinds)
    if (known == k) return true;
  return false;
}

}  // namespace rsgate::journal
