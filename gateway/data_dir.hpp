// The gateway's data directory (SPEC §3): journal.db, state.db, ca.pem, server.pem and keys/.
// prepare_data_dir() creates whatever is missing and never overwrites what exists, so it is
// safe on every start. It refuses to make new journal keys next to an existing journal (the
// old checkpoints and keyed hashes would stop verifying): lost keys are restored from backup.
#pragma once
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "core/clock.hpp"

namespace rsgate::journal {
class writer;
}

namespace rsgate::gateway {

struct data_layout {
  std::filesystem::path dir;
  [[nodiscard]] std::filesystem::path journal_db() const { return dir / "journal.db"; }
  [[nodiscard]] std::filesystem::path state_db() const { return dir / "state.db"; }
  [[nodiscard]] std::filesystem::path keys() const { return dir / "keys"; }
  [[nodiscard]] std::filesystem::path ca_cert() const { return dir / "ca.pem"; }
  [[nodiscard]] std::filesystem::path ca_key() const { return keys() / "ca.key"; }
  [[nodiscard]] std::filesystem::path server_cert() const { return dir / "server.pem"; }
  [[nodiscard]] std::filesystem::path server_key() const { return keys() / "server.key"; }
  [[nodiscard]] std::filesystem::path signing_key() const { return keys() / "journal-signing.key"; }
  [[nodiscard]] std::filesystem::path signing_pub() const { return keys() / "journal-signing.pub"; }
  [[nodiscard]] std::filesystem::path hmac_key() const { return keys() / "journal-hmac.key"; }
  [[nodiscard]] std::filesystem::path config_file() const { return dir / "rsgate.toml"; }
};

struct prepare_options {
  bool make_certificates = true;               // private CA + server certificate
  std::vector<std::string> server_names = {"localhost", "127.0.0.1", "::1"};
  std::string admin_name = "admin";
};

struct prepare_result {
  bool created_anything = false;
};

[[nodiscard]] prepare_result prepare_data_dir(const data_layout& d, const prepare_options& o);

// Creates the first administrator when state.db has no account yet: journals `admin.user`
// first (fail closed: if the journal cannot write, nothing is created and the next start
// tries again), then stores the account. Returns the one-time password, to be printed once.
// The entry's actor is `created_by`, its source `source` (journal/origin.hpp), its subject
// the new account.
[[nodiscard]] std::optional<std::string> create_first_admin(const data_layout& d,
                                                            journal::writer& journal,
                                                            const std::string& admin_name,
                                                            const std::string& created_by,
                                                            const std::string& source = "");

// The gateway name recorded when the journal was created, if there is a journal. Throws
// journal::bad_gateway_name when journal_meta holds a malformed one (someone edited it).
[[nodiscard]] std::optional<std::string> journal_gateway_name(const data_layout& d);

// True when the directory holds a journal and the signing key (what `serve` needs).
[[nodiscard]] bool is_prepared(const data_layout& d);

}  // namespace rsgate::gateway
