// The agent profile (TOML, mode 0600): where the gateway is, which CA to trust, which machine
// this is and its CHAP secret, and which local host:port each offered scope maps to. Written
// by `rsgate machine enroll` on the vendor side, read by `rsgate-agent` on the customer side,
// which refuses a profile readable by group or others (it holds the machine's secret).
#pragma once
#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

namespace rsgate::agent {

// The customer's choice per scope (the profile's [policy]): `allow` opens a channel the
// gateway asks for, `ask` waits for the customer's approval at the agent, `deny` does not
// offer the scope at all.
enum class scope_policy { allow, ask, deny };

struct scope_mapping {
  std::string name;  // offered to the gateway
  std::string host;  // stays on the customer side
  std::uint16_t port = 0;
  scope_policy policy = scope_policy::allow;
};

struct profile {
  std::string primary;      // gateway tunnel address "host:port"
  std::string backup;       // "" or "host:port"
  std::string server_name;  // name the gateway's certificate must carry
  std::string ca_pem;       // the pinned vendor CA
  std::string proxy;        // "" or "http://[user:password@]host:port" (HTTP CONNECT, protocol/http_connect.hpp)
  std::string type, model, serial;
  std::string secret;
  std::vector<std::string> mechanisms = {"scram-sha-256"};
  std::vector<scope_mapping> scopes;
  int key_expiry_minutes = 60;
  int approval_seconds = 60;  // how long an `ask` scope's request waits for the customer
  // The gateways' journal public keys (hex) a receipt must be signed with: this gateway's
  // and its pair's (docs/protocol.md §4.12). Empty: receipts are kept but cannot be checked.
  std::vector<std::string> receipt_keys;
  std::string receipts_dir;  // where receipts are stored; "" = "receipts" next to the profile

  [[nodiscard]] std::string machine() const { return type + "-" + model + "*" + serial; }
};

// "HOST:PORT" or "[IPv6]:PORT": the host (brackets removed) and a port 1..65535; false when
// the text is not one (the profile's addresses and scopes, the agent's connect).
[[nodiscard]] bool parse_host_port(std::string_view hp, std::string& host, std::uint16_t& port);

// "NAME=HOST:PORT" as given to `rsgate machine enroll --scope`; throws std::invalid_argument.
[[nodiscard]] scope_mapping parse_scope_mapping(std::string_view text);

[[nodiscard]] std::string to_string(scope_policy p);
[[nodiscard]] std::string to_toml(const profile& p);
// Validates a profile's text; throws std::runtime_error prefixed with `name` and the problem.
[[nodiscard]] profile parse_profile(std::string_view text, const std::string& name);
// Reads and validates a profile file (mode 0600 or stricter); throws std::runtime_error
// naming the file and the problem.
[[nodiscard]] profile load_profile(const std::filesystem::path& file);
// Where this profile's receipts go: receipts_dir, or "receipts" beside the profile file.
[[nodiscard]] std::filesystem::path receipts_directory(const profile& p, const std::filesystem::path& profile_file);

}  // namespace rsgate::agent
