// A file compiled into the binary by cmake/embed.cmake (SQL schemas and migrations).
#pragma once
#include <span>
#include <string_view>

namespace rsgate {
struct embedded_file {
  std::string_view name;
  std::string_view content;
};
}  // namespace rsgate
