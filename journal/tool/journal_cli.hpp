// `rsgate journal query | verify | export | tail | pubkey` (SPEC §3): the auditors' tool,
// offline on journal files. Exit codes: 0 ok, 1 a failed check, 2 bad usage or input/I-O.
#pragma once
#include <functional>
#include <iosfwd>
#include <string>
#include <vector>

namespace rsgate::journal {

// Online use (`--gateway URL --token T`): the tool reads the gateway's REST API instead of
// files. The program that links the tool gives it the HTTPS client (connect/api_get), so the
// tool itself needs no network code.
struct online_answer {
  int status = 0;           // 0: no answer (error says why)
  std::string body;
  std::string next_cursor;  // the X-Next-Cursor header
  std::string error;
};
using online_get = std::function<online_answer(const std::string& gateway, const std::string& token,
                                               const std::string& ca, bool insecure, const std::string& target)>;
void set_online_get(online_get f);

// args[0] is the subcommand ("query", …). Writes results to `out`, one-line errors to `err`.
int run_journal_command(const std::vector<std::string>& args, std::ostream& out,
                        std::ostream& err);

}  // namespace rsgate::journal
