// Test helper: the real agent runtime (run_agent) with a fault injected, for the test that an
// exception in the tunnel's code ends the agent with exit 1 and a report (issue 7, defect 15).
// Usage: agent_fault_child FRAME_TYPE start --profile FILE [--control PATH] — throws when a
// frame of type FRAME_TYPE (a number) arrives from the gateway.
#include <iostream>
#include <stdexcept>
#include <string>

#include "agent/runtime.hpp"

int main(int argc, char** argv) {
  if (argc < 5 || std::string(argv[2]) != "start" || std::string(argv[3]) != "--profile") {
    std::cerr << "usage: agent_fault_child FRAME_TYPE start --profile FILE [--control PATH]\n";
    return 2;
  }
  rsgate::agent::start_options o;
  o.prof = rsgate::agent::load_profile(argv[4]);
  o.key_minutes = o.prof.key_expiry_minutes;
  o.control_path = argc >= 7 && std::string(argv[5]) == "--control" ? argv[6] : rsgate::agent::default_control_path();
  const int fault = std::stoi(argv[1]);
  o.frame_hook = [fault](std::uint8_t type) {
    if (type == fault) throw std::runtime_error("injected fault");
  };
  return rsgate::agent::run_agent(o, std::cout, std::cerr);
}
