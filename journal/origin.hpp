// Where a local command came from, for the `source` field of the entries it writes
// (docs/journal.md §3; PCI DSS 10.2.2 "origination of the event"). Network actions record
// `ip:port`; administration commands, `rsgate init` and `rsgate serve` record
//
//     cli:USER[/LOGIN]@HOST:TTY
//
// USER is the effective account (getpwuid(geteuid())), LOGIN the person behind it when that
// differs (SUDO_USER, else getlogin()), HOST the host name, TTY the terminal on standard
// input (ttyname(0)) or "none". Each part keeps printable ASCII only; any other byte, and in
// USER, LOGIN and HOST the separators '/', '@' and ':', become '?', so the form always parses.
#pragma once
#include <string>

namespace rsgate::journal {

struct local_origin {
  std::string user;   // effective account
  std::string login;  // "" unless it differs from `user`
  std::string host;
  std::string tty;    // "none" without a terminal
};

// Reads the process's account, host and terminal (and the SUDO_USER variable).
[[nodiscard]] local_origin current_origin();

// The `source` text of `o`; at most 4 + 32 + 1 + 32 + 1 + 64 + 1 + 64 = 199 bytes.
[[nodiscard]] std::string format_origin(const local_origin& o);

// format_origin(current_origin()).
[[nodiscard]] std::string local_source();

}  // namespace rsgate::journal
