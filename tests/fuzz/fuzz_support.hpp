// Helpers shared by the fuzz targets: the input seen as text, splitting it into fields on a
// separator byte, and FUZZ_CHECK for properties. A broken property is a bug like a crash, so it
// traps: libFuzzer then saves the input, and the corpus replay under ctest fails on it.
#pragma once
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <string>
#include <string_view>
#include <vector>

// Not assert(): that disappears under NDEBUG, and a property must hold in every build.
#define FUZZ_CHECK(cond)                                                                 \
  do {                                                                                   \
    if (!(cond)) {                                                                       \
      std::fprintf(stderr, "%s:%d: property violated: %s\n", __FILE__, __LINE__, #cond); \
      __builtin_trap();                                                                  \
    }                                                                                    \
  } while (0)

namespace rsgate::fuzz {

inline std::string_view as_text(const std::uint8_t* data, std::size_t size) {
  return {reinterpret_cast<const char*>(data), size};
}

// Every piece between separators, empty pieces included ("a||b" gives "a", "", "b").
inline std::vector<std::string_view> split(std::string_view text, char sep) {
  std::vector<std::string_view> out;
  std::size_t start = 0;
  for (;;) {
    auto at = text.find(sep, start);
    if (at == std::string_view::npos) {
      out.push_back(text.substr(start));
      return out;
    }
    out.push_back(text.substr(start, at - start));
    start = at + 1;
  }
}

// Replaces every occurrence of `token` in `s` with `value`.
inline void replace_all(std::string& s, std::string_view token, std::string_view value) {
  for (auto at = s.find(token); at != std::string::npos; at = s.find(token, at + value.size()))
    s.replace(at, token.size(), value);
}

}  // namespace rsgate::fuzz
