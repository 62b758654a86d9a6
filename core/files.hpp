// File helpers for secrets and data directories: atomic writes with an exact mode (0600 for
// keys), directory creation with 0700, and checks that a file is not readable by others.
#pragma once
#include <filesystem>
#include <string>
#include <string_view>

namespace rsgate {

// Writes `content` to `path` via a temporary file in the same directory, fsyncs, and renames
// over the target, so a reader sees either the old or the whole new file. Throws on failure.
void write_file_atomic(const std::filesystem::path& path, std::string_view content, unsigned mode);

// Creates `path` exclusively (fails if it exists) with `mode` and writes `content`. Throws.
void write_file_exclusive(const std::filesystem::path& path, std::string_view content,
                          unsigned mode);

// Whole file; throws std::runtime_error naming the path on failure. `max_bytes` bounds it.
[[nodiscard]] std::string read_file(const std::filesystem::path& path,
                                    std::size_t max_bytes = 16 * 1024 * 1024);

// Creates the directory (and parents) with `mode`; an existing directory is left as it is
// (pointing --data at /tmp must not lock /tmp down). Throws.
void make_private_dir(const std::filesystem::path& path, unsigned mode = 0700);

// True when group or others may read/write/execute the file.
[[nodiscard]] bool is_group_or_world_accessible(const std::filesystem::path& path);

}  // namespace rsgate
