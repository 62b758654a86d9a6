// See admin_commands.hpp.
#include "gateway/admin_commands.hpp"

#include <fmt/format.h>
#include <pwd.h>
#include <sodium.h>
#include <unistd.h>

#include <boost/json/serialize.hpp>
#include <boost/json/value.hpp>
#include <boost/program_options.hpp>
#include <iostream>

#include "agent/profile.hpp"
#include "auth/formats.hpp"
#include "auth/password.hpp"
#include "auth/scram.hpp"
#include "core/files.hpp"
#include "gateway/cli.hpp"
#include "core/timefmt.hpp"
#include "gateway/config.hpp"
#include "gateway/data_dir.hpp"
#include "gateway/enroll.hpp"
#include "gateway/state.hpp"
#include "journal/journal.hpp"

namespace po = boost::program_options;

namespace rsgate::gateway {
namespace {

using cli::kOk, cli::kFailed, cli::kUsage, cli::usage_error;

struct refused : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// Everything an admin command needs: the data directory, state.db and a journal writer.
struct admin_context {
  data_layout layout;
  state_store state;
  journal::writer journal;
  std::string actor;

  explicit admin_context(const std::string& data)
      : layout{data}, state(checked(layout).state_db()), journal(open_journal(layout)), actor(cli_actor()) {}

  static const data_layout& checked(const data_layout& l) {
    if (!is_prepared(l))
      throw usage_error(fmt::format("{} is not a prepared data directory (rsgate init --data DIR)",
                                    l.dir.string()));
    return l;
  }
  static journal::writer open_journal(const data_layout& l) {
    journal::writer_options o;
    o.gateway = journal_gateway_name(l).value_or("rsgate");
    o.probe_every = 0;
    o.checkpoint_every = 0;
    return journal::writer(l.journal_db(), journal::signing_key::load(l.signing_key()), o);
  }
  static std::string cli_actor() {
    auto* pw = ::getpwuid(::geteuid());
    return std::string("cli:") + (pw ? pw->pw_name : std::to_string(::geteuid()));
  }
  // Journals the change; throws `refused` when the journal cannot write (nothing changes).
  void record(const std::string& kind, boost::json::object detail, const std::string& machine = "",
              const std::string& secret_hmac = "") {
    journal::entry e;
    e.kind = kind;
    e.actor = actor;
    e.machine = machine;
    e.secret_hmac = secret_hmac;
    e.detail = boost::json::serialize(detail);
    auto r = journal.append_sync(std::move(e));
    if (!r.ok()) throw refused("the journal cannot write, nothing changed: " + r.message);
  }
};

po::variables_map parse(const std::vector<std::string>& args, std::size_t skip,
                        const po::options_description& d, const po::positional_options_description& pos) {
  po::variables_map vm;
  std::vector<std::string> rest(args.begin() + static_cast<long>(skip), args.end());
  po::store(po::command_line_parser(rest).options(d).positional(pos).run(), vm);
  po::notify(vm);
  return vm;
}

std::string data_dir(const po::variables_map& vm) {
  return vm.count("data") ? vm["data"].as<std::string>() : "rsgate-dev";
}

std::string read_password(std::istream& in) {
  std::string pw;
  std::getline(in, pw);
  while (!pw.empty() && (pw.back() == '\r' || pw.back() == '\n')) pw.pop_back();
  if (pw.size() < 12) throw usage_error("the password must be at least 12 characters");
  if (pw.size() > 1024) throw usage_error("the password is longer than 1024 characters");
  return pw;
}

int user_cmd(const std::vector<std::string>& args, std::istream& in, std::ostream& out) {
  if (args.size() < 2) throw usage_error("expected add, list, disable or passwd");
  const std::string sub = args[1];
  po::options_description d("rsgate user " + sub + " [options]");
  d.add_options()
      ("name", po::value<std::string>(), "account name")
      ("role", po::value<std::string>(), "representative, developer, auditor or admin")
      ("password-stdin", "read the password from standard input (else a one-time one is printed)")
      ("format", po::value<std::string>()->default_value("table"), "list: table or json")
      ("data", po::value<std::string>(), "data directory (default ./rsgate-dev)")
      ("help,h", "show this help");
  po::positional_options_description pos;
  pos.add("name", 1);
  auto vm = parse(args, 2, d, pos);
  if (vm.count("help")) {
    out << d << "\n";
    return kOk;
  }
  auto name = [&] {
    if (!vm.count("name")) throw usage_error("the account NAME is missing");
    auto n = vm["name"].as<std::string>();
    if (!auth::is_valid_user_name(n))
      throw usage_error(fmt::format("invalid name '{}': 1-64 of A-Z a-z 0-9 . _ @ -, starting with a letter or digit", n));
    return n;
  };
  if (sub == "add") {
    auto n = name();
    if (!vm.count("role")) throw usage_error("--role is required");
    auto role = vm["role"].as<std::string>();
    if (!is_role(role)) throw usage_error(fmt::format("invalid --role '{}': representative, developer, auditor or admin", role));
    std::string password = vm.count("password-stdin") ? read_password(in) : auth::random_secret(100);
    admin_context ctx(data_dir(vm));
    if (ctx.state.find_user(n)) throw refused(fmt::format("user '{}' exists already", n));
    boost::json::object det{{"action", "add"}, {"user", n}, {"role", role}};
    ctx.record("admin.user", det);
    ctx.state.add_user({n, role, auth::hash_password(password), !vm.count("password-stdin"), false,
                        system_clock::instance().now()});
    if (!vm.count("password-stdin"))
      out << fmt::format("one-time password for '{}': {}\n(shown only now; it must be changed at first login)\n", n, password);
    return kOk;
  }
  if (sub == "list") {
    admin_context ctx(data_dir(vm));
    auto fmt_name = vm["format"].as<std::string>();
    if (fmt_name != "table" && fmt_name != "json") throw usage_error("invalid --format: table or json");
    for (auto& u : ctx.state.users()) {
      if (fmt_name == "json") {
        boost::json::object o{{"name", u.name}, {"role", u.role}, {"disabled", u.disabled},
                              {"must_change_password", u.must_change}, {"created_at", format_rfc3339(u.created_at)}};
        out << boost::json::serialize(o) << "\n";
      } else {
        out << fmt::format("{:<24} {:<15} {}\n", u.name, u.role, u.disabled ? "disabled" : "active");
      }
    }
    return kOk;
  }
  if (sub == "disable") {
    auto n = name();
    admin_context ctx(data_dir(vm));
    if (!ctx.state.find_user(n)) throw refused(fmt::format("no user '{}'", n));
    ctx.record("admin.user", {{"action", "disable"}, {"user", n}});
    ctx.state.set_disabled(n, true);
    return kOk;
  }
  if (sub == "passwd") {
    auto n = name();
    std::string password = vm.count("password-stdin") ? read_password(in) : auth::random_secret(100);
    admin_context ctx(data_dir(vm));
    if (!ctx.state.find_user(n)) throw refused(fmt::format("no user '{}'", n));
    ctx.record("admin.user", {{"action", "passwd"}, {"user", n}});
    ctx.state.set_password(n, auth::hash_password(password), !vm.count("password-stdin"));
    if (!vm.count("password-stdin"))
      out << fmt::format("one-time password for '{}': {}\n(shown only now; it must be changed at first login)\n", n, password);
    return kOk;
  }
  throw usage_error(fmt::format("unknown subcommand '{}' (add, list, disable, passwd)", sub));
}

int machine_cmd(const std::vector<std::string>& args, std::ostream& out) {
  if (args.size() < 2) throw usage_error("expected enroll, list or revoke");
  const std::string sub = args[1];
  std::vector<std::string> scopes;
  po::options_description d("rsgate machine " + sub + " [options]");
  d.add_options()
      ("machine", po::value<std::string>(), "revoke: TTTT-MMM*SSSSSSS")
      ("type", po::value<std::string>(), "machine type, 4 letters or digits")
      ("model", po::value<std::string>(), "model, 3 letters or digits")
      ("serial", po::value<std::string>(), "serial, 7 letters or digits")
      ("scope", po::value(&scopes)->composing(), "NAME=HOST:PORT offered by the agent (repeatable)")
      ("profile-out", po::value<std::string>(), "where to write the agent profile (mode 0600)")
      ("gateway", po::value<std::string>(), "tunnel address the agent connects to (default 127.0.0.1:4433)")
      ("backup", po::value<std::string>(), "backup gateway address")
      ("server-name", po::value<std::string>(), "name on the gateway's certificate (default localhost)")
      ("ca", po::value<std::string>(), "CA certificate the agent pins (default DATA/ca.pem)")
      ("md5", "also allow legacy MD5-CHAP for this machine (keeps its secret, encrypted)")
      ("format", po::value<std::string>()->default_value("table"), "list: table or json")
      ("data", po::value<std::string>(), "data directory (default ./rsgate-dev)")
      ("help,h", "show this help");
  po::positional_options_description pos;
  pos.add("machine", 1);
  auto vm = parse(args, 2, d, pos);
  if (vm.count("help")) {
    out << d << "\n";
    return kOk;
  }
  if (sub == "enroll") {
    for (auto k : {"type", "model", "serial", "profile-out"})
      if (!vm.count(k)) throw usage_error(fmt::format("--{} is required", k));
    agent::profile p;
    p.type = auth::normalize_machine(vm["type"].as<std::string>());
    p.model = auth::normalize_machine(vm["model"].as<std::string>());
    p.serial = auth::normalize_machine(vm["serial"].as<std::string>());
    auto machine = p.machine();
    if (!auth::is_valid_machine(machine)) throw usage_error(fmt::format("invalid machine '{}': {}", machine, auth::kMachineForm));
    for (auto& s : scopes) {
      try {
        p.scopes.push_back(agent::parse_scope_mapping(s));
      } catch (const std::invalid_argument& e) {
        throw usage_error(fmt::format("invalid --scope '{}': {}", s, e.what()));
      }
    }
    p.primary = vm.count("gateway") ? vm["gateway"].as<std::string>() : "127.0.0.1:4433";
    p.backup = vm.count("backup") ? vm["backup"].as<std::string>() : "";
    p.server_name = vm.count("server-name") ? vm["server-name"].as<std::string>() : "localhost";
    std::filesystem::path profile_out = vm["profile-out"].as<std::string>();
    if (std::filesystem::exists(profile_out))
      throw usage_error(fmt::format("{} exists; refusing to overwrite a profile", profile_out.string()));
    admin_context ctx(data_dir(vm));
    auto ca_file = vm.count("ca") ? std::filesystem::path(vm["ca"].as<std::string>()) : ctx.layout.ca_cert();
    try {
      p.ca_pem = read_file(ca_file, 1 << 20);
    } catch (const std::exception& e) {
      throw usage_error(e.what());
    }
    try {
      p = enroll_machine(ctx.layout, ctx.journal, ctx.state, std::move(p), vm.count("md5") > 0, ctx.actor);
    } catch (const enrollment_refused& e) {
      throw refused(e.what());
    }
    write_file_exclusive(profile_out, agent::to_toml(p), 0600);
    out << fmt::format("enrolled {}; agent profile written to {} (mode 0600: it holds the machine's secret)\n",
                       machine, profile_out.string());
    return kOk;
  }
  if (sub == "list") {
    auto fmt_name = vm["format"].as<std::string>();
    if (fmt_name != "table" && fmt_name != "json") throw usage_error("invalid --format: table or json");
    admin_context ctx(data_dir(vm));
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
  if (sub == "revoke") {
    if (!vm.count("machine")) throw usage_error("the MACHINE (TTTT-MMM*SSSSSSS) is missing");
    auto machine = auth::normalize_machine(vm["machine"].as<std::string>());
    if (!auth::is_valid_machine(machine)) throw usage_error(fmt::format("invalid machine '{}': {}", machine, auth::kMachineForm));
    admin_context ctx(data_dir(vm));
    auto m = ctx.state.find_machine(machine);
    if (!m) throw refused(fmt::format("machine {} is not enrolled", machine));
    if (m->revoked) throw refused(fmt::format("machine {} is revoked already", machine));
    ctx.record("admin.machine", {{"action", "revoke"}}, machine);
    ctx.state.revoke_machine(machine, system_clock::instance().now());
    return kOk;
  }
  throw usage_error(fmt::format("unknown subcommand '{}' (enroll, list, revoke)", sub));
}

int token_cmd(const std::vector<std::string>& args, std::ostream& out) {
  if (args.size() < 2 || args[1] != "create") throw usage_error("expected: rsgate token create --user NAME");
  po::options_description d("rsgate token create --user NAME [options]");
  d.add_options()
      ("user", po::value<std::string>(), "the account the token acts as")
      ("expires-in", po::value<std::string>()->default_value("30d"), "lifetime, e.g. 12h, 30d")
      ("data", po::value<std::string>(), "data directory (default ./rsgate-dev)")
      ("help,h", "show this help");
  auto vm = parse(args, 2, d, {});
  if (vm.count("help")) {
    out << d << "\n";
    return kOk;
  }
  if (!vm.count("user")) throw usage_error("--user is required");
  auto user = vm["user"].as<std::string>();
  auto life = parse_duration(vm["expires-in"].as<std::string>());
  if (!life || *life > 366LL * 86400 * 1'000'000) throw usage_error("invalid --expires-in: a duration up to 366d, e.g. 12h or 30d");
  admin_context ctx(data_dir(vm));
  auto u = ctx.state.find_user(user);
  if (!u) throw refused(fmt::format("no user '{}'", user));
  if (u->disabled) throw refused(fmt::format("user '{}' is disabled", user));
  auto token = new_token();
  auto now = system_clock::instance().now();
  auto hmac = journal::hmac_key::load(ctx.layout.hmac_key()).hash_of(token);
  ctx.record("admin.user", {{"action", "token_create"}, {"user", user}, {"expires_at", format_rfc3339(now + *life)}}, "", hmac);
  ctx.state.add_token({token_hash(token), user, now, now + *life, false});
  out << token << "\n";
  return kOk;
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
