// Machine enrollment (SPEC §3): create a machine's CHAP secret, keep only its SCRAM verifier
// (and, for legacy MD5, the secret sealed with keys/master.key), journal it first, and hand
// back the agent profile for the customer. Used by `rsgate machine enroll` and by
// `rsgate serve --dev` for its demo machine.
#pragma once
#include <string>
#include <vector>

#include "protocol/profile.hpp"
#include "gateway/data_dir.hpp"
#include "gateway/state.hpp"
#include "journal/writer.hpp"

namespace rsgate::gateway {

struct enrollment_refused : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// Who enrolls and how: the entry's actor and source (journal/origin.hpp), and whether an
// enrolled machine (active or revoked) may be enrolled again with a fresh secret.
struct enroll_options {
  bool md5 = false;
  bool replace = false;
  // `machine import`: keep the profile's secret and mechanisms (the same machine enrolled on
  // the other gateway of a pair, docs/operations.md §10) instead of creating a new secret.
  bool import = false;
  std::string actor;
  std::string source;
  // Public keys (hex) pinned in the profile besides this gateway's journal key: the pair's
  // (`[peer] receipt_key`), so that receipts from either verify (docs/protocol.md §4.12).
  std::vector<std::string> receipt_keys;
};

// `p` carries machine type/model/serial, scopes, gateway addresses, server name and CA;
// the secret and mechanisms are filled in (kept as given when `how.import`). Journals
// `admin.machine` {"action":"enroll"} (or "replace" for a machine enrolled before, "import")
// first. Throws enrollment_refused when the machine
// is enrolled already without `replace`, or the journal cannot record the enrollment (then
// nothing is stored).
[[nodiscard]] agent::profile enroll_machine(const data_layout& layout, journal::writer& journal,
                                            state_store& state, agent::profile p,
                                            const enroll_options& how);

}  // namespace rsgate::gateway
