// `rsgate user add|list|disable|passwd`, `rsgate machine enroll|list|revoke` and
// `rsgate token create` (SPEC §3): administration of state.db, each change journaled first
// (fail closed: when the journal cannot record it, nothing changes).
#pragma once
#include <iosfwd>
#include <string>
#include <vector>

namespace rsgate::gateway {

// args[0] is the command ("user", "machine", "token"). Exit codes per SPEC §3.
int run_user(const std::vector<std::string>& args, std::istream& in, std::ostream& out, std::ostream& err);
int run_machine(const std::vector<std::string>& args, std::istream& in, std::ostream& out, std::ostream& err);
int run_token(const std::vector<std::string>& args, std::istream& in, std::ostream& out, std::ostream& err);

}  // namespace rsgate::gateway
