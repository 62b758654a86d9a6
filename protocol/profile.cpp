// See profile.hpp. toml++ parses only this operator-installed file (TOOLCHAIN.md).
#include "protocol/profile.hpp"
#include "protocol/http_connect.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <charconv>
#include <map>
#include <set>
#include <sstream>
#include <stdexcept>
#include <toml++/toml.h>

#include "auth/formats.hpp"
#include "core/files.hpp"
#include "protocol/messages.hpp"
#include "protocol/receipt.hpp"

namespace rsgate::agent {

bool parse_host_port(std::string_view hp, std::string& host, std::uint16_t& port) {
  auto colon = hp.rfind(':');
  if (colon == std::string_view::npos || colon == 0 || colon + 1 == hp.size()) return false;
  host = std::string(hp.substr(0, colon));
  if (host.size() > 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
  if (host.size() > 253) return false;
  for (char c : host)
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '-' || c == ':' || c == '_'))
      return false;
  unsigned p = 0;
  auto ps = hp.substr(colon + 1);
  auto [end, ec] = std::from_chars(ps.data(), ps.data() + ps.size(), p);
  if (ec != std::errc{} || end != ps.data() + ps.size() || p == 0 || p > 65535) return false;
  port = static_cast<std::uint16_t>(p);
  return true;
}

namespace {

std::string quote(std::string_view s) {
  std::ostringstream o;
  o << toml::value<std::string>(std::string(s));
  return o.str();
}

std::string format_host_port(const std::string& host, std::uint16_t port) {
  return (host.find(':') != std::string::npos ? "[" + host + "]" : host) + ":" + std::to_string(port);
}

}  // namespace

scope_mapping parse_scope_mapping(std::string_view text) {
  auto eq = text.find('=');
  if (eq == std::string_view::npos) throw std::invalid_argument("expected NAME=HOST:PORT");
  scope_mapping m;
  m.name = std::string(text.substr(0, eq));
  if (!tunnel::is_scope_name(m.name))
    throw std::invalid_argument("scope name must be [a-z0-9][a-zA-Z0-9:._-]*, at most 64 characters");
  if (!parse_host_port(text.substr(eq + 1), m.host, m.port))
    throw std::invalid_argument("expected NAME=HOST:PORT with a port from 1 to 65535");
  return m;
}

std::string to_toml(const profile& p) {
  std::string out =
      "# rsgate agent profile: give it to rsgate-agent with --profile. It holds this machine's\n"
      "# secret: keep it mode 0600, readable by the agent's account only.\n\n[gateway]\n";
  out += fmt::format("primary = {}\n", quote(p.primary));
  out += fmt::format("backup = {}\n", quote(p.backup));
  out += fmt::format("server_name = {}\n", quote(p.server_name));
  out += fmt::format("proxy = {}\n", quote(p.proxy));
  out += fmt::format("ca = {}\n", quote(p.ca_pem));
  out += "# The journal public keys of this gateway and its pair: a receipt must be signed by one.\n";
  out += "receipt_keys = [";
  for (size_t i = 0; i < p.receipt_keys.size(); ++i) out += (i ? ", " : "") + quote(p.receipt_keys[i]);
  out += "]\n\n[machine]\n";
  out += fmt::format("type = {}\nmodel = {}\nserial = {}\nsecret = {}\n", quote(p.type),
                     quote(p.model), quote(p.serial), quote(p.secret));
  out += "mechanisms = [";
  for (size_t i = 0; i < p.mechanisms.size(); ++i) out += (i ? ", " : "") + quote(p.mechanisms[i]);
  out += fmt::format("]\n\n[session]\nkey_expiry_minutes = {}\n", p.key_expiry_minutes);
  out += "# Seconds the customer has to approve a channel to an \"ask\" scope (5-240).\n";
  out += fmt::format("approval_seconds = {}\n", p.approval_seconds);
  if (!p.receipts_dir.empty()) out += fmt::format("receipts_dir = {}\n", quote(p.receipts_dir));
  out += "\n[scopes]\n";
  out += "# NAME = \"HOST:PORT\": what the customer offers; the gateway never learns HOST:PORT.\n";
  for (auto& s : p.scopes) out += fmt::format("{} = {}\n", quote(s.name), quote(format_host_port(s.host, s.port)));
  out += "\n[policy]\n# NAME = \"allow\" (the default), \"ask\" (approve each channel at the agent:\n"
         "# rsgate-agent approve|refuse N) or \"deny\" (not offered at all).\n";
  for (auto& s : p.scopes)
    if (s.policy != scope_policy::allow) out += fmt::format("{} = {}\n", quote(s.name), quote(to_string(s.policy)));
  return out;
}

namespace {

// A parsed profile file and the name its errors carry.
struct profile_reader {
  const std::string& origin;  // the file's name, or what the caller calls the text
  toml::table t;

  [[nodiscard]] std::runtime_error fail(const std::string& why) const {
    return std::runtime_error(origin + ": " + why);
  }
  std::string str(std::string_view path, bool required) const {
    auto v = t.at_path(path).value<std::string>();
    if (!v && required) throw fail(fmt::format("{} is missing", path));
    return v.value_or("");
  }
  void known_keys_only() const;
  void gateway(profile& p) const;
  void machine(profile& p) const;
  void session(profile& p) const;
  void scopes(profile& p) const;
  void policy(profile& p) const;
};

// Strict, like the gateway's configuration: a misspelt key (a `backup` the agent would never
// try, a `proxy` it would never use) is an error naming it, not a setting silently ignored.
void profile_reader::known_keys_only() const {
  static const std::map<std::string_view, std::set<std::string_view>> known = {
      {"gateway", {"primary", "backup", "server_name", "proxy", "ca", "receipt_keys"}},
      {"machine", {"type", "model", "serial", "secret", "mechanisms"}},
      {"session", {"key_expiry_minutes", "approval_seconds", "receipts_dir"}},
      {"scopes", {}},  // any scope name; each value is checked by scopes()
      {"policy", {}},  // scope names of [scopes]; checked by policy()
  };
  for (auto& [section, value] : t) {
    auto it = known.find(section.str());
    if (it == known.end()) throw fail(fmt::format("{}: unknown section", section.str()));
    auto* table = value.as_table();
    if (!table) throw fail(fmt::format("{} must be a table", section.str()));
    if (section.str() == "scopes" || section.str() == "policy") continue;
    for (auto& [key, v] : *table)
      if (!it->second.contains(key.str())) throw fail(fmt::format("{}.{}: unknown setting", section.str(), key.str()));
  }
}

void profile_reader::gateway(profile& p) const {
  p.primary = str("gateway.primary", true);
  p.backup = str("gateway.backup", false);
  p.server_name = str("gateway.server_name", true);
  if (p.server_name.empty()) throw fail("gateway.server_name is empty: the agent could not check the gateway's certificate");
  p.proxy = str("gateway.proxy", false);
  p.ca_pem = str("gateway.ca", true);
  std::string host;
  std::uint16_t port = 0;
  if (!parse_host_port(p.primary, host, port)) throw fail("gateway.primary must be HOST:PORT");
  if (!p.backup.empty() && !parse_host_port(p.backup, host, port))
    throw fail("gateway.backup must be HOST:PORT");
  std::string why;
  if (!p.proxy.empty() && !parse_proxy_url(p.proxy, why)) throw fail("gateway.proxy " + why);
  if (p.ca_pem.find("-----BEGIN CERTIFICATE-----") == std::string::npos)
    throw fail("gateway.ca must hold a PEM certificate");
  if (auto n = t.at_path("gateway.receipt_keys"); n) {
    auto* arr = n.as_array();
    if (!arr || arr->size() > 8) throw fail("gateway.receipt_keys must be a list of at most 8 public keys");
    for (auto& v : *arr) {
      auto k = v.value<std::string>();
      if (!k || !tunnel::parse_receipt_key(*k)) throw fail("gateway.receipt_keys: each key must be 64 hex digits");
      p.receipt_keys.push_back(*k);
    }
  }
}

void profile_reader::machine(profile& p) const {
  p.type = str("machine.type", true);
  p.model = str("machine.model", true);
  p.serial = str("machine.serial", true);
  p.secret = str("machine.secret", true);
  if (!auth::is_valid_machine(p.machine())) throw fail("machine type/model/serial must form TTTT-MMM*SSSSSSS");
  if (p.secret.size() < 16) throw fail("machine.secret is too short");
  if (auto arr = t.at_path("machine.mechanisms").as_array()) {
    p.mechanisms.clear();
    for (auto& v : *arr) {
      auto s = v.value<std::string>();
      if (!s || (*s != tunnel::kMechanismScram && *s != tunnel::kMechanismMd5))
        throw fail("machine.mechanisms may hold scram-sha-256 and md5");
      p.mechanisms.push_back(*s);
    }
    if (p.mechanisms.empty()) throw fail("machine.mechanisms is empty");
  }
}

void profile_reader::session(profile& p) const {
  // Whole numbers only: "30" or 1.5 is an error naming the key, never a default silently used.
  auto whole = [&](std::string_view key, std::int64_t lo, std::int64_t hi, int& out) {
    auto n = t.at_path(key);
    if (!n) return;
    auto k = n.value_exact<std::int64_t>();
    if (!k || *k < lo || *k > hi) throw fail(fmt::format("{} must be a whole number from {} to {}", key, lo, hi));
    out = static_cast<int>(*k);
  };
  whole("session.key_expiry_minutes", 1, 1440, p.key_expiry_minutes);
  whole("session.approval_seconds", tunnel::kMinApprovalSeconds, tunnel::kMaxApprovalSeconds, p.approval_seconds);
  if (auto n = t.at_path("session.receipts_dir"); n) {
    auto d = n.value<std::string>();
    if (!d || d->empty() || d->size() > 4096 || d->find('\0') != std::string::npos)
      throw fail("session.receipts_dir must be a directory path");
    p.receipts_dir = *d;
  }
}

void profile_reader::scopes(profile& p) const {
  auto sc = t["scopes"].as_table();
  if (!sc) return;
  if (sc->size() > tunnel::kMaxScopes) throw fail("too many scopes");
  for (auto& [k, v] : *sc) {
    auto hp = v.value<std::string>();
    if (!hp) throw fail(fmt::format("scopes.{} must be \"HOST:PORT\"", k.str()));
    try {
      p.scopes.push_back(parse_scope_mapping(std::string(k.str()) + "=" + *hp));
    } catch (const std::invalid_argument& e) {
      throw fail(fmt::format("scopes.{}: {}", k.str(), e.what()));
    }
  }
}

void profile_reader::policy(profile& p) const {
  auto pol = t["policy"].as_table();
  if (!pol) return;
  for (auto& [k, v] : *pol) {
    const std::string_view name = k.str();  // clang 14 cannot capture a structured binding
    auto it = std::find_if(p.scopes.begin(), p.scopes.end(), [name](auto& s) { return s.name == name; });
    if (it == p.scopes.end()) throw fail(fmt::format("policy.{}: no such scope in [scopes]", k.str()));
    auto choice = v.value<std::string>();
    if (!choice || (*choice != "allow" && *choice != "ask" && *choice != "deny"))
      throw fail(fmt::format("policy.{} must be \"allow\", \"ask\" or \"deny\"", k.str()));
    it->policy = *choice == "ask" ? scope_policy::ask : *choice == "deny" ? scope_policy::deny : scope_policy::allow;
  }
}

}  // namespace

std::string to_string(scope_policy p) {
  switch (p) {
    case scope_policy::ask: return "ask";
    case scope_policy::deny: return "deny";
    case scope_policy::allow: break;
  }
  return "allow";
}

profile load_profile(const std::filesystem::path& file) {
  const std::string name = file.string();
  if (!std::filesystem::exists(file)) throw std::runtime_error(name + ": no such profile");
  if (is_group_or_world_accessible(file))
    throw std::runtime_error(name + ": readable by group or others; it holds the machine's secret: chmod 600 it");
  return parse_profile(read_file(file, 1 << 20), name);
}

std::filesystem::path receipts_directory(const profile& p, const std::filesystem::path& profile_file) {
  if (!p.receipts_dir.empty()) return p.receipts_dir;
  return std::filesystem::absolute(profile_file).parent_path() / "receipts";
}

profile parse_profile(std::string_view text, const std::string& name) {
  profile_reader r{name, {}};
  try {
    r.t = toml::parse(text, name);
  } catch (const toml::parse_error& e) {
    throw r.fail(fmt::format("line {}: {}", e.source().begin.line, e.description()));
  }
  profile p;
  r.known_keys_only();
  r.gateway(p);
  r.machine(p);
  r.session(p);
  r.scopes(p);
  r.policy(p);
  return p;
}

}  // namespace rsgate::agent
