// The agent's network runtime: the tunnel to the gateway and the local control socket through
// which `rsgate-agent stop|status|key` reach a running agent. Asio stays behind this header.
#pragma once
#include <iosfwd>
#include <string>

#include "agent/profile.hpp"

namespace rsgate::agent {

struct start_options {
  profile prof;
  std::string control_path;  // unix socket for stop/status/key
  int key_minutes = 60;
};

// Runs `rsgate-agent start` until the customer stops it (SIGINT/SIGTERM or `stop`) or the
// session ends. Prints the session key and every notice on `out`. Returns the exit code.
int run_agent(const start_options& o, std::ostream& out, std::ostream& err);

// Sends one command ("stop", "status", "key") to a running agent; prints its answer.
int control_command(const std::string& control_path, const std::string& command, std::ostream& out,
                    std::ostream& err);

[[nodiscard]] std::string default_control_path();

}  // namespace rsgate::agent
