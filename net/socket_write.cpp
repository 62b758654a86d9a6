#include "net/socket_write.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/error.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <vector>

namespace asio = boost::asio;

namespace rsgate::net {

std::size_t write_now(asio::ip::tcp::socket& sock, std::span<const asio::const_buffer> bufs,
                      boost::system::error_code& ec) {
  ec = {};
  if (!sock.non_blocking()) sock.non_blocking(true, ec);
  if (ec) return 0;
  const std::size_t n = sock.write_some(bufs, ec);
  if (ec == asio::error::would_block || ec == asio::error::try_again) {
    ec = {};
    return 0;
  }
  return ec ? 0 : n;
}

asio::awaitable<std::pair<boost::system::error_code, std::size_t>> write_all(asio::ip::tcp::socket& sock,
                                                                              std::span<const asio::const_buffer> bufs) {
  std::vector<asio::const_buffer> rest;
  rest.reserve(bufs.size());
  for (const auto& b : bufs)
    if (b.size() != 0) rest.push_back(b);
  std::size_t done = 0;
  boost::system::error_code ec;
  std::size_t first = 0;  // rest[first] is the next buffer not written in full
  while (first < rest.size()) {
    const std::size_t n = write_now(sock, std::span(rest).subspan(first), ec);
    if (ec) break;
    if (n == 0) {
      auto [wec] = co_await sock.async_wait(asio::socket_base::wait_write, asio::as_tuple(asio::use_awaitable));
      if ((ec = wec)) break;
      continue;
    }
    done += n;
    for (std::size_t left = n; left > 0 && first < rest.size();) {
      const std::size_t k = std::min(left, rest[first].size());
      rest[first] += k;
      left -= k;
      if (rest[first].size() == 0) ++first;
    }
  }
  co_return std::pair{ec, done};
}

}  // namespace rsgate::net
