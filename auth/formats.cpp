// See formats.hpp.
#include "auth/formats.hpp"

namespace rsgate::auth {
namespace {
bool alnum(char c) {
  return (c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z');
}
bool digit(char c) { return c >= '0' && c <= '9'; }
std::string upper(std::string_view s) {
  std::string out(s);
  for (auto& c : out)
    if (c >= 'a' && c <= 'z') c = static_cast<char>(c - 'a' + 'A');
  return out;
}
}  // namespace

bool is_valid_pmr(std::string_view s) {
  if (s.size() == 13) {
    for (int i = 0; i < 5; ++i)
      if (!alnum(s[i])) return false;
    if (s[5] != ',' || s[9] != ',') return false;
    for (int i : {6, 7, 8, 10, 11, 12})
      if (!digit(s[i])) return false;
    return true;
  }
  if (s.size() == 11 && (s[0] == 'T' || s[0] == 't') && (s[1] == 'S' || s[1] == 's')) {
    for (int i = 2; i < 11; ++i)
      if (!digit(s[i])) return false;
    return true;
  }
  return false;
}

bool is_valid_machine(std::string_view s) {
  if (s.size() != 16 || s[4] != '-' || s[8] != '*') return false;
  for (int i = 0; i < 16; ++i) {
    if (i == 4 || i == 8) continue;
    if (!alnum(s[i])) return false;
  }
  return true;
}

std::string normalize_pmr(std::string_view s) { return upper(s); }
std::string normalize_machine(std::string_view s) { return upper(s); }

bool is_valid_user_name(std::string_view s) {
  if (s.empty() || s.size() > 64 || !alnum(s[0])) return false;
  for (char c : s)
    if (!alnum(c) && c != '.' && c != '_' && c != '@' && c != '-') return false;
  return true;
}

}  // namespace rsgate::auth
