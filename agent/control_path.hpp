// Where the agent's control socket lives and the checks that keep it private (docs/operations.md
// §14). `rsgate-agent stop|status|key` trust what answers there (a `key` reply is shown to the
// customer as the session key), so no other account may be able to place or replace a socket
// at that path: the socket's directory must be writable by no one else, the socket must belong
// to this account, and the client checks the listening process's account (SO_PEERCRED).
// Plain POSIX, no Asio.
#pragma once
#include <optional>
#include <string>

namespace rsgate::agent {

// $XDG_RUNTIME_DIR/rsgate-agent.sock when XDG_RUNTIME_DIR is set, else
// <private dir>/rsgate-agent.sock; "" when neither XDG_RUNTIME_DIR nor a home directory is known.
[[nodiscard]] std::string default_control_path();
// The agent's private directory: $HOME/.rsgate (the home directory of the account when HOME is
// unset); "" when unknown.
[[nodiscard]] std::string private_dir();

// Checks the directory of a control socket before `start` binds there (create = true) or a
// command connects there (create = false). The private directory is created 0700 when missing
// and refused unless it is a directory of this account with no permission for group or others;
// any other directory must belong to this account or root and be writable by nobody else
// (unless sticky, as /tmp: others cannot remove or replace this account's files there).
// Returns "" when usable, else why not.
[[nodiscard]] std::string check_control_dir(const std::string& socket_path, bool create);

// The file at `socket_path`: "" when it is a socket of this account (or absent and
// !must_exist); else why it cannot be used. `start` never removes, and commands never connect
// to, anything else.
[[nodiscard]] std::string check_control_socket(const std::string& socket_path, bool must_exist);

// The account of the process at the other end of a connected Unix socket, via SO_PEERCRED.
[[nodiscard]] std::optional<unsigned> peer_uid(int fd);

}  // namespace rsgate::agent
