// See admin_commands.hpp. Each command parses its flags first (a malformed command line is
// exit 2 with no record), then opens the data directory and its journal (admin_context), and
// from then on every outcome is journaled: the change before it is made, a refusal with its
// reason (admin_context.hpp).
#include "gateway/admin_commands.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <boost/json/serialize.hpp>
#include <boost/json/value.hpp>
#include <boost/program_options.hpp>
#include <iostream>
#include <unistd.h>

#include "protocol/profile.hpp"
#include "auth/formats.hpp"
#include "auth/password.hpp"
#include "core/files.hpp"
#include "core/timefmt.hpp"
#include "gateway/accounts.hpp"
#include "gateway/admin_context.hpp"
#include "core/cli.hpp"
#include "gateway/enroll.hpp"
#include "journal/journal.hpp"

namespace po = boost::program_options;

namespace rsgate::gateway {
namespace {

using cli::kOk, cli::kUsage, cli::usage_error;

constexpr const char* kNameRule = "1-64 of A-Z a-z 0-9 . _ @ -, starting with a letter or digit";

po::variables_map parse(const std::vector<std::string>& args, std::size_t skip,
                        const po::options_description& d, const po::positional_options_description& pos) {
  po::variables_map vm;
  std::vector<std::string> rest(args.begin() + static_cast<long>(skip), args.end());
  po::store(po::command_line_parser(rest).options(d).positional(pos).run(), vm);
  po::notify(vm);
  return vm;
}

// `list --format`: table or json.
std::string list_format(const po::variables_map& vm) {
  auto f = vm["format"].as<std::string>();
  if (f != "table" && f != "json") throw usage_error("invalid --format: table or json");
  return f;
}

void add_target_options(po::options_description& d) {
  d.add_options()
      ("data", po::value<std::string>(), "data directory (default: the configuration's, else ./rsgate-dev)")
      ("config", po::value<std::string>(), "configuration file (default: DATA/rsgate.toml if it exists)")
      ("help,h", "show this help");
}

// Shown and journaled: a value from the command line, escaped (it may hold anything).
std::string shown(std::string_view s) { return journal::escape_for_journal(s, 256); }

std::string read_password(std::istream& in) {
  std::string pw;
  std::getline(in, pw);
  while (!pw.empty() && (pw.back() == '\r' || pw.back() == '\n')) pw.pop_back();
  if (pw.size() < 12) refuse_value("the password must be at least 12 characters");
  if (pw.size() > 1024) refuse_value("the password is longer than 1024 characters");
  return pw;
}

void print_one_time_password(std::ostream& out, const std::string& name, const std::string& pw) {
  out << fmt::format("one-time password for '{}': {}\n(shown only now; it must be changed at first login)\n",
                     name, pw);
}

// The TOTP enrolment, shown once (SPEC §3): the otpauth URI on a line of its own, its QR
// code when standard output is a terminal, and the recovery codes.
std::string totp_issuer(const admin_context& ctx) {
  return !ctx.target.cfg.gateway_name.empty() ? ctx.target.cfg.gateway_name
                                              : journal_gateway_name(ctx.layout).value_or("rsgate");
}

void print_enrolment(std::ostream& out, const std::string& name, const totp_enrolment& e) {
  out << fmt::format("TOTP for '{}': add it to an authenticator app (shown only now):\n", name);
  out << e.uri << "\n";
  if (&out == &std::cout && ::isatty(STDOUT_FILENO)) out << qr_terminal(e.uri);
  out << fmt::format("Recovery codes for '{}', each usable once in place of a TOTP code:\n", name);
  for (auto& c : e.recovery_codes) out << "  " << c << "\n";
}

// `rsgate user add|disable|enable|passwd|totp-reset NAME`, after the journal is open.
int user_change(admin_context& ctx, const attempt& a, const std::string& name,
                const po::variables_map& vm, std::istream& in, std::ostream& out) {
  if (!auth::is_valid_user_name(name)) refuse_value(fmt::format("invalid name '{}': {}", shown(name), kNameRule));
  const bool from_stdin = vm.count("password-stdin") > 0;
  const std::string& sub = a.action;
  if (sub == "add") {
    auto role = vm["role"].as<std::string>();
    if (!is_role(role))
      refuse_value(fmt::format("invalid --role '{}': representative, developer, auditor or admin", shown(role)));
    std::string password = from_stdin ? read_password(in) : auth::random_secret(100);
    if (ctx.state.find_user(name)) deny(fmt::format("user '{}' exists already", name));
    ctx.record(a);
    const user_row row{name, role, auth::hash_password(password), !from_stdin, false, system_clock::instance().now()};
    if (!role_needs_totp(role)) {
      ctx.state.add_user(row);
      if (!from_stdin) print_one_time_password(out, name, password);
      return kOk;
    }
    // The account and its TOTP enrolment are stored together, or neither is.
    auto e = prepare_totp(ctx.layout, name, totp_issuer(ctx));
    ctx.state.add_user_with_totp(row, e.secret_sealed, e.code_hashes);
    if (!from_stdin) print_one_time_password(out, name, password);
    print_enrolment(out, name, e.shown);
    return kOk;
  }
  std::string password;
  if (sub == "passwd") password = from_stdin ? read_password(in) : auth::random_secret(100);
  auto u = ctx.state.find_user(name);
  if (!u) deny(fmt::format("no user '{}'", name));
  if (sub == "enable" && !u->disabled) deny(fmt::format("user '{}' is not disabled", name));
  ctx.record(a);
  if (sub == "disable" || sub == "enable") {
    ctx.state.set_disabled(name, sub == "disable");
  } else if (sub == "totp-reset") {
    print_enrolment(out, name, enrol_totp(ctx.state, ctx.layout, name, totp_issuer(ctx), system_clock::instance().now()));
  } else {
    ctx.state.set_password(name, auth::hash_password(password), !from_stdin);
    if (!from_stdin) print_one_time_password(out, name, password);
  }
  return kOk;
}

int user_list(admin_context& ctx, const std::string& fmt_name, std::ostream& out) {
  for (auto& u : ctx.state.users()) {
    auto totp = ctx.state.find_totp(u.name);
    if (fmt_name == "json") {
      boost::json::object o{{"name", u.name}, {"role", u.role}, {"disabled", u.disabled},
                            {"must_change_password", u.must_change}, {"created_at", format_rfc3339(u.created_at)},
                            {"totp", totp ? true : false},
                            {"recovery_codes_left", totp ? totp->recovery_codes : 0}};
      out << boost::json::serialize(o) << "\n";
    } else {
      out << fmt::format("{:<24} {:<15} {:<9} {}\n", u.name, u.role, u.disabled ? "disabled" : "active",
                         totp ? "totp" : role_needs_totp(u.role) ? "no totp (rsgate user totp-reset)" : "-");
    }
  }
  return kOk;
}

int user_cmd(const std::vector<std::string>& args, std::istream& in, std::ostream& out) {
  if (args.size() < 2) throw usage_error("expected add, list, disable, enable, passwd or totp-reset");
  const std::string sub = args[1];
  po::options_description d("rsgate user " + sub + " [options]");
  d.add_options()
      ("name", po::value<std::string>(), "account name")
      ("role", po::value<std::string>(), "representative, developer, auditor or admin")
      ("password-stdin", "read the password from standard input (else a one-time one is printed)")
      ("format", po::value<std::string>()->default_value("table"), "list: table or json");
  add_target_options(d);
  po::positional_options_description pos;
  pos.add("name", 1);
  auto vm = parse(args, 2, d, pos);
  if (vm.count("help")) {
    out << d << "\n";
    return kOk;
  }
  if (sub == "list") {
    auto format = list_format(vm);
    admin_context ctx(resolve_target(vm));
    return user_list(ctx, format, out);
  }
  if (sub != "add" && sub != "disable" && sub != "enable" && sub != "passwd" && sub != "totp-reset")
    throw usage_error(
        fmt::format("unknown subcommand '{}' (add, list, disable, enable, passwd, totp-reset)", shown(sub)));
  if (!vm.count("name")) throw usage_error("the account NAME is missing");
  if (sub == "add" && !vm.count("role")) throw usage_error("--role is required");
  admin_context ctx(resolve_target(vm));
  const auto name = vm["name"].as<std::string>();
  attempt a;
  a.action = sub;
  a.subject = shown(name);
  a.detail["user"] = shown(name);
  if (sub == "add") a.detail["role"] = shown(vm["role"].as<std::string>());
  return journaled(ctx, a, [&] { return user_change(ctx, a, name, vm, in, out); });
}

// The profile's gateway address: --gateway, else the configuration's tunnel address.
std::string profile_gateway(const admin_context& ctx, const po::variables_map& vm) {
  if (vm.count("gateway")) {
    auto g = vm["gateway"].as<std::string>();
    if (!is_valid_agent_address(g))
      refuse_value(fmt::format("invalid --gateway '{}': expected HOST:PORT, e.g. gw1.example.com:4433", shown(g)));
    return g;
  }
  try {
    return agent_tunnel_address(ctx.target.cfg);
  } catch (const std::invalid_argument& e) {
    refuse_value(fmt::format("{}: give --gateway HOST:PORT, the address agents connect to (or set "
                          "tunnel.public_address in the configuration)", e.what()));
  }
}

// The profile to enroll, from the flags; every value checked (refuse_value otherwise).
agent::profile profile_from_flags(const admin_context& ctx, const po::variables_map& vm,
                                  const std::vector<std::string>& scopes) {
  agent::profile p;
  p.type = auth::normalize_machine(vm["type"].as<std::string>());
  p.model = auth::normalize_machine(vm["model"].as<std::string>());
  p.serial = auth::normalize_machine(vm["serial"].as<std::string>());
  if (!auth::is_valid_machine(p.machine()))
    refuse_value(fmt::format("invalid machine '{}': {}", shown(p.machine()), auth::kMachineForm));
  for (auto& s : scopes) {
    try {
      p.scopes.push_back(agent::parse_scope_mapping(s));
    } catch (const std::invalid_argument& e) {
      refuse_value(fmt::format("invalid --scope '{}': {}", shown(s), e.what()));
    }
  }
  p.primary = profile_gateway(ctx, vm);
  p.backup = vm.count("backup") ? vm["backup"].as<std::string>() : "";
  if (!p.backup.empty() && !is_valid_agent_address(p.backup))
    refuse_value(fmt::format("invalid --backup '{}': expected HOST:PORT", shown(p.backup)));
  p.server_name = vm.count("server-name") ? vm["server-name"].as<std::string>() : "localhost";
  auto ca_file = vm.count("ca") ? std::filesystem::path(vm["ca"].as<std::string>()) : ctx.layout.ca_cert();
  try {
    p.ca_pem = read_file(ca_file, 1 << 20);
  } catch (const std::exception& e) {
    refuse_value(shown(e.what()));
  }
  return p;
}

int machine_enroll(admin_context& ctx, const po::variables_map& vm,
                   const std::vector<std::string>& scopes, std::ostream& out) {
  auto p = profile_from_flags(ctx, vm, scopes);
  std::filesystem::path profile_out = vm["profile-out"].as<std::string>();
  if (std::filesystem::exists(profile_out))
    refuse_value(fmt::format("{} exists; refusing to overwrite a profile", shown(profile_out.string())));
  auto parent = std::filesystem::absolute(profile_out).parent_path();
  if (!std::filesystem::is_directory(parent))
    refuse_value(fmt::format("{}: no such directory for --profile-out", shown(parent.string())));
  const auto machine = p.machine();
  const bool replace = vm.count("replace") > 0;
  const bool existed = ctx.state.find_machine(machine).has_value();
  if (!replace && existed)
    deny(fmt::format("machine {} is enrolled already (--replace enrolls it again with a new secret)", machine));
  enroll_options how{.md5 = vm.count("md5") > 0, .replace = replace, .actor = ctx.actor, .source = ctx.source, .receipt_keys = {}};
  if (!ctx.target.cfg.peer_receipt_key.empty()) how.receipt_keys.push_back(ctx.target.cfg.peer_receipt_key);
  try {
    p = enroll_machine(ctx.layout, ctx.journal, ctx.state, std::move(p), how);
  } catch (const enrollment_refused& e) {
    throw journal_unavailable(e.what());  // it journals first: a refusal here is the journal's
  }
  write_file_exclusive(profile_out, agent::to_toml(p), 0600);
  out << fmt::format("{} {}; agent profile written to {} (mode 0600: it holds the machine's secret)\n",
                     existed ? "enrolled again" : "enrolled", machine, profile_out.string());
  return kOk;
}

// The other gateway of a pair learns a machine from the agent profile its first gateway wrote:
// the same secret and mechanisms, so the agent authenticates on either (docs/operations.md §10).
int machine_import(admin_context& ctx, attempt& a, const po::variables_map& vm, std::ostream& out) {
  std::filesystem::path file = vm["profile"].as<std::string>();
  agent::profile p;
  try {
    p = agent::load_profile(file);
  } catch (const std::exception& e) {
    refuse_value(shown(e.what()));
  }
  const auto machine = p.machine();
  a.machine = machine;  // load_profile checked its form
  const bool replace = vm.count("replace") > 0;
  const bool existed = ctx.state.find_machine(machine).has_value();
  if (!replace && existed)
    deny(fmt::format("machine {} is enrolled already (--replace imports it again)", machine));
  const bool md5 = std::find(p.mechanisms.begin(), p.mechanisms.end(), "md5") != p.mechanisms.end();
  const auto pinned = p.receipt_keys;
  enroll_options how{.md5 = md5, .replace = replace, .import = true, .actor = ctx.actor, .source = ctx.source, .receipt_keys = {}};
  try {
    (void)enroll_machine(ctx.layout, ctx.journal, ctx.state, std::move(p), how);
  } catch (const enrollment_refused& e) {
    throw journal_unavailable(e.what());
  } catch (const std::invalid_argument& e) {
    refuse_value(fmt::format("{}: {}", shown(file.string()), e.what()));
  }
  out << fmt::format("imported {} from {}{}\n", machine, file.string(), md5 ? " (md5 allowed)" : "");
  // Receipts this gateway signs verify only with a key the customer's profile pins.
  const auto own = to_hex(ctx.journal.key().pub());
  if (std::find(pinned.begin(), pinned.end(), own) == pinned.end())
    out << fmt::format("warning: the profile does not pin this gateway's journal key, so the receipts it signs will not "
                       "verify there: add \"{}\" to [gateway] receipt_keys in the customer's profile (or set [peer] "
                       "receipt_key on the gateway that enrolls, docs/operations.md §10)\n", own);
  return kOk;
}

int machine_revoke(admin_context& ctx, const std::string& machine) {
  if (!auth::is_valid_machine(machine))
    refuse_value(fmt::format("invalid machine '{}': {}", shown(machine), auth::kMachineForm));
  auto m = ctx.state.find_machine(machine);
  if (!m) deny(fmt::format("machine {} is not enrolled", machine));
  if (m->revoked) deny(fmt::format("machine {} is revoked already", machine));
  attempt a;
  a.kind = "admin.machine";
  a.action = "revoke";
  a.machine = machine;
  ctx.record(a);
  ctx.state.revoke_machine(machine, system_clock::instance().now());
  return kOk;
}

int machine_list(admin_context& ctx, const std::string& fmt_name, std::ostream& out) {
  for (auto& m : ctx.state.machines()) {
    if (fmt_name == "json") {
      boost::json::object o{{"machine", m.machine}, {"md5", m.md5_enabled}, {"revoked", m.revoked},
                            {"enrolled_at", format_rfc3339(m.enrolled_at)}};
      out << boost::json::serialize(o) << "\n";
    } else {
      out << fmt::format("{}  {}  {}{}\n", m.machine, format_rfc3339(m.enrolled_at),
                         m.revoked ? "revoked" : "active", m.md5_enabled ? " md5" : "");
    }
  }
  return kOk;
}

po::options_description machine_options(const std::string& sub, std::vector<std::string>& scopes) {
  po::options_description d("rsgate machine " + sub + " [options]");
  d.add_options()
      ("machine", po::value<std::string>(), "revoke: TTTT-MMM*SSSSSSS")
      ("type", po::value<std::string>(), "machine type, 4 letters or digits")
      ("model", po::value<std::string>(), "model, 3 letters or digits")
      ("serial", po::value<std::string>(), "serial, 7 letters or digits")
      ("scope", po::value(&scopes)->composing(), "NAME=HOST:PORT offered by the agent (repeatable)")
      ("profile-out", po::value<std::string>(), "where to write the agent profile (mode 0600)")
      ("gateway", po::value<std::string>(), "tunnel address the agent connects to (default: the configuration's)")
      ("backup", po::value<std::string>(), "backup gateway address")
      ("server-name", po::value<std::string>(), "name on the gateway's certificate (default localhost)")
      ("ca", po::value<std::string>(), "CA certificate the agent pins (default DATA/ca.pem)")
      ("md5", "also allow legacy MD5-CHAP for this machine (keeps its secret, encrypted)")
      ("profile", po::value<std::string>(), "import: the agent profile another gateway wrote for the machine")
      ("replace", "enroll: enroll an enrolled (or revoked) machine again, with a new secret and profile; "
                  "import: replace the machine's secret with the profile's")
      ("format", po::value<std::string>()->default_value("table"), "list: table or json");
  add_target_options(d);
  return d;
}

int machine_cmd(const std::vector<std::string>& args, std::ostream& out) {
  if (args.size() < 2) throw usage_error("expected enroll, import, list or revoke");
  const std::string sub = args[1];
  std::vector<std::string> scopes;
  auto d = machine_options(sub, scopes);
  po::positional_options_description pos;
  pos.add("machine", 1);
  auto vm = parse(args, 2, d, pos);
  if (vm.count("help")) {
    out << d << "\n";
    return kOk;
  }
  if (sub == "list") {
    auto format = list_format(vm);
    admin_context ctx(resolve_target(vm));
    return machine_list(ctx, format, out);
  }
  attempt a;
  a.kind = "admin.machine";
  if (sub == "enroll") {
    for (auto k : {"type", "model", "serial", "profile-out"})
      if (!vm.count(k)) throw usage_error(fmt::format("--{} is required", k));
    admin_context ctx(resolve_target(vm));
    a.action = vm.count("replace") ? "replace" : "enroll";
    auto m = auth::normalize_machine(vm["type"].as<std::string>()) + "-" +
             auth::normalize_machine(vm["model"].as<std::string>()) + "*" +
             auth::normalize_machine(vm["serial"].as<std::string>());
    if (auth::is_valid_machine(m)) a.machine = m; else a.detail["machine"] = shown(m);
    return journaled(ctx, a, [&] { return machine_enroll(ctx, vm, scopes, out); });
  }
  if (sub == "import") {
    if (!vm.count("profile")) throw usage_error("--profile is required");
    admin_context ctx(resolve_target(vm));
    a.action = "import";
    return journaled(ctx, a, [&] { return machine_import(ctx, a, vm, out); });
  }
  if (sub == "revoke") {
    if (!vm.count("machine")) throw usage_error("the MACHINE (TTTT-MMM*SSSSSSS) is missing");
    admin_context ctx(resolve_target(vm));
    auto machine = auth::normalize_machine(vm["machine"].as<std::string>());
    a.action = "revoke";
    if (auth::is_valid_machine(machine)) a.machine = machine; else a.detail["machine"] = shown(machine);
    return journaled(ctx, a, [&] { return machine_revoke(ctx, machine); });
  }
  throw usage_error(fmt::format("unknown subcommand '{}' (enroll, import, list, revoke)", shown(sub)));
}

// Where a new token goes: standard output, or a file created with mode 0600 (never over an
// existing one), so that it is private whatever the shell's umask.
int token_create(admin_context& ctx, attempt& a, const std::string& user, const po::variables_map& vm,
                 std::ostream& out) {
  if (!auth::is_valid_user_name(user)) refuse_value(fmt::format("invalid --user '{}': {}", shown(user), kNameRule));
  auto life = parse_duration(vm["expires-in"].as<std::string>());
  if (!life || *life > 366LL * 86400 * 1'000'000)
    refuse_value("invalid --expires-in: a duration up to 366d, e.g. 12h or 30d");
  const auto file = vm.count("out") ? std::filesystem::path(vm["out"].as<std::string>()) : std::filesystem::path();
  if (!file.empty() && std::filesystem::exists(file)) deny(fmt::format("{} exists already; not overwritten", shown(file.string())));
  auto u = ctx.state.find_user(user);
  if (!u) deny(fmt::format("no user '{}'", user));
  if (u->disabled) deny(fmt::format("user '{}' is disabled", user));
  auto token = new_token();
  auto now = system_clock::instance().now();
  auto hmac = journal::hmac_key::load(ctx.layout.hmac_key()).hash_of(token);
  a.detail["expires_at"] = format_rfc3339(now + *life);
  a.detail["token"] = token_id(token_hash(token));
  ctx.record(a, hmac);
  ctx.state.add_token({token_hash(token), user, now, now + *life, false});
  if (file.empty()) {
    out << token << "\n";
  } else {
    write_file_exclusive(file, token + "\n", 0600);
    out << fmt::format("token {} for '{}' written to {} (mode 0600)\n", token_id(token_hash(token)), user,
                       file.string());
  }
  return kOk;
}

std::string token_state(const token_row& t, micros now) {
  return t.revoked ? "revoked" : (t.expires_at && t.expires_at <= now) ? "expired" : "active";
}

int token_list(admin_context& ctx, const std::string& user, const std::string& format, std::ostream& out) {
  const auto now = system_clock::instance().now();
  for (auto& t : ctx.state.tokens(user)) {
    if (format == "json") {
      boost::json::object o{{"id", token_id(t.token_hash)}, {"user", t.user}, {"created_at", format_rfc3339(t.created_at)},
                            {"expires_at", t.expires_at ? boost::json::value(format_rfc3339(t.expires_at)) : nullptr},
                            {"state", token_state(t, now)}};
      out << boost::json::serialize(o) << "\n";
    } else {
      out << fmt::format("{}  {:<24} {:<8} expires {}\n", token_id(t.token_hash), t.user, token_state(t, now),
                         t.expires_at ? format_rfc3339(t.expires_at) : "never");
    }
  }
  return kOk;
}

int token_revoke(admin_context& ctx, attempt& a, const std::string& id) {
  if (!is_token_id(id)) refuse_value(fmt::format("invalid token id '{}': 16 hex digits, as token list shows", shown(id)));
  auto t = ctx.state.find_token_by_id(id);
  if (!t) deny(fmt::format("no token {}", id));
  a.detail["token"] = token_id(t->token_hash);  // in the gateway's own (lower) case
  if (t->revoked) deny(fmt::format("token {} is revoked already", id));
  a.subject = t->user;
  a.detail["user"] = t->user;
  ctx.record(a);
  (void)ctx.state.revoke_token(t->token_hash);
  return kOk;
}

int token_cmd(const std::vector<std::string>& args, std::ostream& out) {
  if (args.size() < 2) throw usage_error("expected create, list or revoke");
  const std::string sub = args[1];
  if (sub != "create" && sub != "list" && sub != "revoke")
    throw usage_error(fmt::format("unknown subcommand '{}' (create, list, revoke)", shown(sub)));
  po::options_description d("rsgate token " + sub + " [options]");
  d.add_options()
      ("user", po::value<std::string>(), "create: the account the token acts as; list: only this account's")
      ("expires-in", po::value<std::string>()->default_value("30d"), "create: lifetime, e.g. 12h, 30d (at most 366d)")
      ("out", po::value<std::string>(), "create: write the token to this new file (mode 0600) instead of stdout")
      ("id", po::value<std::string>(), "revoke: the token's id (16 hex digits, from token list)")
      ("format", po::value<std::string>()->default_value("table"), "list: table or json");
  add_target_options(d);
  po::positional_options_description pos;
  if (sub == "revoke") pos.add("id", 1);
  auto vm = parse(args, 2, d, pos);
  if (vm.count("help")) {
    out << d << "\n";
    return kOk;
  }
  if (sub == "list") {
    auto format = list_format(vm);
    admin_context ctx(resolve_target(vm));
    return token_list(ctx, vm.count("user") ? vm["user"].as<std::string>() : "", format, out);
  }
  attempt a;
  if (sub == "revoke") {
    if (!vm.count("id")) throw usage_error("the token ID is missing (token list shows it)");
    admin_context ctx(resolve_target(vm));
    const auto id = vm["id"].as<std::string>();
    a.action = "token_revoke";
    a.detail["token"] = shown(id);
    return journaled(ctx, a, [&] { return token_revoke(ctx, a, id); });
  }
  if (!vm.count("user")) throw usage_error("--user is required");
  admin_context ctx(resolve_target(vm));
  auto user = vm["user"].as<std::string>();
  a.action = "token_create";
  a.subject = shown(user);
  a.detail["user"] = shown(user);
  return journaled(ctx, a, [&] { return token_create(ctx, a, user, vm, out); });
}

}  // namespace

int run_user(const std::vector<std::string>& args, std::istream& in, std::ostream& out, std::ostream& err) {
  return cli::guarded("user", [&] { return user_cmd(args, in, out); }, err);
}
int run_machine(const std::vector<std::string>& args, std::istream&, std::ostream& out, std::ostream& err) {
  return cli::guarded("machine", [&] { return machine_cmd(args, out); }, err);
}
int run_token(const std::vector<std::string>& args, std::istream&, std::ostream& out, std::ostream& err) {
  return cli::guarded("token", [&] { return token_cmd(args, out); }, err);
}

}  // namespace rsgate::gateway
