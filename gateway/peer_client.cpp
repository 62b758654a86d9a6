// See peer_client.hpp.
#include "gateway/peer_client.hpp"

#include <fmt/format.h>
#include <openssl/ssl.h>

#include <atomic>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http.hpp>
#include <boost/json/parse.hpp>
#include <memory>
#include <utility>

#include "core/files.hpp"
#include "net/tls_stream.hpp"
#include "protocol/profile.hpp"

namespace rsgate::gateway {
namespace {

namespace asio = boost::asio;
namespace ssl = asio::ssl;
namespace http = boost::beast::http;
namespace json = boost::json;
using tcp = asio::ip::tcp;
constexpr auto use_tuple = asio::as_tuple(asio::use_awaitable);

struct peer_client {
  asio::io_context& ioc;
  ssl::context tls{ssl::context::tls_client};
  std::string host, port, authority, secret;
  int timeout_ms = 3000;
  std::atomic<int> in_flight{0};
};

// The peer's answer: exactly {"machine": M, "connected": bool}.
service::peer_answer read_answer(const http::response<http::string_body>& res, const std::string& machine) {
  service::peer_answer a;
  if (res.result_int() != 200) {
    a.why = fmt::format("the peer answered {}", res.result_int());
    return a;
  }
  boost::system::error_code ec;
  auto v = json::parse(res.body(), ec);
  const json::value* connected = nullptr;
  if (!ec && v.is_object() && v.as_object().size() == 2) {
    auto& o = v.as_object();
    auto* m = o.if_contains("machine");
    connected = o.if_contains("connected");
    if (!m || !m->is_string() || m->as_string() != machine || !connected || !connected->is_bool()) connected = nullptr;
  }
  if (!connected) {
    a.why = "the peer's answer is not one";
    return a;
  }
  a.reached = true;
  a.connected = connected->as_bool();
  return a;
}

asio::awaitable<service::peer_answer> ask(std::shared_ptr<peer_client> pc, std::string machine) {
  service::peer_answer a;
  auto ex = co_await asio::this_coro::executor;
  const auto bound = std::chrono::milliseconds(pc->timeout_ms);
  tcp::resolver r(ex);
  auto [rec, results] = co_await r.async_resolve(pc->host, pc->port, use_tuple);
  if (rec) {
    a.why = "cannot resolve it: " + rec.message();
    co_return a;
  }
  net::tls_stream s(tcp::socket(ex), pc->tls.native_handle(), net::tls_stream::kHttpsBuffer);
  s.expires_after(bound);  // connect, TLS, request and answer together
  auto [cec, ep] = co_await asio::async_connect(s.socket(), results, use_tuple);
  if (cec) {
    a.why = "cannot connect: " + cec.message();
    co_return a;
  }
  if (!s.expect_peer_name(pc->host)) {
    a.why = "its name cannot be checked against a certificate";
    co_return a;
  }
  if (auto hec = co_await s.handshake(false)) {
    a.why = "TLS failed: " + hec.message();
    co_return a;
  }
  http::request<http::empty_body> req{http::verb::get, "/api/v1/machines/" + machine + "/where", 11};
  req.set(http::field::host, pc->authority);
  req.set(http::field::authorization, "RsgatePeer " + pc->secret);
  auto [wec, wn] = co_await http::async_write(s, req, use_tuple);
  boost::beast::flat_buffer buf;
  http::response_parser<http::string_body> parser;
  parser.header_limit(8 * 1024);
  parser.body_limit(4 * 1024);
  auto [hec2, rn] = co_await http::async_read(s, buf, parser, use_tuple);
  if (wec || hec2) {
    a.why = "no answer: " + (wec ? wec : hec2).message();
    co_return a;
  }
  a = read_answer(parser.get(), machine);
  co_await s.shutdown();
  co_return a;
}

}  // namespace

service::peer_lookup make_peer_lookup(asio::io_context& ioc, const std::string& url, const std::filesystem::path& ca_file,
                                      const std::string& secret, int timeout_ms) {
  auto pc = std::make_shared<peer_client>(ioc);
  pc->authority = url.substr(8);  // "https://" checked by the configuration
  std::uint16_t port = 0;
  if (!agent::parse_host_port(pc->authority, pc->host, port)) throw std::runtime_error("peer.url: expected https://HOST:PORT");
  pc->port = std::to_string(port);
  pc->secret = secret;
  pc->timeout_ms = timeout_ms;
  SSL_CTX_set_min_proto_version(pc->tls.native_handle(), TLS1_3_VERSION);
  boost::system::error_code ec;
  auto pem = read_file(ca_file, 1 << 20);
  pc->tls.add_certificate_authority(asio::buffer(pem), ec);
  if (ec) throw std::runtime_error(fmt::format("peer.ca {}: not a PEM certificate", ca_file.string()));
  pc->tls.set_verify_mode(ssl::verify_peer);
  return [pc](const std::string& machine, std::function<void(service::peer_answer)> done) {
    if (pc->in_flight.fetch_add(1) >= kMaxPeerLookups) {
      pc->in_flight.fetch_sub(1);
      done({false, false, "too many lookups in flight"});
      return;
    }
    // One strand per lookup: the stream's own deadline runs there too. The attach is
    // answered by whichever comes first, the answer or `timeout_ms` (name resolution is not
    // bounded by the stream's deadline); a late answer is dropped, its slot freed when it ends.
    auto strand = asio::make_strand(pc->ioc);
    auto answered = std::make_shared<bool>(false);  // both completions run on `strand`
    auto timer = std::make_shared<asio::steady_timer>(strand, std::chrono::milliseconds(pc->timeout_ms));
    timer->async_wait([answered, done, ms = pc->timeout_ms](boost::system::error_code tec) {
      if (tec || std::exchange(*answered, true)) return;
      done({false, false, fmt::format("no answer within {} ms", ms)});
    });
    asio::co_spawn(strand, ask(pc, machine),
                   [pc, done, answered, timer](std::exception_ptr e, service::peer_answer a) {
                     pc->in_flight.fetch_sub(1);
                     timer->cancel();
                     if (std::exchange(*answered, true)) return;
                     if (e) a = {false, false, "internal error"};
                     done(std::move(a));
                   });
  };
}

std::string load_peer_secret(const std::filesystem::path& file) {
  std::string s;
  try {
    s = read_file(file, 4096);
  } catch (const std::exception& e) {
    throw std::runtime_error(fmt::format("peer.secret_file: {}", e.what()));
  }
  if (is_group_or_world_accessible(file))
    throw std::runtime_error(fmt::format("peer.secret_file {} is readable by group or others: chmod 600 it", file.string()));
  if (s.ends_with('\n')) s.pop_back();
  bool printable = true;
  for (unsigned char ch : s) printable = printable && ch > 0x20 && ch < 0x7f;
  if (s.size() < 32 || s.size() > 256 || !printable)
    throw std::runtime_error(fmt::format("peer.secret_file {}: the secret must be 32 to 256 printable characters "
                                         "without spaces (e.g. openssl rand -base64 32)", file.string()));
  return s;
}

}  // namespace rsgate::gateway
