// Fuzz target for scope mappings (agent/profile.hpp), "NAME=HOST:PORT" as typed to
// `rsgate machine enroll --scope` and read back from every agent profile: parse_scope_mapping
// may refuse only with std::invalid_argument, must accept only a valid scope name and a port
// from 1 to 65535, and what it accepts must read back the same from "NAME=HOST:PORT" written
// the way profiles write it ("[v6]:port" when the host holds a ':').
#include "protocol/profile.hpp"

#include <stdexcept>
#include <string>

#include "protocol/messages.hpp"
#include "tests/fuzz/fuzz_support.hpp"

namespace agent = rsgate::agent;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  agent::scope_mapping m;
  try {
    m = agent::parse_scope_mapping(rsgate::fuzz::as_text(data, size));
  } catch (const std::invalid_argument& e) {
    FUZZ_CHECK(std::string_view(e.what()).size() > 0);
    return 0;
  }
  FUZZ_CHECK(rsgate::tunnel::is_scope_name(m.name));
  FUZZ_CHECK(m.port >= 1 && !m.host.empty());
  auto host = m.host.find(':') != std::string::npos ? "[" + m.host + "]" : m.host;
  auto again = agent::parse_scope_mapping(m.name + "=" + host + ":" + std::to_string(m.port));
  FUZZ_CHECK(again.name == m.name && again.host == m.host && again.port == m.port);
  return 0;
}
