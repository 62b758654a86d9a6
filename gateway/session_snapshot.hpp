// A live session as state.db keeps it across a gateway restart (docs/protocol.md §9): what
// the registry holds about it that outlives a tunnel — machine, offered scopes, state, owner,
// PMRs, grants, the session key as its keyed hash — as one JSON object. Channels and the
// tunnel's presence are not in it: they end with the process. Pure; the parser is strict
// (every field present and in range, nothing unknown), since the text comes from a file.
#pragma once
#include <optional>
#include <string>
#include <string_view>

#include "gateway/sessions.hpp"

namespace rsgate::gateway {

[[nodiscard]] std::string to_snapshot(const session& s);
// nullopt with `why` when the text is not a snapshot this version wrote.
[[nodiscard]] std::optional<session> session_from_snapshot(std::string_view text, std::string& why);

}  // namespace rsgate::gateway
