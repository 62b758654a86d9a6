// net::tls_stream over real loopback TCP with real certificates (gateway/pki): handshake and
// name checks, bulk data both ways at once with gather writes of odd sizes, close_notify,
// deadlines, and close() during a pending read.
#include "net/tls_stream.hpp"

#include <openssl/ssl.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/ssl/error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <catch2/catch.hpp>
#include <array>
#include <csignal>
#include <optional>
#include <random>
#include <tuple>

#include "gateway/pki.hpp"

namespace asio = boost::asio;
using rsgate::net::tls_stream;
using tcp = asio::ip::tcp;

namespace {

constexpr auto use_tuple = asio::as_tuple(asio::use_awaitable);

struct tls_pair {
  asio::io_context ioc{1};
  asio::ssl::context server_ctx{asio::ssl::context::tls_server};
  asio::ssl::context client_ctx{asio::ssl::context::tls_client};
  std::optional<tls_stream> server, client;

  explicit tls_pair(const std::string& client_expects = "localhost") {
    std::signal(SIGPIPE, SIG_IGN);  // as in rsgate serve and rsgate-agent (tls_stream.hpp)
    auto ca = rsgate::gateway::make_ca("test CA", 2);
    auto cert = rsgate::gateway::make_server_cert(ca, "localhost", {"localhost", "127.0.0.1"}, 2);
    SSL_CTX_set_min_proto_version(server_ctx.native_handle(), TLS1_3_VERSION);
    server_ctx.use_certificate_chain(asio::buffer(cert.cert_pem));
    server_ctx.use_private_key(asio::buffer(cert.key_pem), asio::ssl::context::pem);
    SSL_CTX_set_min_proto_version(client_ctx.native_handle(), TLS1_3_VERSION);
    client_ctx.add_certificate_authority(asio::buffer(ca.cert_pem));
    client_ctx.set_verify_mode(asio::ssl::verify_peer);

    tcp::acceptor acc(ioc, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
    tcp::socket c(ioc);
    c.connect(acc.local_endpoint());
    server.emplace(acc.accept(), server_ctx.native_handle(), tls_stream::kTunnelBuffer);
    client.emplace(std::move(c), client_ctx.native_handle(), tls_stream::kTunnelBuffer);
    REQUIRE(client->expect_peer_name(client_expects));
  }

  // Runs both handshakes; returns {server error, client error}.
  std::pair<boost::system::error_code, boost::system::error_code> handshake() {
    std::pair<boost::system::error_code, boost::system::error_code> r;
    asio::co_spawn(ioc, [&]() -> asio::awaitable<void> { r.first = co_await server->handshake(true); }, asio::detached);
    asio::co_spawn(ioc, [&]() -> asio::awaitable<void> { r.second = co_await client->handshake(false); }, asio::detached);
    ioc.run();
    ioc.restart();
    return r;
  }
};

std::vector<std::uint8_t> random_bytes(std::size_t n, unsigned seed) {
  std::mt19937 g(seed);
  std::vector<std::uint8_t> v(n);
  for (auto& b : v) b = static_cast<std::uint8_t>(g());
  return v;
}

// Sends `data` in gather writes of 1..5 buffers of odd sizes.
asio::awaitable<void> send_all(tls_stream& s, const std::vector<std::uint8_t>& data, unsigned seed,
                               boost::system::error_code& result) {
  std::mt19937 g(seed);
  std::size_t off = 0;
  while (off < data.size()) {
    std::vector<asio::const_buffer> bufs;
    for (int i = 0, n = 1 + static_cast<int>(g() % 5); i < n && off < data.size(); ++i) {
      auto len = std::min<std::size_t>(1 + g() % 70'000, data.size() - off);
      bufs.emplace_back(data.data() + off, len);
      off += len;
    }
    if ((result = co_await s.write(bufs))) co_return;
  }
}

// Reads until `want` bytes arrived (0: until an error or the end).
asio::awaitable<void> receive_all(tls_stream& s, std::vector<std::uint8_t>& out, boost::system::error_code& result,
                                  std::size_t want = 0) {
  std::vector<std::uint8_t> buf(16 * 1024);
  while (want == 0 || out.size() < want) {
    auto [ec, n] = co_await s.read_some(asio::buffer(buf));
    if (ec) {
      result = ec;
      co_return;
    }
    out.insert(out.end(), buf.begin(), buf.begin() + static_cast<long>(n));
  }
}

}  // namespace

TEST_CASE("tls_stream: handshake, 8 MiB each way at once, then close_notify is the end") {
  tls_pair p;
  auto [se, ce] = p.handshake();
  REQUIRE_FALSE(se);
  REQUIRE_FALSE(ce);
  CHECK(SSL_version(p.server->native_handle()) == TLS1_3_VERSION);
  const std::size_t size = 8 << 20;
  auto up = random_bytes(size, 1), down = random_bytes(size, 2);
  std::vector<std::uint8_t> got_up, got_down;
  boost::system::error_code w1, w2, r1, r2;
  // Each side reads and writes concurrently, as the gateway and the agent do.
  asio::co_spawn(p.ioc, receive_all(*p.server, got_up, r1, size), asio::detached);
  asio::co_spawn(p.ioc, receive_all(*p.client, got_down, r2, size), asio::detached);
  asio::co_spawn(p.ioc, send_all(*p.client, up, 3, w1), asio::detached);
  asio::co_spawn(p.ioc, send_all(*p.server, down, 4, w2), asio::detached);
  p.ioc.run_for(std::chrono::seconds(60));
  p.ioc.restart();
  CHECK_FALSE(w1);
  CHECK_FALSE(w2);
  CHECK_FALSE(r1);
  CHECK_FALSE(r2);
  CHECK(got_up.size() == size);
  CHECK(got_down.size() == size);
  CHECK((got_up == up));  // (parenthesised: Catch would print 8 MiB on failure)
  CHECK((got_down == down));

  // close_notify: the other side's read ends with eof.
  std::vector<std::uint8_t> rest;
  boost::system::error_code r3;
  asio::co_spawn(p.ioc, receive_all(*p.server, rest, r3), asio::detached);
  asio::co_spawn(p.ioc, p.client->shutdown(), asio::detached);
  p.ioc.run_for(std::chrono::seconds(10));
  CHECK(r3 == asio::error::eof);
  CHECK(rest.empty());
}

TEST_CASE("tls_stream: a name or address that cannot be checked is refused before connecting") {
  tls_pair p;
  CHECK_FALSE(p.client->expect_peer_name(""));
  CHECK_FALSE(p.client->expect_peer_name(std::string("a\0b", 3)));
  CHECK(p.client->expect_peer_name("127.0.0.1"));  // an IP SAN of the test certificate
  auto [se, ce] = p.handshake();
  CHECK_FALSE(ce);
  CHECK_FALSE(se);
}

TEST_CASE("tls_stream: a certificate for another name, or from another CA, is refused") {
  tls_pair wrong_name("gateway.example.com");
  auto [se, ce] = wrong_name.handshake();
  CHECK(ce);
  CHECK(se);

  tls_pair other_ca;
  asio::ssl::context stranger(asio::ssl::context::tls_client);
  auto ca2 = rsgate::gateway::make_ca("someone else", 2);
  stranger.add_certificate_authority(asio::buffer(ca2.cert_pem));
  stranger.set_verify_mode(asio::ssl::verify_peer);
  tcp::acceptor acc(other_ca.ioc, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
  tcp::socket c(other_ca.ioc);
  c.connect(acc.local_endpoint());
  other_ca.server.emplace(acc.accept(), other_ca.server_ctx.native_handle(), tls_stream::kHttpsBuffer);
  other_ca.client.emplace(std::move(c), stranger.native_handle(), tls_stream::kHttpsBuffer);
  auto [se2, ce2] = other_ca.handshake();
  CHECK(ce2);
  CHECK(se2);
}

TEST_CASE("tls_stream: the deadline ends a read that waits too long") {
  tls_pair p;
  auto [se, ce] = p.handshake();
  REQUIRE_FALSE(se);
  REQUIRE_FALSE(ce);
  std::vector<std::uint8_t> sink;
  boost::system::error_code r1, r2;
  auto t0 = std::chrono::steady_clock::now();
  p.server->expires_after(std::chrono::seconds(30));
  p.server->expires_after(std::chrono::milliseconds(200));  // an earlier deadline re-arms
  asio::co_spawn(p.ioc, receive_all(*p.server, sink, r1), asio::detached);
  asio::co_spawn(p.ioc, receive_all(*p.client, sink, r2), asio::detached);
  p.ioc.run_for(std::chrono::seconds(10));
  auto took = std::chrono::steady_clock::now() - t0;
  CHECK(r1 == asio::error::timed_out);
  CHECK(r2 == asio::ssl::error::stream_truncated);  // the server closed without close_notify
  CHECK(took >= std::chrono::milliseconds(190));
  CHECK(took < std::chrono::seconds(5));
  CHECK(sink.empty());
}

TEST_CASE("tls_stream: a later deadline only moves, close() ends a pending read at once") {
  tls_pair p;
  auto [se, ce] = p.handshake();
  REQUIRE_FALSE(se);
  REQUIRE_FALSE(ce);
  std::vector<std::uint8_t> sink;
  boost::system::error_code r1;
  p.server->expires_after(std::chrono::milliseconds(100));
  p.server->expires_after(std::chrono::seconds(30));  // moved before it fired: no time-out
  asio::co_spawn(p.ioc, receive_all(*p.server, sink, r1), asio::detached);
  asio::steady_timer t(p.ioc, std::chrono::milliseconds(400));
  t.async_wait([&](auto) { p.server->close(); });
  auto t0 = std::chrono::steady_clock::now();
  p.ioc.run_for(std::chrono::seconds(10));
  CHECK(r1 == asio::error::operation_aborted);
  CHECK(std::chrono::steady_clock::now() - t0 >= std::chrono::milliseconds(390));
}

TEST_CASE("tls_stream: a peer that vanishes without close_notify is an error, not an end") {
  tls_pair p;
  auto [se, ce] = p.handshake();
  REQUIRE_FALSE(se);
  REQUIRE_FALSE(ce);
  boost::system::error_code r;
  std::vector<std::uint8_t> sink;
  p.client->socket().close();  // no close_notify
  asio::co_spawn(p.ioc, receive_all(*p.server, sink, r), asio::detached);
  p.ioc.run_for(std::chrono::seconds(10));
  CHECK(r);
  CHECK(r != asio::error::eof);
}

// The TLS records a gather write leaves in: whole records from the caller's memory, small
// pieces and the seams between pieces copied into one record; the bytes in order, unchanged.
TEST_CASE("tls_stream: a gather write is cut at record boundaries, not at every piece") {
  constexpr std::size_t kRecord = 16 * 1024;
  auto plan = [](const std::vector<std::size_t>& sizes, std::vector<std::uint8_t>& data) {
    std::size_t total = 0;
    for (auto n : sizes) total += n;
    data = random_bytes(total, 7);
    std::vector<asio::const_buffer> in;
    std::size_t off = 0;
    for (auto n : sizes) {
      in.emplace_back(data.data() + off, n);
      off += n;
    }
    return in;
  };
  auto sizes_of = [](const std::vector<asio::const_buffer>& bufs) {
    std::vector<std::size_t> v;
    for (auto& b : bufs) v.push_back(b.size());
    return v;
  };
  auto joined = [](const std::vector<asio::const_buffer>& bufs) {
    std::vector<std::uint8_t> v;
    for (auto& b : bufs) v.insert(v.end(), static_cast<const std::uint8_t*>(b.data()),
                                  static_cast<const std::uint8_t*>(b.data()) + b.size());
    return v;
  };
  std::vector<std::uint8_t> data, staging;
  // Two DATA frames of 12 + 32 KiB: two records each from the frames, one of 24 bytes between.
  auto in = plan({12 + 32768, 12 + 32768}, data);
  auto out = tls_stream::coalesce(in, staging);
  CHECK(sizes_of(out) == std::vector<std::size_t>{32768, 24, 32768});
  CHECK(joined(out) == data);
  // A WebSocket header and a 60 KiB payload: the header shares the payload's first record.
  in = plan({8, 61440}, data);
  out = tls_stream::coalesce(in, staging);
  CHECK(sizes_of(out) == std::vector<std::size_t>{8 + 12288, 49152});
  CHECK(joined(out) == data);
  CHECK(out[1].data() == static_cast<const std::uint8_t*>(in[1].data()) + 12288);  // not copied
  // One piece alone is never copied; small pieces are merged up to a record.
  in = plan({5000}, data);
  out = tls_stream::coalesce(in, staging);
  REQUIRE(out.size() == 1);
  CHECK(out[0].data() == in[0].data());
  in = plan({100, 200, 300}, data);
  out = tls_stream::coalesce(in, staging);
  CHECK(sizes_of(out) == std::vector<std::size_t>{600});
  CHECK(joined(out) == data);
  // Random sequences: same bytes; every buffer one record at most, or whole records.
  std::mt19937 g(11);
  for (int round = 0; round < 200; ++round) {
    std::vector<std::size_t> sizes;
    for (int i = 0, n = 1 + static_cast<int>(g() % 8); i < n; ++i) sizes.push_back(g() % 3 == 0 ? g() % 40 : g() % 70'000);
    in = plan(sizes, data);
    out = tls_stream::coalesce(in, staging);
    CHECK(joined(out) == data);
    for (auto& b : out) CHECK((b.size() <= kRecord || b.size() % kRecord == 0));
    CHECK(staging.size() <= data.size());
  }
}

// After a read that emptied the socket, the stream waits for readiness instead of asking the
// socket again (read_now says would_block without a recv()). Nothing that arrives later, or
// in between, is missed: small messages that come after a pause, at once, or while the
// reader is between its attempt and its wait are all read, in order, within the deadline.
TEST_CASE("tls_stream: after the socket ran dry, read_now says so and later bytes are still read") {
  tls_pair p;
  auto [se, ce] = p.handshake();
  REQUIRE_FALSE(se);
  REQUIRE_FALSE(ce);
  p.server->expires_after(std::chrono::seconds(20));  // a missed wake-up fails, never hangs
  constexpr int kMessages = 400;
  std::vector<std::uint8_t> got;
  int would_block = 0;
  boost::system::error_code rerr, werr;
  bool reader_done = false;
  asio::co_spawn(
      p.ioc,
      [&]() -> asio::awaitable<void> {
        std::array<std::uint8_t, 4096> buf{};
        while (got.size() < kMessages * 3) {
          auto a = p.server->read_now(asio::buffer(buf));
          if (a.would_block) {
            ++would_block;
            std::tie(a.ec, a.n) = co_await p.server->read_some(asio::buffer(buf));
          }
          if ((rerr = a.ec)) co_return;
          got.insert(got.end(), buf.begin(), buf.begin() + static_cast<long>(a.n));
        }
        reader_done = true;
      },
      asio::detached);
  asio::co_spawn(
      p.ioc,
      [&]() -> asio::awaitable<void> {
        asio::steady_timer pause(co_await asio::this_coro::executor);
        for (int i = 0; i < kMessages; ++i) {
          std::array<std::uint8_t, 3> m{static_cast<std::uint8_t>(i), static_cast<std::uint8_t>(i >> 8), 0x5a};
          std::array<asio::const_buffer, 1> b{asio::buffer(m)};
          if ((werr = co_await p.client->write(b))) co_return;
          // A pause every few messages: the reader finds the socket empty and sleeps.
          if (i % 4 == 0) {
            pause.expires_after(std::chrono::microseconds(200 + (i % 7) * 100));
            co_await pause.async_wait(use_tuple);
          }
        }
      },
      asio::detached);
  p.ioc.run_for(std::chrono::seconds(30));
  CHECK_FALSE(rerr);
  CHECK_FALSE(werr);
  REQUIRE(reader_done);
  REQUIRE(got.size() == kMessages * 3);
  for (int i = 0; i < kMessages; ++i) {
    CHECK(got[i * 3] == static_cast<std::uint8_t>(i));
    CHECK(got[i * 3 + 1] == static_cast<std::uint8_t>(i >> 8));
    CHECK(got[i * 3 + 2] == 0x5a);
  }
  CHECK(would_block >= 10);  // the reader really found the socket empty and slept, many times
}
