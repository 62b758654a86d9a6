// The gateway's data directory (SPEC §3): journal.db, state.db, ca.pem, server.pem and keys/.
// prepare_data_dir() creates whatever is missing and never overwrites what exists, so it is
// safe on every start; it returns the one-time admin password only when it created the admin.
#pragma once
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "core/clock.hpp"

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
  std::optional<std::string> admin_password;  // print once, never again
};

[[nodiscard]] prepare_result prepare_data_dir(const data_layout& d, const prepare_options& o,
                                              micros now);

// True when the directory holds a journal and the signing key (what `serve` needs).
[[nodiscard]] bool is_prepared(const data_layout& d);

}  // namespace rsgate::gateway
