// Hex and base64 against RFC 4648 §10 test vectors, and refusal of malformed text.
#include "core/encoding.hpp"

#include <catch2/catch.hpp>

using namespace rsgate;

TEST_CASE("base64 RFC 4648 vectors") {
  const std::pair<const char*, const char*> v[] = {{"", ""},         {"f", "Zg=="},
                                                   {"fo", "Zm8="},   {"foo", "Zm9v"},
                                                   {"foob", "Zm9vYg=="}, {"fooba", "Zm9vYmE="},
                                                   {"foobar", "Zm9vYmFy"}};
  for (auto [plain, enc] : v) {
    CHECK(to_base64(as_bytes(plain)) == enc);
    auto back = from_base64(enc);
    REQUIRE(back);
    CHECK(std::string(back->begin(), back->end()) == plain);
  }
}

TEST_CASE("base64 refuses malformed input") {
  for (const char* bad : {"Zg=", "Zg===", "Z===", "Zm9v!A==", "Zg==Zg==", "=Zg=", "Zm=v"}) {
    INFO(bad);
    CHECK_FALSE(from_base64(bad).has_value());
  }
}

TEST_CASE("hex round trip and refusal") {
  bytes b = {0x00, 0x01, 0xab, 0xff};
  CHECK(to_hex(b) == "0001abff");
  CHECK(from_hex("0001ABff") == b);
  CHECK_FALSE(from_hex("abc").has_value());
  CHECK_FALSE(from_hex("zz").has_value());
}

TEST_CASE("base64url: RFC 4648 section 5 alphabet, no padding") {
  auto b = [](std::string_view s) { return std::vector<std::uint8_t>(s.begin(), s.end()); };
  CHECK(rsgate::to_base64url(b("")) == "");
  CHECK(rsgate::to_base64url(b("f")) == "Zg");
  CHECK(rsgate::to_base64url(b("fo")) == "Zm8");
  CHECK(rsgate::to_base64url(b("foo")) == "Zm9v");
  CHECK(rsgate::to_base64url(b("foobar")) == "Zm9vYmFy");
  CHECK(rsgate::to_base64url(std::vector<std::uint8_t>{0xfb, 0xff, 0xbf}) == "-_-_");
  CHECK(rsgate::to_base64(std::vector<std::uint8_t>{0xfb, 0xff, 0xbf}) == "+/+/");
  CHECK(rsgate::to_base64(b("fo")) == "Zm8=");
}
