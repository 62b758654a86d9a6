// `rsgate journal query | verify | export | tail | pubkey` (SPEC §3): the auditors' tool,
// offline on journal files. Exit codes: 0 ok, 1 a failed check, 2 bad usage or input/I-O.
#pragma once
#include <iosfwd>
#include <string>
#include <vector>

namespace rsgate::journal {

// args[0] is the subcommand ("query", …). Writes results to `out`, one-line errors to `err`.
int run_journal_command(const std::vector<std::string>& args, std::ostream& out,
                        std::ostream& err);

}  // namespace rsgate::journal
