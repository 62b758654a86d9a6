// PMR and machine identifiers (SPEC §4): accepted forms and a table of near misses.
#include "auth/formats.hpp"

#include <catch2/catch.hpp>

using namespace rsgate::auth;

TEST_CASE("PMR forms") {
  for (const char* ok : {"12345,677,000", "ABC12,677,000", "abc12,001,999", "TS012345678",
                         "ts012345678"}) {
    INFO(ok);
    CHECK(is_valid_pmr(ok));
  }
  for (const char* bad : {"", "1234,677,000", "123456,677,000", "12345,67,000", "12345,677,00",
                          "12345;677;000", "12345,67A,000", "12-45,677,000", "TS01234567",
                          "TS0123456789", "TX012345678", "TS01234567A", "12345,677,000 ",
                          " TS012345678", "12345,677,000\n"}) {
    INFO(bad);
    CHECK_FALSE(is_valid_pmr(bad));
  }
  CHECK(normalize_pmr("abc12,677,000") == "ABC12,677,000");
  CHECK(normalize_pmr("ts012345678") == "TS012345678");
}

TEST_CASE("machine forms") {
  CHECK(is_valid_machine("9009-42A*7801234"));
  CHECK(is_valid_machine("8286-41a*abcdefg"));
  for (const char* bad : {"", "9009-42A-7801234", "9009*42A*7801234", "900-42A*7801234",
                          "9009-42*7801234", "9009-42A*780123", "9009-42A*78012345",
                          "9009-42A*780 234", "9009-42A*7801234\n"}) {
    INFO(bad);
    CHECK_FALSE(is_valid_machine(bad));
  }
  CHECK(normalize_machine("8286-41a*abcdefg") == "8286-41A*ABCDEFG");
}

TEST_CASE("user names") {
  CHECK(is_valid_user_name("alice"));
  CHECK(is_valid_user_name("j.doe@example.com"));
  CHECK_FALSE(is_valid_user_name(""));
  CHECK_FALSE(is_valid_user_name(".alice"));
  CHECK_FALSE(is_valid_user_name("a b"));
  CHECK_FALSE(is_valid_user_name(std::string(65, 'a')));
}
