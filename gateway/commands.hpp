// `rsgate serve` and `rsgate init`: flag parsing and wiring of the gateway's parts. The
// network runtime is in runtime.cpp; main.cpp only dispatches to these.
#pragma once
#include <iosfwd>
#include <string>
#include <vector>

namespace rsgate::gateway {

// args[0] is the command name. Exit codes per SPEC §3: 0 ok, 1 refused/failed, 2 bad usage.
int run_serve(const std::vector<std::string>& args, std::ostream& out, std::ostream& err);
int run_init(const std::vector<std::string>& args, std::ostream& out, std::ostream& err);

}  // namespace rsgate::gateway
