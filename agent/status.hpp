// `rsgate-agent status` for people: the running agent's state (the JSON object its control
// socket answers, the same as `status --json`) as one fact per line. Pure; any thread.
#pragma once
#include <string>
#include <string_view>

namespace rsgate::agent {

// The lines `rsgate-agent status` prints for `json`; `json` itself, unchanged, when it is not
// a JSON object (an older agent, or an error text).
[[nodiscard]] std::string render_status(std::string_view json);

}  // namespace rsgate::agent
