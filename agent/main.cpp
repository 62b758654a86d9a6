// rsgate-agent: the customer's side. Dispatches; nothing else lives here.
#include <boost/program_options.hpp>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

#include "protocol/profile.hpp"
#include "agent/receipts.hpp"
#include "agent/runtime.hpp"
#include "core/files.hpp"
#include "agent/status.hpp"

namespace po = boost::program_options;

namespace {
constexpr const char* kUsage =
    "usage: rsgate-agent <command> [options]\n"
    "  start --profile FILE   connect to the gateway, issue a session key, wait (Ctrl-C stops)\n"
    "  stop                   end remote support: the tunnel, every channel and grant\n"
    "  status [--json]        state, owner, PMR and grants of the running agent\n"
    "  key                    void the current session key and issue a new one\n"
    "  approve N / refuse N   decide request N to open a channel to an \"ask\" scope\n"
    "  receipt verify FILE [--profile FILE]\n"
    "                         check a session's receipt against the gateway keys the profile pins\n"
    "                         (exit 0 valid, 1 not); without --profile, the one the receipt names\n"
    "Every command but receipt takes --control PATH (the running agent's socket); all take --help.\n";

// `start`: the profile, the key lifetime, then the agent until it ends.
int start(const po::variables_map& vm, const std::string& control) {
  if (!vm.count("profile")) {
    std::cerr << "rsgate-agent start: --profile FILE is required\n";
    return 2;
  }
  rsgate::agent::start_options o;
  try {
    o.profile_file = vm["profile"].as<std::string>();
    o.prof = rsgate::agent::load_profile(o.profile_file);
  } catch (const std::exception& e) {
    std::cerr << "rsgate-agent start: " << e.what() << "\n";
    return 2;
  }
  o.key_minutes = vm.count("key-minutes") ? vm["key-minutes"].as<int>() : o.prof.key_expiry_minutes;
  if (o.key_minutes < 1 || o.key_minutes > 1440) {
    std::cerr << "rsgate-agent start: --key-minutes must be 1 to 1440\n";
    return 2;
  }
  o.control_path = control;
  try {
    return rsgate::agent::run_agent(o, std::cout, std::cerr);
  } catch (const std::exception& e) {  // a defect: report it, never exit 0
    std::cerr << "rsgate-agent: internal error: " << e.what() << "\n";
    return 1;
  }
}

// `stop`, `key`, `status`: one request to the running agent.
int command(const std::string& cmd, const po::variables_map& vm, const std::string& control) {
  if (cmd == "status" && !vm.count("json")) {
    // For people: the same state as --json, one fact per line.
    std::ostringstream raw;
    int rc = rsgate::agent::control_command(control, cmd, raw, std::cerr);
    if (rc == 0) std::cout << rsgate::agent::render_status(raw.str());
    return rc;
  }
  return rsgate::agent::control_command(control, cmd, std::cout, std::cerr);
}

// `receipt verify FILE`: exit 0 valid, 1 not (altered, not signed by a pinned key, another
// machine's), 2 when the file or the profile cannot be read.
int receipt_verify(const po::variables_map& vm) {
  if (!vm.count("file")) {
    std::cerr << "rsgate-agent receipt verify: expected the receipt FILE\n";
    return 2;
  }
  const std::string file = vm["file"].as<std::string>();
  std::string text;
  try {
    text = rsgate::read_file(file, rsgate::tunnel::kMaxReceiptFileBytes + 1);
  } catch (const std::exception& e) {
    std::cerr << "rsgate-agent receipt verify: " << e.what() << "\n";
    return 2;
  }
  std::string why;
  auto r = rsgate::tunnel::parse_receipt_file(text, why);
  if (!r) {
    std::cerr << "rsgate-agent receipt verify: " << file << ": " << why << "\n";
    return 1;
  }
  const std::string profile_file = vm.count("profile") ? vm["profile"].as<std::string>() : r->profile;
  if (profile_file.empty()) {
    std::cerr << "rsgate-agent receipt verify: --profile FILE is required (the receipt names no profile)\n";
    return 2;
  }
  rsgate::agent::profile p;
  try {
    p = rsgate::agent::load_profile(profile_file);
  } catch (const std::exception& e) {
    std::cerr << "rsgate-agent receipt verify: " << e.what() << "\n";
    return 2;
  }
  auto v = rsgate::agent::check_receipt(*r, p);
  if (!v.valid) {
    std::cerr << "rsgate-agent receipt verify: " << file << " is NOT valid: " << v.problem << "\n";
    return 1;
  }
  std::cout << "valid: " << rsgate::agent::describe_receipt(*v.body) << "; signed by the gateway key " << v.key_id
            << " pinned in " << profile_file << "\n";
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  if (args.empty()) {
    std::cerr << kUsage;
    return 2;
  }
  const std::string cmd = args[0];
  if (cmd == "--help" || cmd == "-h" || cmd == "help") {
    std::cout << kUsage;
    return 0;
  }
  po::options_description d("rsgate-agent " + cmd + " [options]");
  d.add_options()
      ("profile", po::value<std::string>(), "start: the agent profile written by rsgate machine enroll")
      ("control", po::value<std::string>(), "control socket of the running agent")
      ("key-minutes", po::value<int>(), "start: session key lifetime, 1-1440 minutes (default: the profile's)")
      ("json", "status: one JSON object")
      ("request", po::value<std::string>(), "approve, refuse: the request number N")
      ("verb", po::value<std::string>(), "receipt: verify")
      ("file", po::value<std::string>(), "receipt verify: the receipt file")
      ("help,h", "show this help");
  po::variables_map vm;
  try {
    std::vector<std::string> rest(args.begin() + 1, args.end());
    po::positional_options_description pos;
    if (cmd == "approve" || cmd == "refuse") pos.add("request", 1);
    if (cmd == "receipt") pos.add("verb", 1).add("file", 1);
    po::store(po::command_line_parser(rest).options(d).positional(pos).run(), vm);
    po::notify(vm);
  } catch (const po::error& e) {
    std::cerr << "rsgate-agent " << cmd << ": " << e.what() << "\n";
    return 2;
  }
  if (vm.count("help")) {
    std::cout << d << "\n";
    return 0;
  }
  std::string control = vm.count("control") ? vm["control"].as<std::string>() : rsgate::agent::default_control_path();
  if (cmd == "start") return start(vm, control);
  if (cmd == "receipt") {
    if (!vm.count("verb") || vm["verb"].as<std::string>() != "verify") {
      std::cerr << "rsgate-agent receipt: expected `receipt verify FILE [--profile FILE]`\n";
      return 2;
    }
    return receipt_verify(vm);
  }
  if (cmd == "stop" || cmd == "key" || cmd == "status") return command(cmd, vm, control);
  if (cmd == "approve" || cmd == "refuse") {
    // N: the request number the agent printed; whole digits, nothing else.
    const std::string n = vm.count("request") ? vm["request"].as<std::string>() : std::string();
    if (n.empty() || n.size() > 9 || n.find_first_not_of("0123456789") != std::string::npos || n == "0" || n[0] == '0') {
      std::cerr << "rsgate-agent " << cmd << ": expected the request number N the agent printed\n";
      return 2;
    }
    return command(cmd + " " + n, vm, control);
  }
  std::cerr << "rsgate-agent: unknown command '" << cmd << "'\n" << kUsage;
  return 2;
}
