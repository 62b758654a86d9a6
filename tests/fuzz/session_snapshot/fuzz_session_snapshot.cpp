// Fuzz target for the session snapshots state.db keeps across a restart
// (gateway/session_snapshot.hpp): the file is read at start-up. Nothing may crash or throw; a
// snapshot accepted must hold the invariants the registry relies on (an owner exactly when
// active, a state other than ended), and writing it again must give a snapshot that reads
// back the same.
#include "gateway/session_snapshot.hpp"

#include "tests/fuzz/fuzz_support.hpp"

using namespace rsgate::gateway;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  auto text = rsgate::fuzz::as_text(data, size);
  std::string why;
  auto s = session_from_snapshot(text, why);
  if (!s) {
    FUZZ_CHECK(!why.empty());
    return 0;
  }
  FUZZ_CHECK(s->state != session_state::ended);
  FUZZ_CHECK((s->state == session_state::active) == !s->owner.empty());
  FUZZ_CHECK(!s->id.empty() && !s->machine.empty());
  auto again = to_snapshot(*s);
  std::string why2;
  auto s2 = session_from_snapshot(again, why2);
  FUZZ_CHECK(s2.has_value());
  FUZZ_CHECK(to_snapshot(*s2) == again);
  return 0;
}
