// What the administration commands (`rsgate user`, `machine`, `token`) share: which data
// directory and configuration they act on, and the journal records of what they did and of
// what they refused. Every action is journaled before it changes state.db; every refusal that
// comes after the journal could be opened is journaled too (outcome `denied` when the state
// forbids it, `error` for bad input), with the reason; only malformed command lines and a
// directory that is not prepared are refused without a record. Entries carry the command's
// origin in `source` (journal/origin.hpp) and the affected account in `subject`.
// One admin_context per command invocation, on the main thread.
#pragma once
#include <boost/json/object.hpp>
#include <boost/program_options/variables_map.hpp>
#include <functional>
#include <optional>
#include <stdexcept>
#include <string>

#include "gateway/config.hpp"
#include "gateway/data_dir.hpp"
#include "gateway/state.hpp"
#include "journal/writer.hpp"

namespace rsgate::gateway {

// Where a command acts (SPEC §3): the data directory is --data, else the configuration's
// `gateway.data`, else ./rsgate-dev. The configuration is --config FILE, else DATA/rsgate.toml
// when it exists (what `rsgate init` writes); defaults otherwise.
struct admin_target {
  std::filesystem::path data;
  config cfg;
  bool has_config = false;
};
// Throws cli::usage_error for an unreadable or invalid configuration file.
[[nodiscard]] admin_target resolve_target(const boost::program_options::variables_map& vm);

// The journal record of one attempted action: what the refusal record needs to say.
struct attempt {
  std::string kind = "admin.user";  // or admin.machine
  std::string action;               // add, disable, passwd, token_create, enroll, revoke
  std::string subject;              // the affected account, escaped (journal::escape_for_journal)
  std::string machine;              // the affected machine, when well formed
  boost::json::object detail;       // what was asked, values escaped
};

// An action refused after the journal could be opened: journaled, then the command exits
// with `exit_code` (1 refused, 2 bad input).
struct admin_refusal : std::runtime_error {
  admin_refusal(journal::outcome r, int code, const std::string& why)
      : std::runtime_error(why), result(r), exit_code(code) {}
  journal::outcome result;
  int exit_code;
};
[[noreturn]] void deny(const std::string& why);     // denied, exit 1: the state forbids it
[[noreturn]] void refuse_value(const std::string& why);  // error, exit 2: a value is not acceptable

// The journal cannot record an action: exit 1, nothing changed, nothing more to journal.
struct journal_unavailable : std::runtime_error {
  using std::runtime_error::runtime_error;
};

class admin_context {
 public:
  // Throws cli::usage_error when the directory is not prepared; bad_gateway_name and others
  // (exit 1) when its journal cannot be opened.
  explicit admin_context(const admin_target& t);

  // Journals `a` as done (outcome ok); throws journal_unavailable when it cannot.
  void record(const attempt& a, const std::string& secret_hmac = "");
  // Journals the refusal of `a` with its reason; returns "" or why it could not be journaled.
  [[nodiscard]] std::string record_refusal(const attempt& a, const admin_refusal& r);

  data_layout layout;
  admin_target target;
  state_store state;
  journal::writer journal;
  std::string actor;   // cli:<account>
  std::string source;  // cli:USER[/LOGIN]@HOST:TTY
};

// Runs `action` (which may throw admin_refusal) and turns a refusal into its journal record
// and then the command's exit: cli::usage_error (2) or std::runtime_error (1), one line, with
// a note when the refusal itself could not be journaled.
int journaled(admin_context& ctx, attempt& a, const std::function<int()>& action);

}  // namespace rsgate::gateway
