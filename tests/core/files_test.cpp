// Secret files are created with exactly the requested mode and never overwritten by the
// exclusive writer; atomic writes replace content whole.
#include "core/files.hpp"

#include <sys/stat.h>

#include <catch2/catch.hpp>

#include "tests/support/process.hpp"

using namespace rsgate;

namespace {
unsigned mode_of(const std::filesystem::path& p) {
  struct stat st {};
  REQUIRE(::stat(p.c_str(), &st) == 0);
  return st.st_mode & 0777;
}
}  // namespace

TEST_CASE("write_file_exclusive creates 0600 and refuses to overwrite") {
  test::temp_dir t;
  auto p = t / "secret.key";
  write_file_exclusive(p, "abc\n", 0600);
  CHECK(mode_of(p) == 0600);
  CHECK(read_file(p) == "abc\n");
  CHECK_THROWS(write_file_exclusive(p, "other", 0600));
  CHECK(read_file(p) == "abc\n");
  CHECK_FALSE(is_group_or_world_accessible(p));
  ::chmod(p.c_str(), 0644);
  CHECK(is_group_or_world_accessible(p));
}

TEST_CASE("write_file_atomic replaces content and sets mode") {
  test::temp_dir t;
  auto p = t / "cert.pem";
  write_file_atomic(p, "one", 0644);
  write_file_atomic(p, "two", 0600);
  CHECK(read_file(p) == "two");
  CHECK(mode_of(p) == 0600);
  CHECK(std::distance(std::filesystem::directory_iterator(t.path()), {}) == 1);  // no temp left
}

TEST_CASE("read_file bounds and errors") {
  test::temp_dir t;
  CHECK_THROWS(read_file(t / "missing"));
  write_file_atomic(t / "big", std::string(100, 'x'), 0600);
  CHECK_THROWS(read_file(t / "big", 10));
}

TEST_CASE("make_private_dir creates 0700 and leaves existing directories alone") {
  test::temp_dir t;
  make_private_dir(t / "a" / "b");
  CHECK(mode_of(t / "a" / "b") == 0700);
  ::chmod((t / "a").c_str(), 0755);
  make_private_dir(t / "a");
  CHECK(mode_of(t / "a") == 0755);
}
