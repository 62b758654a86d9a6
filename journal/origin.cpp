// See origin.hpp. Everything read here is taken as a claim, not checked: SUDO_USER is an
// environment variable the caller controls. It is recorded next to the effective account,
// which the caller cannot choose, and sanitised so that it can neither break the field's form
// nor be refused by the journal's field rules.
#include "journal/origin.hpp"

#include <pwd.h>
#include <unistd.h>

#include <cstdlib>
#include <string_view>

namespace rsgate::journal {
namespace {

// Printable ASCII without spaces; `separators` also become '?'; cut to `max`; "?" if empty.
std::string part(std::string_view s, std::size_t max, bool separators) {
  std::string out;
  for (unsigned char c : s.substr(0, max)) {
    bool bad = c <= 0x20 || c >= 0x7f || (separators && (c == '/' || c == '@' || c == ':'));
    out.push_back(bad ? '?' : static_cast<char>(c));
  }
  return out.empty() ? "?" : out;
}

std::string effective_user() {
  uid_t uid = ::geteuid();
  if (auto* pw = ::getpwuid(uid); pw && pw->pw_name) return pw->pw_name;
  return std::to_string(uid);
}

std::string login_name() {
  if (const char* s = std::getenv("SUDO_USER"); s && *s) return s;
  char buf[256] = {};
  if (::getlogin_r(buf, sizeof buf - 1) == 0 && buf[0]) return buf;
  return {};
}

}  // namespace

local_origin current_origin() {
  local_origin o;
  o.user = effective_user();
  o.login = login_name();
  if (o.login == o.user) o.login.clear();
  char host[256] = {};
  if (::gethostname(host, sizeof host - 1) == 0) o.host = host;
  char tty[256] = {};
  o.tty = ::ttyname_r(0, tty, sizeof tty - 1) == 0 && tty[0] ? tty : "none";
  return o;
}

std::string format_origin(const local_origin& o) {
  // Appended piece by piece: GCC 12 warns (-Wrestrict) on "x" + std::string chains.
  std::string s = "cli:";
  s += part(o.user, 32, true);
  if (!o.login.empty()) {
    s += '/';
    s += part(o.login, 32, true);
  }
  s += '@';
  s += part(o.host, 64, true);
  s += ':';
  s += part(o.tty, 64, false);
  return s;
}

std::string local_source() { return format_origin(current_origin()); }

}  // namespace rsgate::journal
