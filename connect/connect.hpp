// `rsgate connect`: exposes one scope of a session as a local TCP listener on the
// representative's workstation (like `ssh -L`). Every accepted connection asks the gateway
// for a channel (POST /api/v1/sessions/{id}/channels) and relays its bytes over the
// channel's WebSocket stream (docs/api.md), half-close included.
#pragma once
#include <iosfwd>
#include <string>
#include <vector>

namespace rsgate::representative {

int run_connect(const std::vector<std::string>& args, std::ostream& out, std::ostream& err);

}  // namespace rsgate::representative
