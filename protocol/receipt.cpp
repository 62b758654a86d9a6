// See receipt.hpp. Boost.JSON reads the file and the body; every value is checked for type and
// size before use, since a receipt file is input like any other.
#include "protocol/receipt.hpp"

#include <fmt/format.h>
#include <sodium.h>

#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <boost/json/value.hpp>

#include "core/encoding.hpp"

namespace json = boost::json;

namespace rsgate::tunnel {
namespace {

constexpr std::size_t kMaxBodyString = 1024;

bool is_hex(std::string_view s, std::size_t n, bool lower_only) {
  if (s.size() != n) return false;
  for (char c : s)
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (!lower_only && c >= 'A' && c <= 'F'))) return false;
  return true;
}

bool printable(std::string_view s) {
  for (unsigned char c : s)
    if (c < 0x20 || c > 0x7e) return false;
  return true;
}

struct bad {
  std::string why;
};

std::optional<json::object> parse_object(std::string_view text, int depth) {
  json::parse_options opt;
  opt.max_depth = depth;
  boost::system::error_code ec;
  auto v = json::parse(text, ec, {}, opt);
  if (ec || !v.is_object()) return std::nullopt;
  return std::move(v.as_object());
}

std::string text(const json::object& o, std::string_view key, std::size_t max = kMaxBodyString) {
  auto* v = o.if_contains(key);
  if (!v) throw bad{fmt::format("{} is missing", key)};
  if (!v->is_string()) throw bad{fmt::format("{} must be a string", key)};
  std::string_view s = v->as_string();
  if (s.size() > max) throw bad{fmt::format("{} is longer than {} bytes", key, max)};
  if (!printable(s)) throw bad{fmt::format("{} holds a non-printable character", key)};
  return std::string(s);
}

std::int64_t number(const json::object& o, std::string_view key, std::int64_t min) {
  auto* v = o.if_contains(key);
  if (!v) throw bad{fmt::format("{} is missing", key)};
  if (!v->is_int64() || v->as_int64() < min) throw bad{fmt::format("{} must be an integer of at least {}", key, min)};
  return v->as_int64();
}

const json::array& list(const json::object& o, std::string_view key) {
  auto* v = o.if_contains(key);
  if (!v || !v->is_array()) throw bad{fmt::format("{} must be an array", key)};
  return v->as_array();
}

const json::object& object(const json::object& o, std::string_view key) {
  auto* v = o.if_contains(key);
  if (!v || !v->is_object()) throw bad{fmt::format("{} must be an object", key)};
  return v->as_object();
}

}  // namespace

std::string signed_message(std::string_view body) {
  std::string m(kReceiptSignedPrefix);
  m += body;
  return m;
}

std::string receipt_key_id(const receipt_key& k) {
  std::array<std::uint8_t, crypto_hash_sha256_BYTES> d{};
  crypto_hash_sha256(d.data(), k.data(), k.size());
  return to_hex(std::span(d).first(8));
}

std::optional<receipt_key> parse_receipt_key(std::string_view hex) {
  if (!is_hex(hex, 64, false)) return std::nullopt;
  auto raw = from_hex(hex);
  if (!raw || raw->size() != 32) return std::nullopt;
  receipt_key k{};
  std::copy(raw->begin(), raw->end(), k.begin());
  return k;
}

bool verify_receipt(const signed_receipt& r, const receipt_key& k) {
  if (!is_hex(r.signature, 128, false)) return false;
  auto sig = from_hex(r.signature);
  if (!sig || sig->size() != crypto_sign_BYTES) return false;
  auto m = signed_message(r.receipt);
  return crypto_sign_verify_detached(sig->data(), reinterpret_cast<const unsigned char*>(m.data()), m.size(),
                                     k.data()) == 0;
}

std::optional<signed_receipt> parse_receipt_file(std::string_view in, std::string& why) {
  if (in.empty() || in.size() > kMaxReceiptFileBytes) {
    why = fmt::format("not a receipt: empty or larger than {} bytes", kMaxReceiptFileBytes);
    return std::nullopt;
  }
  auto o = parse_object(in, 4);
  if (!o) {
    why = "not a receipt: not a JSON object";
    return std::nullopt;
  }
  try {
    for (auto& kv : *o)
      if (kv.key() != "receipt" && kv.key() != "signature" && kv.key() != "key_id" && kv.key() != "profile")
        throw bad{fmt::format("unknown key '{}'", std::string_view(kv.key()).substr(0, 32))};
    signed_receipt r;
    r.receipt = text(*o, "receipt", kMaxReceiptFileBytes);
    r.signature = text(*o, "signature", 128);
    r.key_id = text(*o, "key_id", 16);
    if (o->contains("profile")) r.profile = text(*o, "profile", 4096);
    if (!is_hex(r.signature, 128, false)) throw bad{"signature must be 128 hex digits"};
    if (!is_hex(r.key_id, 16, false)) throw bad{"key_id must be 16 hex digits"};
    why.clear();
    return r;
  } catch (const bad& b) {
    why = "not a receipt: " + b.why;
    return std::nullopt;
  }
}

std::string format_receipt_file(const signed_receipt& r) {
  json::object o{{"receipt", r.receipt}, {"signature", r.signature}, {"key_id", r.key_id}};
  if (!r.profile.empty()) o["profile"] = r.profile;
  return json::serialize(o) + "\n";
}

std::optional<receipt_body> parse_receipt_body(std::string_view body, std::string& why) {
  auto o = parse_object(body, 8);
  if (!o) {
    why = "the receipt's body is not a JSON object";
    return std::nullopt;
  }
  try {
    if (text(*o, "format") != kReceiptFormat) throw bad{fmt::format("format is not {}", kReceiptFormat)};
    receipt_body b;
    b.gateway = text(*o, "gateway", 64);
    b.session = text(*o, "session", 64);
    b.machine = text(*o, "machine", 64);
    b.issued_at = text(*o, "issued_at", 64);
    b.started_at = text(*o, "started_at", 64);
    b.ended_at = text(*o, "ended_at", 64);
    b.ended_by = text(*o, "ended_by", 256);
    b.end_reason = text(*o, "end_reason");
    if (b.gateway.empty() || b.session.empty() || b.machine.empty()) throw bad{"gateway, session and machine must be named"};
    for (auto& v : list(*o, "pmrs")) {
      if (!v.is_string() || v.as_string().size() > 64 || !printable(v.as_string())) throw bad{"pmrs must be PMR strings"};
      b.pmrs.emplace_back(v.as_string());
    }
    for (auto& v : list(*o, "owners")) {
      if (!v.is_object()) throw bad{"owners must be objects"};
      b.owners.push_back(text(v.as_object(), "user", 256));
    }
    auto& totals = object(*o, "totals");
    (void)list(*o, "grants");
    (void)list(*o, "channels");
    b.grants = number(totals, "grants", 0);
    b.channels = number(totals, "channels", 0);
    b.refusals = number(*o, "refusals", 0);
    auto& j = object(*o, "journal");
    b.journal_seq = number(j, "seq", 1);
    b.journal_hash = text(j, "hash", 64);
    if (!is_hex(b.journal_hash, 64, true)) throw bad{"journal.hash must be 64 lower-case hex digits"};
    auto* t = o->if_contains("truncated");
    if (!t || !t->is_bool()) throw bad{"truncated must be true or false"};
    b.truncated = t->as_bool();
    why.clear();
    return b;
  } catch (const bad& x) {
    why = "the receipt's body is malformed: " + x.why;
    return std::nullopt;
  }
}

}  // namespace rsgate::tunnel
