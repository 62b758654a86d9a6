// See entry.hpp. The encoding is deliberately simple (big-endian integers, u32 length prefixes)
// so that an auditor can re-implement it in any language from docs/journal.md.
#include "journal/entry.hpp"

#include <sodium.h>

#include <boost/json/parse.hpp>
#include <stdexcept>

namespace rsgate::journal {
namespace {

void put_u32(bytes& out, std::uint32_t v) {
  for (int i = 3; i >= 0; --i) out.push_back(static_cast<std::uint8_t>(v >> (8 * i)));
}
void put_u64(bytes& out, std::uint64_t v) {
  for (int i = 7; i >= 0; --i) out.push_back(static_cast<std::uint8_t>(v >> (8 * i)));
}
void put_str(bytes& out, std::string_view s) {
  put_u32(out, static_cast<std::uint32_t>(s.size()));
  out.insert(out.end(), s.begin(), s.end());
}
void put_hash(bytes& out, std::string_view hex) {
  auto raw = from_hex(hex);
  if (!raw || raw->size() != 32) throw std::invalid_argument("hash is not 64 hex digits");
  out.insert(out.end(), raw->begin(), raw->end());
}

bool printable_field(std::string_view s) {
  for (unsigned char c : s)
    if (c < 0x20 || c == 0x7f) return false;
  return true;
}

}  // namespace

std::string_view to_string(outcome o) {
  switch (o) {
    case outcome::ok: return "ok";
    case outcome::denied: return "denied";
    case outcome::error: return "error";
  }
  return "error";
}

std::optional<outcome> parse_outcome(std::string_view s) {
  if (s == "ok") return outcome::ok;
  if (s == "denied") return outcome::denied;
  if (s == "error") return outcome::error;
  return std::nullopt;
}

bytes canonical_encoding(const entry& e) {
  bytes out;
  out.reserve(256 + e.detail.size());
  out.insert(out.end(), kEncodingTag.begin(), kEncodingTag.end());
  out.push_back(0);
  put_u64(out, static_cast<std::uint64_t>(e.seq));
  put_u64(out, static_cast<std::uint64_t>(e.ts));
  for (std::string_view f : {std::string_view(e.gateway), std::string_view(e.kind),
                             std::string_view(e.actor), std::string_view(e.source),
                             std::string_view(e.session_id), std::string_view(e.pmr),
                             std::string_view(e.machine), std::string_view(e.access_type),
                             std::string_view(e.scope), to_string(e.result),
                             std::string_view(e.secret_hmac), std::string_view(e.detail)})
    put_str(out, f);
  put_hash(out, e.prev_hash);
  // Fields added after v1, in the order they were added, cut after the last non-empty one:
  // entries written before a field existed (where it reads as '') keep their hash. The
  // lengths keep the encoding unambiguous: after prev_hash either nothing follows or a
  // length-prefixed non-empty last field does.
  if (!e.subject.empty()) put_str(out, e.subject);
  return out;
}

std::string compute_hash(const entry& e) {
  auto enc = canonical_encoding(e);
  digest d{};
  crypto_hash_sha256(d.data(), enc.data(), enc.size());
  return to_hex(d);
}

std::string validate_for_append(const entry& e) {
  if (e.kind.empty()) return "kind is empty";
  for (std::string_view f : {std::string_view(e.kind), std::string_view(e.actor),
                             std::string_view(e.source), std::string_view(e.session_id),
                             std::string_view(e.pmr), std::string_view(e.machine),
                             std::string_view(e.access_type), std::string_view(e.scope),
                             std::string_view(e.secret_hmac), std::string_view(e.subject)}) {
    if (f.size() > kMaxFieldBytes) return "a field is longer than 256 bytes";
    if (!printable_field(f)) return "a field holds a control character";
  }
  if (e.detail.size() > kMaxDetailBytes) return "detail is longer than 16 KiB";
  boost::system::error_code ec;
  auto v = boost::json::parse(e.detail, ec);
  if (ec || !v.is_object()) return "detail is not a JSON object";
  return {};
}

bool is_valid_gateway_name(std::string_view name) {
  if (name.empty() || name.size() > 64) return false;
  for (unsigned char ch : name) {
    bool ok = (ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') ||
              ch == '.' || ch == '_' || ch == '-';
    if (!ok) return false;
  }
  return true;
}

std::string escape_for_journal(std::string_view s, std::size_t max_bytes) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  for (unsigned char c : s) {
    bool plain = c >= 0x20 && c < 0x7f && c != '\\';
    std::size_t need = plain ? 1 : 4;
    if (out.size() + need > max_bytes) break;
    if (plain) {
      out.push_back(static_cast<char>(c));
    } else {
      out += "\\x";
      out.push_back(kHex[c >> 4]);
      out.push_back(kHex[c & 15]);
    }
  }
  return out;
}

bytes signed_statement(statement which, std::string_view gateway, std::int64_t seq,
                       std::string_view hash_hex) {
  std::string_view tag =
      which == statement::checkpoint ? "rsgate-journal-checkpoint-v1" : "rsgate-journal-head-v1";
  bytes out(tag.begin(), tag.end());
  out.push_back(0);
  put_str(out, gateway);
  put_u64(out, static_cast<std::uint64_t>(seq));
  put_hash(out, hash_hex);
  return out;
}

}  // namespace rsgate::journal
