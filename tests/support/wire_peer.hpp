// Test support: one end of an `rsgate/1` tunnel spoken by a test, frame by frame, over real TLS
// on loopback — a scripted agent against the real gateway, or a scripted (hostile) gateway
// against the real `rsgate-agent`. Blocking OpenSSL on a plain socket with deadlines, no Asio:
// a test drives it step by step from its own thread. Not thread-safe; one owner.
#pragma once
#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "protocol/wire.hpp"

using SSL = struct ssl_st;
using SSL_CTX = struct ssl_ctx_st;

namespace rsgate::test {

class wire_peer {
 public:
  struct client_options {
    std::string alpn = "rsgate/1";  // "" offers none
    std::string ca_file;            // "" skips certificate verification
    std::string server_name;        // SNI and the name checked when ca_file is set
    std::chrono::milliseconds timeout{10'000};
    std::string bind_address = "";  // local address to connect from ("" lets the kernel pick),
                                    // e.g. 127.0.0.2: another source on loopback
  };
  // Connects to "host:port" (IPv4 or [IPv6]) and completes the TLS 1.3 handshake. Throws
  // std::runtime_error when it cannot.
  static std::unique_ptr<wire_peer> connect(const std::string& host_port, const client_options& o);

  wire_peer(int fd, SSL* ssl, SSL_CTX* owned_ctx);
  ~wire_peer();
  wire_peer(const wire_peer&) = delete;
  wire_peer& operator=(const wire_peer&) = delete;

  // Writes one frame (blocking). False when the connection failed.
  bool send(tunnel::frame_type t, std::span<const std::uint8_t> payload, std::uint32_t channel = 0);
  bool send_json(tunnel::frame_type t, const std::string& json, std::uint32_t channel = 0);
  // Raw bytes, for malformed frames.
  bool send_raw(std::span<const std::uint8_t> bytes);
  // The next frame, or nullopt at EOF, on a decoding error (see decode_error()) or after
  // `timeout` (timed_out() then says so).
  std::optional<tunnel::frame> recv(std::chrono::milliseconds timeout);
  // Receives until a frame of type `t` arrives (others are dropped), or nullopt.
  std::optional<tunnel::frame> recv_until(tunnel::frame_type t, std::chrono::milliseconds timeout);
  [[nodiscard]] bool timed_out() const { return timed_out_; }
  [[nodiscard]] tunnel::decode_error decode_error() const { return dec_.error(); }
  // True once the peer closed (EOF or reset).
  [[nodiscard]] bool closed() const { return closed_; }

  // The RFC 9266 tls-exporter value (SCRAM channel binding) of this connection.
  [[nodiscard]] std::vector<std::uint8_t> exporter() const;
  // The ALPN protocol selected ("" for none).
  [[nodiscard]] std::string alpn() const;
  // Closes the TCP connection at once (no TLS close_notify): an abrupt drop.
  void drop();
  [[nodiscard]] int fd() const { return fd_; }
  // "ip:port" of this end, as the peer sees it.
  [[nodiscard]] std::string local_address() const;

 private:
  int fd_ = -1;
  SSL* ssl_ = nullptr;
  SSL_CTX* owned_ctx_ = nullptr;
  tunnel::decoder dec_;
  std::vector<std::uint8_t> pending_;  // read from TLS, not yet fed to the decoder
  bool timed_out_ = false;
  bool closed_ = false;
};

// A TLS listener on 127.0.0.1, port 0, that hands out wire_peers: the server side of a scripted
// gateway. `alpn` is what it selects when the client offers it ("" selects none).
class wire_listener {
 public:
  wire_listener(const std::string& cert_file, const std::string& key_file, std::string alpn = "rsgate/1");
  ~wire_listener();
  wire_listener(const wire_listener&) = delete;
  wire_listener& operator=(const wire_listener&) = delete;

  [[nodiscard]] std::uint16_t port() const { return port_; }
  // Accepts one connection and completes the TLS handshake, or nullopt after `timeout`.
  std::unique_ptr<wire_peer> accept(std::chrono::milliseconds timeout);

 private:
  int fd_ = -1;
  std::uint16_t port_ = 0;
  SSL_CTX* ctx_ = nullptr;
  std::string alpn_wire_;  // length-prefixed, as ALPN wants it
};

}  // namespace rsgate::test
