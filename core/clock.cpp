// See clock.hpp.
#include "core/clock.hpp"

#include <time.h>

namespace rsgate {

micros system_clock::now() const {
  timespec ts{};
  ::clock_gettime(CLOCK_REALTIME, &ts);
  return static_cast<micros>(ts.tv_sec) * 1'000'000 + ts.tv_nsec / 1000;
}

const system_clock& system_clock::instance() {
  static const system_clock c;
  return c;
}

}  // namespace rsgate
