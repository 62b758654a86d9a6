// Test support: an io_context run by two threads for the duration of a test, so that work on
// different strands really runs at the same time (the gateway's configuration with
// gateway.threads > 1).
#pragma once
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <thread>

namespace rsgate::test {

struct two_threads {
  boost::asio::io_context ioc{2};
  boost::asio::executor_work_guard<boost::asio::io_context::executor_type> work{ioc.get_executor()};
  std::thread a{[this] { ioc.run(); }}, b{[this] { ioc.run(); }};
  ~two_threads() {
    work.reset();
    ioc.stop();
    a.join();
    b.join();
  }
};

}  // namespace rsgate::test
