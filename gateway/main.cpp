// rsgate: the vendor-side command. Dispatches to the libraries; nothing else lives here.
#include <iostream>
#include <string>
#include <vector>

#include "gateway/admin_commands.hpp"
#include "gateway/commands.hpp"
#include "connect/connect.hpp"
#include "journal/tool/journal_cli.hpp"

namespace {
constexpr const char* kUsage =
    "usage: rsgate <command> [options]\n"
    "  serve     run the gateway (--dev: zero-configuration development gateway)\n"
    "  init      prepare a data directory for production\n"
    "  user      add, list, disable, enable accounts; passwords and TOTP (add NAME --role ROLE)\n"
    "  machine   enroll, list, revoke customer machines (enroll writes the agent profile)\n"
    "  token     create, list, revoke bearer tokens for tools (token create --user NAME)\n"
    "  connect   expose a session's scope as a local port (like ssh -L)\n"
    "  journal   query, verify, export and tail the journal (rsgate journal --help)\n"
    "Every command takes --help.\n";
}

int main(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  if (args.empty()) {
    std::cerr << kUsage;
    return 2;
  }
  const auto& cmd = args[0];
  if (cmd == "--help" || cmd == "-h" || cmd == "help") {
    std::cout << kUsage;
    return 0;
  }
  if (cmd == "--version") {
    std::cout << "rsgate 0.1.0\n";
    return 0;
  }
  if (cmd == "serve") return rsgate::gateway::run_serve(args, std::cout, std::cerr);
  if (cmd == "init") return rsgate::gateway::run_init(args, std::cout, std::cerr);
  if (cmd == "connect") return rsgate::representative::run_connect(args, std::cout, std::cerr);
  if (cmd == "user") return rsgate::gateway::run_user(args, std::cin, std::cout, std::cerr);
  if (cmd == "machine") return rsgate::gateway::run_machine(args, std::cin, std::cout, std::cerr);
  if (cmd == "token") return rsgate::gateway::run_token(args, std::cin, std::cout, std::cerr);
  if (cmd == "journal") {
    // Online (--gateway URL --token T): the journal tool reads the API through connect's client.
    rsgate::journal::set_online_get([](const std::string& gateway, const std::string& token, const std::string& ca,
                                       bool insecure, const std::string& target) {
      auto a = rsgate::representative::api_get(gateway, token, ca, insecure, target, std::size_t{64} << 20);
      return rsgate::journal::online_answer{a.status, std::move(a.body), a.header("X-Next-Cursor"), a.error};
    });
    std::vector<std::string> rest(args.begin() + 1, args.end());
    return rsgate::journal::run_journal_command(rest, std::cout, std::cerr);
  }
  std::cerr << "rsgate: unknown command '" << cmd << "'\n" << kUsage;
  return 2;
}
