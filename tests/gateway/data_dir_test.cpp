// The data directory: created complete and private, idempotent, never regenerating journal
// keys next to an existing journal, and the first administrator created only after the
// journal recorded it (fail closed).
#include "gateway/data_dir.hpp"

#include <sys/stat.h>

#include <catch2/catch.hpp>

#include "core/sqlite.hpp"
#include "journal/journal.hpp"
#include "tests/support/process.hpp"

using namespace rsgate;
using namespace rsgate::gateway;

namespace {
unsigned mode_of(const std::filesystem::path& p) {
  struct stat st {};
  REQUIRE(::stat(p.c_str(), &st) == 0);
  return st.st_mode & 0777;
}
std::int64_t users(const data_layout& d) {
  sqlite::db s(d.state_db(), sqlite::open_mode::read_only);
  return s.scalar_int("SELECT count(*) FROM users");
}
std::unique_ptr<journal::writer> writer_for(const data_layout& d, const std::string& name = "gw") {
  journal::writer_options o;
  o.gateway = name;
  o.probe_every = 0;
  return std::make_unique<journal::writer>(d.journal_db(), journal::signing_key::load(d.signing_key()), o);
}
}  // namespace

TEST_CASE("prepare creates a complete private directory and is idempotent") {
  test::temp_dir t;
  data_layout d{t / "data"};
  auto r = prepare_data_dir(d, {});
  CHECK(r.created_anything);
  CHECK(is_prepared(d));
  CHECK(mode_of(d.dir) == 0700);
  CHECK(mode_of(d.keys()) == 0700);
  CHECK(mode_of(d.signing_key()) == 0600);
  CHECK(mode_of(d.hmac_key()) == 0600);
  CHECK(mode_of(d.server_key()) == 0600);
  CHECK(mode_of(d.journal_db()) == 0600);
  CHECK(mode_of(d.state_db()) == 0600);
  auto pub = std::filesystem::file_size(d.signing_pub());
  CHECK_FALSE(prepare_data_dir(d, {}).created_anything);
  CHECK(std::filesystem::file_size(d.signing_pub()) == pub);
}

TEST_CASE("an existing directory keeps its mode") {
  test::temp_dir t;
  std::filesystem::create_directory(t / "shared");
  ::chmod((t / "shared").c_str(), 0755);
  (void)prepare_data_dir(data_layout{t / "shared"}, {});
  CHECK(mode_of(t / "shared") == 0755);
}

TEST_CASE("lost journal keys are not silently replaced") {
  test::temp_dir t;
  data_layout d{t / "data"};
  (void)prepare_data_dir(d, {});
  writer_for(d)->close();
  std::filesystem::remove(d.signing_key());
  CHECK_THROWS_WITH(prepare_data_dir(d, {}), Catch::Contains("restore keys/ from a backup"));
  CHECK_FALSE(std::filesystem::exists(d.signing_key()));
}

TEST_CASE("a journal refuses a signing key it was not created with") {
  test::temp_dir t;
  data_layout d{t / "data"};
  (void)prepare_data_dir(d, {});
  writer_for(d)->close();
  journal::writer_options o;
  o.probe_every = 0;
  CHECK_THROWS_WITH(journal::writer(d.journal_db(), journal::signing_key::generate(), o),
                    Catch::Contains("not the one this journal was created with"));
}

TEST_CASE("first administrator: journaled first, created once, nothing when the journal fails") {
  test::temp_dir t;
  data_layout d{t / "data"};
  (void)prepare_data_dir(d, {});
  {
    // A journal that refuses the append (here: already closed): no account appears.
    auto closed = writer_for(d, "gw-data");
    closed->close();
    CHECK_THROWS_WITH(create_first_admin(d, *closed, "admin", "test"),
                      Catch::Contains("journal cannot write"));
  }
  CHECK(users(d) == 0);
  auto w = writer_for(d, "gw-data");
  auto pw = create_first_admin(d, *w, "admin", "test");
  REQUIRE(pw);
  CHECK(pw->size() == 20);
  CHECK(users(d) == 1);
  CHECK_FALSE(create_first_admin(d, *w, "admin", "test").has_value());
  CHECK(users(d) == 1);
  w->close();
  journal::reader r({d.journal_db()});
  journal::filter f;
  f.kind = "admin.user";
  CHECK(r.count(f) == 1);
  CHECK(journal_gateway_name(d) == "gw-data");
}
