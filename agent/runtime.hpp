// The agent's network runtime: the tunnel to the gateway and the local control socket through
// which `rsgate-agent stop|status|key` reach a running agent. Asio stays behind this header.
#pragma once
#include <cstdint>
#include <filesystem>
#include <functional>
#include <iosfwd>
#include <string>

#include "agent/control_path.hpp"
#include "protocol/profile.hpp"

namespace rsgate::agent {

struct start_options {
  profile prof;
  std::filesystem::path profile_file;  // where prof came from: receipts go beside it (receipts_dir)
  std::string control_path;  // unix socket for stop/status/key
  int key_minutes = 60;
  // For tests only (tests/support/agent_fault_child.cpp): called with the type of every frame
  // read from the gateway before it is handled; a throw there stands for a defect in the
  // tunnel's code, which must end the agent with exit 1.
  std::function<void(std::uint8_t frame_type)> frame_hook;
};

// Runs `rsgate-agent start` until the customer stops it (SIGINT/SIGTERM or `stop`) or the
// session ends. Prints the session key and every notice on `out`. Returns the exit code; an
// exception anywhere in the tunnel or the control socket is reported on `err` and gives 1.
int run_agent(const start_options& o, std::ostream& out, std::ostream& err);

// Sends one command ("stop", "status", "key") to a running agent; prints its answer.
int control_command(const std::string& control_path, const std::string& command, std::ostream& out,
                    std::ostream& err);

}  // namespace rsgate::agent
