// What every `rsgate` subcommand shares: the exit codes of SPEC §3 and the one place where
// an exception becomes a one-line error on stderr and an exit code.
#pragma once
#include <boost/program_options/errors.hpp>
#include <ostream>
#include <stdexcept>

namespace rsgate::cli {

inline constexpr int kOk = 0, kFailed = 1, kUsage = 2;

// Bad usage or input: exit 2. Anything else thrown is a failed or refused action: exit 1.
struct usage_error : std::runtime_error {
  using std::runtime_error::runtime_error;
};

template <typename F>
int guarded(const char* name, F&& f, std::ostream& err) {
  try {
    return f();
  } catch (const boost::program_options::error& e) {
    err << "rsgate " << name << ": " << e.what() << "\n";
    return kUsage;
  } catch (const usage_error& e) {
    err << "rsgate " << name << ": " << e.what() << "\n";
    return kUsage;
  } catch (const std::exception& e) {
    err << "rsgate " << name << ": " << e.what() << "\n";
    return kFailed;
  }
}

}  // namespace rsgate::cli
