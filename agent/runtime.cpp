// See runtime.hpp. `rsgate-agent start` runs one io_context on one thread: the tunnel
// (agent/tunnel.cpp), its channels (agent/channels.cpp), the control socket and the signal
// handler here are coroutines and handlers on it, so the agent's state needs no locks. A
// stop, from SIGINT/SIGTERM/SIGHUP or the control socket, is request_stop(): STOP to the gateway
// and the cancellation of the tunnel's reads; the tunnel then drains and closes, and its end
// ends the agent. Also the client side of the control socket (`stop`, `status`, `key`).
#include <malloc.h>
#include <pwd.h>
#include <unistd.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/read_until.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/ssl/error.hpp>
#include <boost/asio/streambuf.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <charconv>
#include <csignal>
#include <filesystem>
#include <ostream>

#include "agent/control_path.hpp"
#include "agent/detail/agent_state.hpp"

namespace rsgate::agent {
namespace {

using namespace detail;
using error_code = boost::system::error_code;
namespace ssl = asio::ssl;
constexpr auto use_tuple = asio::as_tuple(asio::use_awaitable);

// Who is at the other end of a control connection: the account's name (the customer who
// approves or refuses a channel, journaled by the gateway), else "uid N".
std::string peer_account(local_socket& sock) {
  auto uid = peer_uid(sock.native_handle());
  if (!uid) return "unknown";
  std::vector<char> buf(4096);
  passwd pw{};
  passwd* found = nullptr;
  if (::getpwuid_r(*uid, &pw, buf.data(), buf.size(), &found) == 0 && found && found->pw_name)
    return printable(found->pw_name, tunnel::kMaxApproverBytes);
  return "uid " + std::to_string(*uid);
}

// "approve N" / "refuse N": N a channel number, whole decimal digits only.
std::optional<std::uint32_t> request_number(std::string_view text) {
  std::uint32_t n = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), n);
  if (ec != std::errc() || end != text.data() + text.size() || text.empty() || n == 0) return std::nullopt;
  return n;
}

// One request on the control socket, one line each way. `key` is answered when the gateway
// acknowledges the new key (answer_key_waiters in agent/tunnel.cpp).
asio::awaitable<void> control_client(agent_state& st, std::shared_ptr<local_socket> sock) {
  asio::streambuf buf(256);
  auto [ec, n] = co_await asio::async_read_until(*sock, buf, '\n', use_tuple);
  if (ec) co_return;
  std::string cmd(asio::buffers_begin(buf.data()), asio::buffers_begin(buf.data()) + static_cast<long>(n) - 1);
  std::string reply;
  if (cmd == "stop") {
    reply = "stopping\n";
  } else if (cmd == "status") {
    reply = status_json(st.view, st.opt.prof.machine(), channel_views(st)) + "\n";
  } else if (cmd.starts_with("approve ") || cmd.starts_with("refuse ")) {
    const bool approve = cmd.starts_with("approve ");
    auto number = request_number(std::string_view(cmd).substr(approve ? 8 : 7));
    reply = number ? decide_channel(st, *number, approve, peer_account(*sock)) : "error: expected a request number\n";
  } else if (cmd == "key") {
    if (!st.gate.authenticated() || st.done || st.conn_over) {
      reply = "error: not connected\n";
    } else {
      offer_key(st);  // or wait for the offer already on its way
      st.key_waiters.push_back(sock);
      co_return;  // answered when the gateway acknowledges the key
    }
  } else {
    reply = "error: unknown command\n";
  }
  co_await asio::async_write(*sock, asio::buffer(reply), use_tuple);
  // The answer first: the tunnel's end ends the agent, and with it this socket.
  if (cmd == "stop") request_stop(st);
}

asio::awaitable<void> control_server(agent_state& st, asio::local::stream_protocol::acceptor& acc) {
  for (;;) {
    auto sock = std::make_shared<local_socket>(acc.get_executor());
    auto [ec] = co_await acc.async_accept(*sock, use_tuple);
    if (ec) co_return;
    asio::co_spawn(acc.get_executor(), control_client(st, sock), report_exception{&st, "a control request"});
  }
}

// Binds and listens on `path` with umask 077; false with the reason on `err`.
bool bind_control_socket(const std::string& path, asio::local::stream_protocol::acceptor& acc, std::ostream& err) {
  std::error_code rec;
  std::filesystem::remove(path, rec);
  error_code ec;
  auto old = ::umask(0077);
  acc.open(asio::local::stream_protocol(), ec);
  if (!ec) acc.bind(asio::local::stream_protocol::endpoint(path), ec);
  ::umask(old);
  if (!ec) acc.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) {
    err << "rsgate-agent: cannot create the control socket " << path << ": " << ec.message() << "\n";
    return false;
  }
  return true;
}

// The control socket: in a directory no other account can write to, private to this account
// (0600 inside the umask). A live agent already answering there keeps it; a stale socket of
// this account's is replaced; anything else there is left alone and refused. 0 or the exit code.
int open_control_socket(asio::io_context& ioc, const std::string& path, asio::local::stream_protocol::acceptor& acc,
                        std::ostream& err) {
  auto why = check_control_dir(path, true);
  if (why.empty()) why = check_control_socket(path, false);
  if (!why.empty()) {
    err << "rsgate-agent: cannot use the control socket: " << why << "\n";
    return 1;
  }
  local_socket probe(ioc);
  error_code pec;
  probe.connect(asio::local::stream_protocol::endpoint(path), pec);
  if (!pec) {
    err << "rsgate-agent: another agent is running (" << path << "); use --control for a second one\n";
    return 1;
  }
  return bind_control_socket(path, acc, err) ? 0 : 1;
}

// TLS 1.3 client, verifying the gateway against the profile's pinned CA, offering ALPN
// rsgate/1. False (the reason on `err`) when the CA cannot be loaded.
bool configure_tls(ssl::context& tls, const profile& prof, std::ostream& err) {
  SSL_CTX_set_min_proto_version(tls.native_handle(), TLS1_3_VERSION);
  tls.set_verify_mode(ssl::verify_peer);
  error_code ec;
  tls.add_certificate_authority(asio::buffer(prof.ca_pem), ec);
  if (ec) {
    err << "rsgate-agent: the profile's pinned CA cannot be loaded: " << ec.message() << "\n";
    return false;
  }
  static const unsigned char alpn[] = {8, 'r', 's', 'g', 'a', 't', 'e', '/', '1'};
  SSL_CTX_set_alpn_protos(tls.native_handle(), alpn, sizeof alpn);
  return true;
}

}  // namespace

int run_agent(const start_options& o, std::ostream& out, std::ostream& err) {
  // The tunnel's TLS writes to the socket with write(2) (net::tls_stream): a gateway that
  // went away must be an error there, not a signal that kills the agent.
  std::signal(SIGPIPE, SIG_IGN);
  // The data path allocates and frees 32 KiB payloads at a high rate. glibc returns the
  // heap's free top to the kernel beyond 128 KiB, and the next payloads fault the same memory
  // in again: a page fault per 4 KiB relayed (30,000 per second in a profile). What the agent
  // holds for its channels is bounded by their windows (a tunnel's growth budget, 16 MiB,
  // plus each channel's initial window); up to 32 MiB of freed heap stay mapped instead.
  mallopt(M_TRIM_THRESHOLD, 32 << 20);
  asio::io_context ioc(1);
  ssl::context tls(ssl::context::tls_client);
  if (!configure_tls(tls, o.prof, err)) return 2;
  agent_state st(o, out, err, ioc);
  asio::local::stream_protocol::acceptor acc(ioc);
  if (int rc = open_control_socket(ioc, o.control_path, acc, err); rc != 0) return rc;
  asio::co_spawn(ioc, control_server(st, acc), report_exception{&st, "the control socket"});
  // SIGHUP: the customer closed the agent's terminal. The window is the control (SPEC §2.8),
  // so that ends the remote support at once, as Ctrl-C does, never a dropped tunnel that
  // the gateway would keep for its reconnect grace. An agent started with SIGHUP ignored
  // (`nohup`) was meant to outlive its terminal: it keeps ignoring it.
  asio::signal_set signals(ioc, SIGINT, SIGTERM);
  struct sigaction hup {};
  if (::sigaction(SIGHUP, nullptr, &hup) == 0 && hup.sa_handler != SIG_IGN) signals.add(SIGHUP);
  signals.async_wait([&st](error_code sec, int signo) {
    if (sec) return;
    line(st, signo == SIGHUP ? "Stopping remote support (the customer's terminal closed)"
                             : "Stopping remote support (customer request)");
    request_stop(st);
  });
  // The tunnel's end ends everything else: the signal wait, the control socket, the loop.
  asio::co_spawn(ioc, run_tunnel(st, tls), [&](std::exception_ptr e) {
    report_exception{&st, "the tunnel"}(e);
    signals.cancel();
    error_code ignored;
    acc.close(ignored);
    ioc.stop();
  });
  try {
    ioc.run();
  } catch (const std::exception& e) {  // a completion handler threw: a defect, never exit 0
    err << "rsgate-agent: internal error: " << printable(e.what(), 512) << "\n";
    st.exit_code = 1;
  }
  if (check_control_socket(o.control_path, true).empty()) {
    std::error_code rec;
    std::filesystem::remove(o.control_path, rec);
  }
  return st.exit_code;
}

int control_command(const std::string& control_path, const std::string& command, std::ostream& out,
                    std::ostream& err) {
  // Only a socket of this account, in a directory no one else can write to, served by a
  // process of this account: a `key` answer is shown to the customer as the session key.
  auto why = check_control_dir(control_path, false);
  if (why.empty()) why = check_control_socket(control_path, true);
  if (!why.empty()) {
    err << "rsgate-agent: " << why << "\n";
    return 1;
  }
  asio::io_context ioc;
  local_socket sock(ioc);
  error_code ec;
  sock.connect(asio::local::stream_protocol::endpoint(control_path), ec);
  if (ec) {
    err << "rsgate-agent: no running agent at " << control_path << " (" << ec.message() << ")\n";
    return 1;
  }
  if (auto uid = peer_uid(sock.native_handle()); !uid || *uid != ::getuid()) {
    err << "rsgate-agent: the process at " << control_path << " runs under another account; not talking to it\n";
    return 1;
  }
  std::string req = command + "\n";
  asio::write(sock, asio::buffer(req), ec);
  asio::streambuf buf(64 * 1024);
  auto n = asio::read_until(sock, buf, '\n', ec);
  if (ec && n == 0) {
    err << "rsgate-agent: the agent did not answer\n";
    return 1;
  }
  std::string reply(asio::buffers_begin(buf.data()), asio::buffers_begin(buf.data()) + static_cast<long>(n));
  if (reply.starts_with("error:")) {
    err << "rsgate-agent: " << reply.substr(7);
    return 1;
  }
  out << reply;
  return 0;
}

}  // namespace rsgate::agent
