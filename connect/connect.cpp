// See connect.hpp. One io_context thread; per accepted connection one coroutine that obtains
// the channel and then runs two pumps (TCP -> WebSocket, WebSocket -> TCP) and a watch until
// both directions ended or either side failed (docs/api.md §5.5, how a channel ends).
#include "connect/connect.hpp"

#include <fmt/format.h>
#include <openssl/ssl.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/ssl/error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/websocket.hpp>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <boost/json/value.hpp>
#include <boost/program_options.hpp>
#include <boost/url/parse.hpp>
#include <boost/url/url_view.hpp>
#include <charconv>
#include <csignal>
#include <iostream>
#include <ostream>

#include "core/files.hpp"
#include "core/cli.hpp"
#include "core/address.hpp"
#include "net/socket_state.hpp"
#include "net/socket_write.hpp"
#include "net/tls_stream.hpp"
#include "protocol/messages.hpp"

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace websocket = beast::websocket;
namespace ssl = asio::ssl;
namespace json = boost::json;
namespace po = boost::program_options;
namespace urls = boost::urls;
using tcp = asio::ip::tcp;

namespace rsgate::representative {
namespace {

constexpr auto use_tuple = asio::as_tuple(asio::use_awaitable);

struct connect_options {
  std::string host, port, session, scope, access_type, token;
  std::string authority;  // HOST[:PORT] as the URL wrote it (IPv6 bracketed): the Host header
  std::ostream* out;
  std::ostream* err;
};

// A TLS connection to the gateway's HTTPS listener, its certificate checked against --ca and
// the host name (or IP address) of --gateway.
asio::awaitable<std::unique_ptr<net::tls_stream>> dial(const connect_options& o, ssl::context& tls, std::string& why) {
  auto ex = co_await asio::this_coro::executor;
  tcp::resolver r(ex);
  auto [rec, results] = co_await r.async_resolve(o.host, o.port, use_tuple);
  if (rec) {
    why = "cannot resolve the gateway: " + rec.message();
    co_return nullptr;
  }
  auto s = std::make_unique<net::tls_stream>(tcp::socket(ex), tls.native_handle(), net::tls_stream::kHttpsBuffer);
  s->expires_after(std::chrono::seconds(20));
  auto [cec, ep] = co_await asio::async_connect(s->socket(), results, use_tuple);
  if (cec) {
    why = "cannot connect to the gateway: " + cec.message();
    co_return nullptr;
  }
  beast::error_code nd;
  s->socket().set_option(tcp::no_delay(true), nd);  // interactive streams
  if (!s->expect_peer_name(o.host)) {
    why = "the gateway's name '" + o.host + "' cannot be checked against a certificate";
    co_return nullptr;
  }
  if (auto hec = co_await s->handshake(false)) {
    why = "TLS with the gateway failed: " + hec.message();
    co_return nullptr;
  }
  s->expires_never();
  co_return s;
}

// POST /api/v1/sessions/{id}/channels -> the one-time stream token.
asio::awaitable<std::optional<std::string>> request_channel(const connect_options& o, ssl::context& tls, std::string& why) {
  auto s = co_await dial(o, tls, why);
  if (!s) co_return std::nullopt;
  http::request<http::string_body> req{http::verb::post, "/api/v1/sessions/" + o.session + "/channels", 11};
  req.set(http::field::host, o.authority);
  req.set(http::field::authorization, "Bearer " + o.token);
  req.set(http::field::content_type, "application/json");
  req.body() = json::serialize(json::object{{"scope", o.scope}, {"access_type", o.access_type}});
  req.prepare_payload();
  s->expires_after(std::chrono::seconds(30));
  auto [wec, wn] = co_await http::async_write(*s, req, use_tuple);
  beast::flat_buffer buf;
  http::response_parser<http::string_body> parser;
  parser.body_limit(64 * 1024);
  auto [rec, rn] = co_await http::async_read(*s, buf, parser, use_tuple);
  if (wec || rec) {
    why = "the gateway did not answer the channel request";
    co_return std::nullopt;
  }
  auto& res = parser.get();
  boost::system::error_code jec;
  auto v = json::parse(res.body(), jec);
  if (res.result_int() != 201 || jec || !v.is_object() || !v.as_object().contains("token")) {
    std::string msg = "refused";
    if (!jec && v.is_object() && v.as_object().contains("error"))
      msg = std::string(v.as_object()["error"].as_object()["message"].as_string());
    why = fmt::format("the gateway refused the channel ({}): {}", res.result_int(), msg);
    co_return std::nullopt;
  }
  co_await s->shutdown();
  co_return std::string(v.as_object()["token"].as_string());
}

using ws_stream = websocket::stream<net::tls_stream&>;

// One relayed connection: the client's socket, the channel's WebSocket, and what the two pumps
// and the watch know. All run on the one thread; the relay waits for them before it frees
// the sockets.
//
// A clean end of stream is a half-close ("eof" each way; the WebSocket closes once both went).
// Anything else cuts the channel at once: a client that resets, a failed read or write on
// either side. A cut client resets the WebSocket's TCP connection, which the gateway sees
// even while it is not reading it (its window toward the agent is full); a failed
// WebSocket resets the client's connection, so a truncated stream never looks complete.
struct relay_state {
  relay_state(tcp::socket* so, ws_stream* w, connect_options o, unsigned short p)
      : sock(so), ws(w), opts(std::move(o)), peer(p), watch_timer(so->get_executor()) {}
  tcp::socket* sock;
  ws_stream* ws;
  connect_options opts;
  unsigned short peer;
  asio::steady_timer watch_timer;
  bool sent_eof = false;  // the client's end of stream went out as "eof"
  bool got_eof = false;   // the gateway's "eof" came: the client's socket is shut down for sending
  bool cut = false;       // the channel was cut (below); the pumps end
  bool ending = false;    // the relay is ending: the watch stops
  bool pump_done = false, watch_done = false;
};

// The client side failed or reset: reset the WebSocket's TCP connection (the gateway closes
// the channel with "the representative's connection failed"), and let go of the client.
void cut_by_client(relay_state& st, const std::string& why) {
  if (st.cut) return;
  st.cut = true;
  *st.opts.err << fmt::format("rsgate connect: connection from port {}: {}; the channel is closed\n", st.peer, why);
  net::reset_on_close(st.ws->next_layer().socket());
  st.ws->next_layer().close();
  beast::error_code ignored;
  st.sock->close(ignored);
}

// The WebSocket failed (not a close frame): the client's stream is cut, reset it.
void cut_by_gateway(relay_state& st) {
  if (st.cut) return;
  st.cut = true;
  net::reset_on_close(*st.sock);
  beast::error_code ignored;
  st.sock->close(ignored);
  st.ws->next_layer().close();
}

// Closes the WebSocket once "eof" went both ways; whichever pump completes the pair does it.
asio::awaitable<void> close_if_done(relay_state& st) {
  if (st.sent_eof && st.got_eof && !st.cut) co_await st.ws->async_close(websocket::close_code::normal, use_tuple);
}

asio::awaitable<void> tcp_to_ws(std::shared_ptr<relay_state> st) {
  std::vector<std::uint8_t> buf(60 * 1024);  // under the stream's 64 KiB message limit
  for (;;) {
    auto [ec, n] = co_await st->sock->async_read_some(asio::buffer(buf), use_tuple);
    if (st->cut || st->ending) break;
    if (ec == asio::error::eof) {  // a half-close: the other direction goes on
      st->ws->text(true);
      auto [wec, wn] = co_await st->ws->async_write(asio::buffer(std::string_view("eof")), use_tuple);
      if (wec) break;  // the relay loop's read fails too
      st->sent_eof = true;
      co_await close_if_done(*st);
      break;
    }
    if (ec) {
      cut_by_client(*st, "the client's connection failed (" + ec.message() + ")");
      break;
    }
    st->ws->binary(true);
    auto [wec, wn] = co_await st->ws->async_write(asio::buffer(buf.data(), n), use_tuple);
    if (wec) break;
  }
  st->pump_done = true;
}

// While tcp_to_ws waits for the gateway to take a message (its window toward the agent is
// full), nothing reads the client's socket, and while the relay loop waits for the client to
// take bytes, nothing reads the WebSocket: a reset on either would go unseen. Look once a
// second, without reading.
asio::awaitable<void> watch(std::shared_ptr<relay_state> st) {
  while (!st->ending && !st->cut) {
    st->watch_timer.expires_after(std::chrono::seconds(1));
    co_await st->watch_timer.async_wait(use_tuple);
    if (st->ending || st->cut) break;
    if (net::connection_lost(*st->sock, st->got_eof))
      cut_by_client(*st, "the client reset the connection");
    else if (st->ws->is_open() && net::connection_lost(st->ws->next_layer().socket()))
      cut_by_gateway(*st);
  }
  st->watch_done = true;
}

// The WebSocket -> TCP pump; returns when the WebSocket ended.
asio::awaitable<void> ws_to_tcp(relay_state& st) {
  beast::flat_buffer buf;
  for (;;) {
    buf.clear();
    auto [ec, n] = co_await st.ws->async_read(buf, use_tuple);
    if (st.cut) co_return;
    if (ec == websocket::error::closed) {  // a close frame: what came before it is delivered
      if (!(st.got_eof && st.sent_eof) && !st.ws->reason().reason.empty())
        *st.opts.err << "rsgate connect: the channel was closed: " << st.ws->reason().reason << "\n";
      co_return;
    }
    if (ec) {
      if (!(st.got_eof && st.sent_eof)) {
        *st.opts.err << "rsgate connect: the channel ended: " << ec.message() << "\n";
        cut_by_gateway(st);
      }
      co_return;
    }
    if (st.ws->got_text()) {
      if (beast::buffers_to_string(buf.data()) == "eof" && !st.got_eof) {
        st.got_eof = true;
        beast::error_code ignored;
        st.sock->shutdown(tcp::socket::shutdown_send, ignored);
        co_await close_if_done(st);
      }
      continue;
    }
    const asio::const_buffer payload = buf.data();
    auto [wec, wn] = co_await net::write_all(*st.sock, std::span(&payload, 1));
    if (wec) {
      if (!st.cut) cut_by_client(st, "the client's connection failed (" + wec.message() + ")");
      co_return;
    }
  }
}

asio::awaitable<void> relay(tcp::socket sock, connect_options o, ssl::context* tls) {
  std::string why;
  beast::error_code pec;
  auto peer = sock.remote_endpoint(pec).port();
  auto token = co_await request_channel(o, *tls, why);
  if (!token) {
    *o.err << "rsgate connect: " << why << "\n";
    co_return;
  }
  auto s = co_await dial(o, *tls, why);
  if (!s) {
    *o.err << "rsgate connect: " << why << "\n";
    co_return;
  }
  net::keep_alive(s->socket());
  ws_stream ws(*s);  // `s` outlives it: both live in this coroutine's frame
  ws.set_option(websocket::stream_base::timeout::suggested(beast::role_type::client));
  ws.read_message_max(tunnel::kMaxStreamMessage);
  // One frame per message, masked in one pass: Beast's defaults (4 KiB fragments and mask
  // buffer) cost a TLS record and several composed operations per 4 KiB.
  ws.auto_fragment(false);
  ws.write_buffer_bytes(64 * 1024);
  auto [hec] = co_await ws.async_handshake(o.authority, "/api/v1/channels/stream?token=" + *token, use_tuple);
  if (hec) {
    *o.err << "rsgate connect: the channel stream failed: " << hec.message() << "\n";
    co_return;
  }
  *o.out << fmt::format("rsgate connect: connection from port {} -> {} ({})\n", peer, o.scope, o.access_type);
  o.out->flush();
  auto st = std::make_shared<relay_state>(&sock, &ws, o, peer);
  asio::co_spawn(sock.get_executor(), tcp_to_ws(st), asio::detached);
  asio::co_spawn(sock.get_executor(), watch(st), asio::detached);
  co_await ws_to_tcp(*st);
  // The pump and the watch use `sock` and `ws`: end them and wait for them before they go.
  // Closing the client's socket sends a FIN behind what it still holds (a reset if it was cut).
  st->ending = true;
  st->watch_timer.cancel();
  beast::error_code ignored;
  sock.close(ignored);
  asio::steady_timer t(sock.get_executor());
  for (int i = 0; !(st->pump_done && st->watch_done); ++i) {
    if (i == 100) s->close();  // a write to the gateway that does not finish within a second
    t.expires_after(std::chrono::milliseconds(10));
    co_await t.async_wait(use_tuple);
  }
}

asio::awaitable<void> accept_loop(tcp::acceptor* acc, connect_options o, ssl::context* tls) {
  for (;;) {
    auto [ec, sock] = co_await acc->async_accept(use_tuple);
    if (ec) co_return;
    beast::error_code ignored;
    sock.set_option(tcp::no_delay(true), ignored);
    net::keep_alive(sock);
    asio::co_spawn(acc->get_executor(), relay(std::move(sock), o, tls), asio::detached);
  }
}

// --gateway https://HOST[:PORT][/]: an https URL with a host (a name, an IPv4 address or a
// bracketed IPv6 one) and nothing else (no user, path, query or fragment). Boost.URL reads it.
void parse_gateway_url(const std::string& text, connect_options& o) {
  auto bad = [] { return cli::usage_error("--gateway must be https://HOST:PORT"); };
  auto u = urls::parse_absolute_uri(text);
  if (!u || u->scheme_id() != urls::scheme::https || u->has_userinfo() || u->has_query() || u->has_fragment() ||
      !(u->encoded_path().empty() || u->encoded_path() == "/") || u->encoded_host().empty())
    throw bad();
  if (u->has_port()) {
    auto port = u->port();  // digits only (RFC 3986); Boost.URL's port_number() wraps above 65535
    unsigned n = 0;
    auto [end, ec] = std::from_chars(port.data(), port.data() + port.size(), n);
    if (port.empty() || port.size() > 5 || ec != std::errc{} || end != port.data() + port.size() || n == 0 || n > 65535)
      throw bad();
  }
  o.host = std::string(u->host_address());  // an IPv6 address without its brackets
  o.port = u->has_port() ? std::string(u->port()) : "443";
  o.authority = std::string(u->encoded_host_and_port());
}

// The channel's coordinates from the flags; bad values are usage errors.
connect_options connect_flags(const po::variables_map& vm) {
  for (auto k : {"gateway", "token", "session", "scope", "access-type"})
    if (!vm.count(k)) throw cli::usage_error(fmt::format("--{} is required", k));
  connect_options o;
  parse_gateway_url(vm["gateway"].as<std::string>(), o);
  o.token = vm["token"].as<std::string>();
  if (o.token == "-") std::getline(std::cin, o.token);
  if (o.token.empty() || o.token.size() > 256) throw cli::usage_error("--token is empty or too long");
  o.session = vm["session"].as<std::string>();
  if (o.session.empty() || o.session.size() > 64 || o.session.find_first_of("/?#% ") != std::string::npos)
    throw cli::usage_error("--session must be a session id such as S-2026-11-27-ABCDEFGH");
  o.scope = vm["scope"].as<std::string>();
  if (!tunnel::is_scope_name(o.scope)) throw cli::usage_error("--scope must be a scope name such as hmc");
  o.access_type = vm["access-type"].as<std::string>();
  if (!tunnel::is_access_type(o.access_type)) throw cli::usage_error("invalid --access-type (see --help)");
  return o;
}

// Which gateway certificate to accept: one from --ca (and the name in --gateway), or, with
// --insecure, any (and the warning says so).
void trust_gateway(ssl::context& tls, const po::variables_map& vm, std::ostream& err) {
  SSL_CTX_set_min_proto_version(tls.native_handle(), TLS1_2_VERSION);
  if (vm.count("insecure")) {
    err << "rsgate connect: WARNING: --insecure: the gateway's certificate is not checked\n";
    tls.set_verify_mode(ssl::verify_none);
    return;
  }
  if (!vm.count("ca")) throw cli::usage_error("--ca FILE is required (or --insecure for development)");
  beast::error_code ec;
  std::string pem;
  try {
    pem = read_file(vm["ca"].as<std::string>(), 1 << 20);
  } catch (const std::exception& e) {
    throw cli::usage_error(e.what());
  }
  tls.add_certificate_authority(asio::buffer(pem), ec);
  if (ec) throw cli::usage_error("--ca: not a PEM certificate");
  tls.set_verify_mode(ssl::verify_peer);
}

int connect_cmd(const std::vector<std::string>& args, std::ostream& out, std::ostream& err) {
  po::options_description d("rsgate connect --gateway URL --token T --session ID --scope S --access-type A --listen ADDR:PORT");
  d.add_options()
      ("gateway", po::value<std::string>(), "the gateway, https://HOST:PORT")
      ("token", po::value<std::string>(), "bearer token (rsgate token create), or - to read it from stdin")
      ("session", po::value<std::string>(), "session id")
      ("scope", po::value<std::string>(), "scope offered by the customer, e.g. hmc")
      ("access-type", po::value<std::string>(), "ssh, sftp, ftp, telnet-5250, https, ops-navigator, vterm, file-transfer, other")
      ("listen", po::value<std::string>()->default_value("127.0.0.1:0"), "local listener, IP:PORT")
      ("ca", po::value<std::string>(), "CA certificate that signed the gateway's certificate (dev: DATA/ca.pem)")
      ("insecure", "do not check the gateway's certificate (development only)")
      ("help,h", "show this help");
  po::variables_map vm;
  po::store(po::command_line_parser(std::vector<std::string>(args.begin() + 1, args.end())).options(d).run(), vm);
  po::notify(vm);
  if (vm.count("help")) {
    out << d << "\n";
    return cli::kOk;
  }
  auto o = connect_flags(vm);
  auto listen = parse_listen(vm["listen"].as<std::string>());
  if (!listen) throw cli::usage_error("--listen must be IP:PORT, e.g. 127.0.0.1:2222");
  o.out = &out;
  o.err = &err;
  std::signal(SIGPIPE, SIG_IGN);  // TLS writes with write(2) (net::tls_stream)
  asio::io_context ioc(1);
  ssl::context tls(ssl::context::tls_client);
  trust_gateway(tls, vm, err);
  tcp::acceptor acc(ioc);
  beast::error_code ec;
  tcp::endpoint ep(asio::ip::make_address(listen->host), listen->port);
  acc.open(ep.protocol(), ec);
  if (!ec) acc.set_option(asio::socket_base::reuse_address(true), ec);
  if (!ec) acc.bind(ep, ec);
  if (!ec) acc.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) throw std::runtime_error("cannot listen on " + vm["listen"].as<std::string>() + ": " + ec.message());
  auto bound = acc.local_endpoint();
  out << fmt::format("rsgate connect: listening on {}:{} -> scope {} ({}) of session {}\n", bound.address().to_string(),
                     bound.port(), o.scope, o.access_type, o.session);
  out.flush();
  asio::signal_set signals(ioc, SIGINT, SIGTERM);
  signals.async_wait([&](beast::error_code, int) { ioc.stop(); });
  asio::co_spawn(ioc, accept_loop(&acc, o, &tls), asio::detached);
  ioc.run();
  return cli::kOk;
}

asio::awaitable<void> fetch(const connect_options& o, ssl::context& tls, std::string target, std::size_t max_body,
                            api_answer& a) {
  auto s = co_await dial(o, tls, a.error);
  if (!s) co_return;
  http::request<http::empty_body> req{http::verb::get, target, 11};
  req.set(http::field::host, o.authority);
  req.set(http::field::authorization, "Bearer " + o.token);
  s->expires_after(std::chrono::seconds(60));
  auto [wec, wn] = co_await http::async_write(*s, req, use_tuple);
  beast::flat_buffer buf;
  http::response_parser<http::string_body> parser;
  parser.body_limit(max_body);
  auto [rec, rn] = co_await http::async_read(*s, buf, parser, use_tuple);
  if (wec || rec) {
    a.error = "the gateway did not answer: " + (wec ? wec : rec).message();
    co_return;
  }
  auto& res = parser.get();
  a.status = res.result_int();
  a.body = std::move(res.body());
  for (auto& h : res) a.headers.emplace_back(std::string(h.name_string()), std::string(h.value()));
  co_await s->shutdown();
}

}  // namespace

std::string api_answer::header(std::string_view name) const {
  for (auto& [k, v] : headers)
    if (beast::iequals(k, name)) return v;
  return {};
}

api_answer api_get(const std::string& gateway_url, const std::string& token, const std::string& ca, bool insecure,
                   const std::string& target, std::size_t max_body) {
  connect_options o;
  parse_gateway_url(gateway_url, o);
  o.token = token;
  ssl::context tls(ssl::context::tls_client);
  SSL_CTX_set_min_proto_version(tls.native_handle(), TLS1_2_VERSION);
  if (insecure) {
    tls.set_verify_mode(ssl::verify_none);
  } else {
    std::string pem;
    try {
      pem = read_file(ca, 1 << 20);
    } catch (const std::exception& e) {
      throw cli::usage_error(e.what());
    }
    beast::error_code ec;
    tls.add_certificate_authority(asio::buffer(pem), ec);
    if (ec) throw cli::usage_error("--ca: not a PEM certificate");
    tls.set_verify_mode(ssl::verify_peer);
  }
  std::signal(SIGPIPE, SIG_IGN);
  asio::io_context ioc(1);
  api_answer a;
  asio::co_spawn(ioc, fetch(o, tls, target, max_body, a), asio::detached);
  ioc.run();
  return a;
}

int run_connect(const std::vector<std::string>& args, std::ostream& out, std::ostream& err) {
  return cli::guarded("connect", [&] { return connect_cmd(args, out, err); }, err);
}

}  // namespace rsgate::representative
