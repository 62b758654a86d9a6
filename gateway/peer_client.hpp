// The gateway's HTTPS client for the other gateway of a pair (docs/operations.md §10): asks
// `GET /api/v1/machines/{m}/where` with the pair's shared secret, the peer's certificate
// checked against the configured CA and the URL's host. One request per lookup, answered
// within `timeout_ms` whatever the peer (or the name service) does, and bounded in number (at
// most kMaxPeerLookups at once; more are answered "too many lookups in flight" at once). Part of the network runtime; the service sees only the
// callback it returns.
#pragma once
#include <filesystem>
#include <string>

#include "gateway/service.hpp"

namespace boost::asio {
class io_context;
}

namespace rsgate::gateway {

inline constexpr int kMaxPeerLookups = 16;

// Throws std::runtime_error when the CA cannot be loaded.
[[nodiscard]] service::peer_lookup make_peer_lookup(boost::asio::io_context& ioc, const std::string& url,
                                                    const std::filesystem::path& ca_file, const std::string& secret,
                                                    int timeout_ms);

// The pair's secret from `file`: mode 0600 (not readable by group or others), 32 to 256
// printable characters (a trailing newline is dropped). Throws std::runtime_error saying why.
[[nodiscard]] std::string load_peer_secret(const std::filesystem::path& file);

}  // namespace rsgate::gateway
