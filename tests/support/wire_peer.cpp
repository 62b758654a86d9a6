// See wire_peer.hpp. The socket is non-blocking; every OpenSSL call that wants I/O waits in
// poll(2) up to the caller's deadline, so a test never hangs on a silent peer.
#include "tests/support/wire_peer.hpp"
#include "tests/support/loopback.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <stdexcept>

namespace rsgate::test {
namespace {

using clock_type = std::chrono::steady_clock;

int ms_left(clock_type::time_point deadline) {
  auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - clock_type::now()).count();
  return left < 0 ? 0 : static_cast<int>(left);
}

// Waits for what OpenSSL asked for; false on timeout.
bool wait_io(int fd, int ssl_error, clock_type::time_point deadline) {
  pollfd p{fd, static_cast<short>(ssl_error == SSL_ERROR_WANT_WRITE ? POLLOUT : POLLIN), 0};
  for (;;) {
    int r = ::poll(&p, 1, ms_left(deadline));
    if (r > 0) return true;
    if (r == 0) return false;
    if (errno != EINTR) return false;
  }
}

void set_nonblocking(int fd) {
  int fl = ::fcntl(fd, F_GETFL);
  ::fcntl(fd, F_SETFL, fl | O_NONBLOCK);
  int one = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

std::string alpn_wire(const std::string& alpn) {
  if (alpn.empty()) return {};
  return std::string(1, static_cast<char>(alpn.size())) + alpn;
}

// Drives SSL_connect / SSL_accept to completion within the deadline.
template <typename F>
bool handshake(int fd, SSL* ssl, F step, clock_type::time_point deadline) {
  for (;;) {
    int r = step(ssl);
    if (r == 1) return true;
    int e = SSL_get_error(ssl, r);
    if ((e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE) || !wait_io(fd, e, deadline)) return false;
  }
}

}  // namespace

std::unique_ptr<wire_peer> wire_peer::connect(const std::string& host_port, const client_options& o) {
  auto colon = host_port.rfind(':');
  if (colon == std::string::npos) throw std::runtime_error("wire_peer: address without a port: " + host_port);
  std::string host = host_port.substr(0, colon), port = host_port.substr(colon + 1);
  if (host.size() > 2 && host.front() == '[') host = host.substr(1, host.size() - 2);
  addrinfo hints{};
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_NUMERICHOST | AI_NUMERICSERV;
  addrinfo* res = nullptr;
  if (::getaddrinfo(host.c_str(), port.c_str(), &hints, &res) != 0 || !res)
    throw std::runtime_error("wire_peer: bad address " + host_port);
  int fd = ::socket(res->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd >= 0 && !o.bind_address.empty()) {
    addrinfo* local = nullptr;
    if (::getaddrinfo(o.bind_address.c_str(), "0", &hints, &local) != 0 || !local ||
        ::bind(fd, local->ai_addr, local->ai_addrlen) != 0) {
      if (local) ::freeaddrinfo(local);
      ::freeaddrinfo(res);
      ::close(fd);
      throw std::runtime_error("wire_peer: cannot bind to " + o.bind_address);
    }
    ::freeaddrinfo(local);
  }
  int rc = fd < 0 ? -1 : ::connect(fd, res->ai_addr, res->ai_addrlen);
  ::freeaddrinfo(res);
  if (rc != 0) {
    if (fd >= 0) ::close(fd);
    throw std::runtime_error("wire_peer: cannot connect to " + host_port);
  }
  set_nonblocking(fd);
  SSL_CTX* ctx = SSL_CTX_new(TLS_client_method());
  SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION);
  if (!o.ca_file.empty()) {
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, nullptr);
    if (SSL_CTX_load_verify_locations(ctx, o.ca_file.c_str(), nullptr) != 1) {
      SSL_CTX_free(ctx);
      ::close(fd);
      throw std::runtime_error("wire_peer: cannot load CA " + o.ca_file);
    }
  }
  auto wire = alpn_wire(o.alpn);
  if (!wire.empty())
    SSL_CTX_set_alpn_protos(ctx, reinterpret_cast<const unsigned char*>(wire.data()), static_cast<unsigned>(wire.size()));
  SSL* ssl = SSL_new(ctx);
  SSL_set_fd(ssl, fd);
  if (!o.server_name.empty()) {
    SSL_set_tlsext_host_name(ssl, o.server_name.c_str());
    if (!o.ca_file.empty()) SSL_set1_host(ssl, o.server_name.c_str());
  }
  auto peer = std::make_unique<wire_peer>(fd, ssl, ctx);
  if (!handshake(fd, ssl, SSL_connect, clock_type::now() + o.timeout))
    throw std::runtime_error("wire_peer: TLS handshake with " + host_port + " failed");
  return peer;
}

wire_peer::wire_peer(int fd, SSL* ssl, SSL_CTX* owned_ctx) : fd_(fd), ssl_(ssl), owned_ctx_(owned_ctx) {}

wire_peer::~wire_peer() {
  if (ssl_) SSL_free(ssl_);
  if (owned_ctx_) SSL_CTX_free(owned_ctx_);
  if (fd_ >= 0) ::close(fd_);
}

bool wire_peer::send_raw(std::span<const std::uint8_t> bytes) {
  if (!ssl_ || closed_) return false;
  auto deadline = clock_type::now() + std::chrono::seconds(30);
  std::size_t off = 0;
  while (off < bytes.size()) {
    int r = SSL_write(ssl_, bytes.data() + off, static_cast<int>(bytes.size() - off));
    if (r > 0) {
      off += static_cast<std::size_t>(r);
      continue;
    }
    int e = SSL_get_error(ssl_, r);
    if ((e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE) || !wait_io(fd_, e, deadline)) {
      closed_ = true;
      return false;
    }
  }
  return true;
}

bool wire_peer::send(tunnel::frame_type t, std::span<const std::uint8_t> payload, std::uint32_t channel) {
  auto f = tunnel::encode(t, channel, payload);
  return send_raw(f);
}

bool wire_peer::send_json(tunnel::frame_type t, const std::string& json, std::uint32_t channel) {
  return send(t, std::span<const std::uint8_t>(reinterpret_cast<const std::uint8_t*>(json.data()), json.size()), channel);
}

std::optional<tunnel::frame> wire_peer::recv(std::chrono::milliseconds timeout) {
  timed_out_ = false;
  auto deadline = clock_type::now() + timeout;
  std::uint8_t buf[16 * 1024];
  for (;;) {
    if (auto f = dec_.next()) return f;
    if (dec_.error() != tunnel::decode_error::none) return std::nullopt;
    if (!pending_.empty()) {
      auto used = dec_.feed(pending_);
      pending_.erase(pending_.begin(), pending_.begin() + static_cast<long>(used));
      continue;
    }
    if (closed_ || !ssl_) return std::nullopt;
    int r = SSL_read(ssl_, buf, sizeof buf);
    if (r > 0) {
      pending_.assign(buf, buf + r);
      continue;
    }
    int e = SSL_get_error(ssl_, r);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
      if (!wait_io(fd_, e, deadline)) {
        timed_out_ = true;
        return std::nullopt;
      }
      continue;
    }
    ERR_clear_error();
    closed_ = true;
    return std::nullopt;
  }
}

std::optional<tunnel::frame> wire_peer::recv_until(tunnel::frame_type t, std::chrono::milliseconds timeout) {
  auto deadline = clock_type::now() + timeout;
  for (;;) {
    auto f = recv(std::chrono::milliseconds(ms_left(deadline)));
    if (!f) return std::nullopt;
    if (f->header.type == t) return f;
  }
}

std::vector<std::uint8_t> wire_peer::exporter() const {
  std::vector<std::uint8_t> out(tunnel::kExporterBytes);
  if (SSL_export_keying_material(ssl_, out.data(), out.size(), tunnel::kExporterLabel.data(),
                                 tunnel::kExporterLabel.size(), nullptr, 0, 0) != 1)
    throw std::runtime_error("wire_peer: no TLS exporter");
  return out;
}

std::string wire_peer::alpn() const {
  const unsigned char* p = nullptr;
  unsigned n = 0;
  SSL_get0_alpn_selected(ssl_, &p, &n);
  return std::string(reinterpret_cast<const char*>(p), n);
}

std::string wire_peer::local_address() const {
  sockaddr_storage a{};
  socklen_t len = sizeof a;
  if (::getsockname(fd_, reinterpret_cast<sockaddr*>(&a), &len) != 0) return {};
  char host[NI_MAXHOST], port[NI_MAXSERV];
  if (::getnameinfo(reinterpret_cast<sockaddr*>(&a), len, host, sizeof host, port, sizeof port,
                    NI_NUMERICHOST | NI_NUMERICSERV) != 0)
    return {};
  return std::string(host) + ":" + port;
}

void wire_peer::drop() {
  if (fd_ >= 0) {
    linger l{1, 0};  // RST, like a crashed peer
    ::setsockopt(fd_, SOL_SOCKET, SO_LINGER, &l, sizeof l);
    ::close(fd_);
    fd_ = -1;
  }
  closed_ = true;
}

wire_listener::wire_listener(const std::string& cert_file, const std::string& key_file, std::string alpn)
    : alpn_wire_(alpn_wire(alpn)) {
  ctx_ = SSL_CTX_new(TLS_server_method());
  SSL_CTX_set_min_proto_version(ctx_, TLS1_3_VERSION);
  if (SSL_CTX_use_certificate_chain_file(ctx_, cert_file.c_str()) != 1 ||
      SSL_CTX_use_PrivateKey_file(ctx_, key_file.c_str(), SSL_FILETYPE_PEM) != 1) {
    SSL_CTX_free(ctx_);
    throw std::runtime_error("wire_listener: cannot load " + cert_file + " / " + key_file);
  }
  SSL_CTX_set_alpn_select_cb(
      ctx_,
      [](SSL*, const unsigned char** out, unsigned char* outlen, const unsigned char* in, unsigned int inlen,
         void* arg) -> int {
        auto* want = static_cast<std::string*>(arg);
        if (want->empty()) return SSL_TLSEXT_ERR_NOACK;
        unsigned char* sel = nullptr;
        if (SSL_select_next_proto(&sel, outlen, reinterpret_cast<const unsigned char*>(want->data()),
                                  static_cast<unsigned>(want->size()), in, inlen) != OPENSSL_NPN_NEGOTIATED)
          return SSL_TLSEXT_ERR_NOACK;
        *out = sel;
        return SSL_TLSEXT_ERR_OK;
      },
      &alpn_wire_);
  fd_ = listen_loopback(port_, "wire_listener");
}

wire_listener::~wire_listener() {
  if (fd_ >= 0) ::close(fd_);
  if (ctx_) SSL_CTX_free(ctx_);
}

std::unique_ptr<wire_peer> wire_listener::accept(std::chrono::milliseconds timeout) {
  auto deadline = clock_type::now() + timeout;
  pollfd p{fd_, POLLIN, 0};
  if (::poll(&p, 1, ms_left(deadline)) <= 0) return nullptr;
  int fd = ::accept4(fd_, nullptr, nullptr, SOCK_CLOEXEC);
  if (fd < 0) return nullptr;
  set_nonblocking(fd);
  SSL* ssl = SSL_new(ctx_);
  SSL_set_fd(ssl, fd);
  auto peer = std::make_unique<wire_peer>(fd, ssl, nullptr);
  if (!handshake(fd, ssl, SSL_accept, deadline)) return nullptr;
  return peer;
}

}  // namespace rsgate::test
