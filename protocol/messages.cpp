// See messages.hpp. Every parser goes through `fields`, which refuses unknown keys, wrong
// types and out-of-range values in one place; strings must be printable ASCII unless noted.
#include "protocol/messages.hpp"

#include <fmt/format.h>

#include <algorithm>

#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <boost/json/value.hpp>
#include <set>

#include "auth/formats.hpp"
#include "auth/session_key.hpp"

namespace json = boost::json;

namespace rsgate::tunnel {
namespace {

struct parse_fail {
  std::string why;
};

bool printable(std::string_view s) {
  for (unsigned char c : s)
    if (c < 0x20 || c > 0x7e) return false;
  return true;
}

// Typed, bounded access to one JSON object; remembers which keys were read.
class fields {
 public:
  explicit fields(const json::object& o) : o_(o) {}

  std::string str(std::string_view key, std::size_t min, std::size_t max, bool required = true) {
    auto* v = get(key, required);
    if (!v) return {};
    if (!v->is_string()) throw parse_fail{fmt::format("{} must be a string", key)};
    std::string_view s = v->as_string();
    if (s.size() < min || s.size() > max)
      throw parse_fail{fmt::format("{} must be {} to {} characters", key, min, max)};
    if (!printable(s)) throw parse_fail{fmt::format("{} holds a non-printable character", key)};
    return std::string(s);
  }
  std::int64_t integer(std::string_view key, std::int64_t min, std::int64_t max, bool required = true,
                       std::int64_t fallback = 0) {
    auto* v = get(key, required);
    if (!v) return fallback;
    if (!v->is_int64() && !v->is_uint64()) throw parse_fail{fmt::format("{} must be an integer", key)};
    if (v->is_uint64() && v->as_uint64() > static_cast<std::uint64_t>(max))
      throw parse_fail{fmt::format("{} must be {} to {}", key, min, max)};
    std::int64_t n = v->is_int64() ? v->as_int64() : static_cast<std::int64_t>(v->as_uint64());
    if (n < min || n > max) throw parse_fail{fmt::format("{} must be {} to {}", key, min, max)};
    return n;
  }
  bytes b64(std::string_view key, std::size_t min_bytes, std::size_t max_bytes, bool required = true) {
    auto text = str(key, 0, (max_bytes + 2) / 3 * 4, required);
    if (text.empty() && !required) return {};
    auto raw = from_base64(text);
    if (!raw || raw->size() < min_bytes || raw->size() > max_bytes)
      throw parse_fail{fmt::format("{} must be base64 of {} to {} bytes", key, min_bytes, max_bytes)};
    return *raw;
  }
  bool boolean(std::string_view key, bool fallback) {
    auto* v = get(key, false);
    if (!v) return fallback;
    if (!v->is_bool()) throw parse_fail{fmt::format("{} must be true or false", key)};
    return v->as_bool();
  }
  const json::object* object(std::string_view key) {
    auto* v = get(key, false);
    if (!v) return nullptr;
    if (!v->is_object()) throw parse_fail{fmt::format("{} must be an object", key)};
    return &v->as_object();
  }
  const json::array& array(std::string_view key, std::size_t max, bool required = true) {
    static const json::array empty;
    auto* v = get(key, required);
    if (!v) return empty;
    if (!v->is_array()) throw parse_fail{fmt::format("{} must be an array", key)};
    if (v->as_array().size() > max) throw parse_fail{fmt::format("{} has more than {} items", key, max)};
    return v->as_array();
  }
  void done() const {
    for (auto& kv : o_)
      if (!read_.count(std::string(kv.key())))
        throw parse_fail{fmt::format("unknown key '{}'", std::string_view(kv.key()).substr(0, 32))};
  }

 private:
  const json::value* get(std::string_view key, bool required) {
    read_.insert(std::string(key));
    auto* v = o_.if_contains(key);
    if (!v && required) throw parse_fail{fmt::format("{} is missing", key)};
    return v;
  }
  const json::object& o_;
  std::set<std::string> read_;
};

json::value parse_json(std::span<const std::uint8_t> p) {
  if (p.empty() || p.size() > kMaxControlPayload) throw parse_fail{"payload size out of range"};
  json::parse_options opt;
  opt.max_depth = 4;
  boost::system::error_code ec;
  auto v = json::parse(std::string_view(reinterpret_cast<const char*>(p.data()), p.size()), ec, {}, opt);
  if (ec) throw parse_fail{"not JSON"};
  if (!v.is_object()) throw parse_fail{"not a JSON object"};
  return v;
}

template <typename T, typename F>
std::optional<T> run(std::span<const std::uint8_t> p, std::string& why, F&& body) {
  try {
    auto v = parse_json(p);
    fields f(v.as_object());
    T out = body(f);
    f.done();
    why.clear();
    return out;
  } catch (const parse_fail& e) {
    why = e.why;
    return std::nullopt;
  }
}

bytes dump(const json::object& o) {
  auto s = json::serialize(o);
  return bytes(s.begin(), s.end());
}

int chap_id(fields& f) { return static_cast<int>(f.integer("id", 0, 255)); }

}  // namespace

bool is_access_type(std::string_view s) {
  for (auto t : {"ssh", "sftp", "ftp", "telnet-5250", "https", "ops-navigator", "vterm",
                 "file-transfer", "other"})
    if (s == t) return true;
  return false;
}

bool is_scope_name(std::string_view s) {
  if (s.empty() || s.size() > kMaxNameBytes) return false;
  auto ok_first = [](char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'); };
  if (!ok_first(s[0])) return false;
  for (char c : s)
    if (!ok_first(c) && !(c >= 'A' && c <= 'Z') && c != ':' && c != '.' && c != '_' && c != '-')
      return false;
  return true;
}

bool is_notice_event(std::string_view s) {
  for (auto t : {"attach", "attach_refused", "grant", "revoke", "transfer", "channel_open",
                 "channel_close", "session_end", "key_used", "tunnel_refused"})
    if (s == t) return true;
  return false;
}

std::optional<hello> parse_hello(std::span<const std::uint8_t> p, std::string& why) {
  return run<hello>(p, why, [](fields& f) {
    hello m;
    m.version = static_cast<int>(f.integer("version", 1, 65535));
    m.agent = f.str("agent", 1, 64);
    m.machine = f.str("machine", 16, 16);
    if (!auth::is_valid_machine(m.machine)) throw parse_fail{"machine is not TTTT-MMM*SSSSSSS"};
    m.machine = auth::normalize_machine(m.machine);
    for (auto& v : f.array("mechanisms", 4)) {
      if (!v.is_string()) throw parse_fail{"mechanisms must be strings"};
      std::string_view s = v.as_string();
      if (s != kMechanismScram && s != kMechanismMd5) continue;  // unknown ones are skipped
      m.mechanisms.emplace_back(s);
    }
    if (m.mechanisms.empty()) throw parse_fail{"no supported mechanism offered"};
    m.client_nonce = f.str("client_nonce", 24, 88);
    if (m.client_nonce.find(',') != std::string::npos) throw parse_fail{"client_nonce holds ','"};
    std::set<std::string> names;
    for (auto& v : f.array("scopes", kMaxScopes)) {
      if (!v.is_object()) throw parse_fail{"scopes must be objects"};
      fields s(v.as_object());
      scope_offer o;
      o.name = s.str("name", 1, kMaxNameBytes);
      if (!is_scope_name(o.name)) throw parse_fail{"scope name is not [a-z0-9][a-zA-Z0-9:._-]*"};
      o.label = s.str("label", 0, 128, false);
      o.ask = s.boolean("ask", false);
      s.done();
      if (!names.insert(o.name).second) throw parse_fail{"scope offered twice"};
      m.scopes.push_back(std::move(o));
    }
    m.resume = f.str("resume", 0, 64, false);
    const bool asks = std::any_of(m.scopes.begin(), m.scopes.end(), [](auto& o) { return o.ask; });
    m.approval_seconds = static_cast<int>(f.integer("approval_seconds", kMinApprovalSeconds, kMaxApprovalSeconds, asks, 0));
    if (!asks && m.approval_seconds) throw parse_fail{"approval_seconds without a scope that asks"};
    m.receipts = f.boolean("receipts", false);
    return m;
  });
}

bytes to_payload(const hello& m) {
  json::object o;
  o["version"] = m.version;
  o["agent"] = m.agent;
  o["machine"] = m.machine;
  json::array mech;
  for (auto& s : m.mechanisms) mech.emplace_back(s);
  o["mechanisms"] = std::move(mech);
  o["client_nonce"] = m.client_nonce;
  json::array scopes;
  for (auto& s : m.scopes) {
    json::object so;
    so["name"] = s.name;
    if (!s.label.empty()) so["label"] = s.label;
    if (s.ask) so["ask"] = true;
    scopes.emplace_back(std::move(so));
  }
  o["scopes"] = std::move(scopes);
  if (!m.resume.empty()) o["resume"] = m.resume;
  if (m.approval_seconds) o["approval_seconds"] = m.approval_seconds;
  if (m.receipts) o["receipts"] = true;
  return dump(o);
}

std::optional<challenge> parse_challenge(std::span<const std::uint8_t> p, std::string& why) {
  return run<challenge>(p, why, [](fields& f) {
    challenge m;
    m.id = chap_id(f);
    m.mechanism = f.str("mechanism", 1, 32);
    if (m.mechanism == kMechanismScram) {
      m.nonce = f.str("nonce", 48, 176);
      if (m.nonce.find(',') != std::string::npos) throw parse_fail{"nonce holds ','"};
      m.salt = f.b64("salt", 16, 64);
      m.iterations = static_cast<std::uint32_t>(f.integer("iterations", 4096, 1'000'000));
    } else if (m.mechanism == kMechanismMd5) {
      m.value = f.b64("challenge", 16, 64);
    } else {
      throw parse_fail{"unknown mechanism"};
    }
    return m;
  });
}

bytes to_payload(const challenge& m) {
  json::object o;
  o["id"] = m.id;
  o["mechanism"] = m.mechanism;
  if (m.mechanism == kMechanismScram) {
    o["nonce"] = m.nonce;
    o["salt"] = to_base64(m.salt);
    o["iterations"] = m.iterations;
  } else {
    o["challenge"] = to_base64(m.value);
  }
  return dump(o);
}

std::optional<response> parse_response(std::span<const std::uint8_t> p, std::string& why) {
  return run<response>(p, why, [](fields& f) {
    response m;
    m.id = chap_id(f);
    m.proof = f.b64("proof", 16, 32);
    if (m.proof.size() != 16 && m.proof.size() != 32) throw parse_fail{"proof must be 16 or 32 bytes"};
    return m;
  });
}

bytes to_payload(const response& m) {
  json::object o;
  o["id"] = m.id;
  o["proof"] = to_base64(m.proof);
  return dump(o);
}

std::optional<success> parse_success(std::span<const std::uint8_t> p, std::string& why) {
  return run<success>(p, why, [](fields& f) {
    success m;
    m.id = chap_id(f);
    m.server_signature = f.b64("server_signature", 32, 32, false);
    m.session = f.str("session", 1, 64);
    m.rekey_seconds = static_cast<int>(f.integer("rekey_seconds", 1, 86400, false, kRekeySeconds));
    m.max_tunnel_seconds =
        static_cast<int>(f.integer("max_tunnel_seconds", kMinTunnelSeconds, kMaxTunnelLifeSeconds, false, kMaxTunnelSeconds));
    m.keepalive_seconds = static_cast<int>(
        f.integer("keepalive_seconds", kMinDeadPeerSeconds, kMaxDeadPeerSeconds, false, kDeadPeerSeconds));
    m.grace_seconds = static_cast<int>(f.integer("grace_seconds", 1, 86400, false, kReconnectGraceSeconds));
    return m;
  });
}

bytes to_payload(const success& m) {
  json::object o;
  o["id"] = m.id;
  if (!m.server_signature.empty()) o["server_signature"] = to_base64(m.server_signature);
  o["session"] = m.session;
  o["rekey_seconds"] = m.rekey_seconds;
  o["max_tunnel_seconds"] = m.max_tunnel_seconds;
  o["keepalive_seconds"] = m.keepalive_seconds;
  o["grace_seconds"] = m.grace_seconds;
  return dump(o);
}

std::optional<failure> parse_failure(std::span<const std::uint8_t> p, std::string& why) {
  return run<failure>(p, why, [](fields& f) {
    failure m;
    m.id = chap_id(f);
    m.reason = f.str("reason", 1, kMaxReasonBytes);
    m.retry_after_seconds = f.integer("retry_after_seconds", 0, 7 * 86400, false, 0);
    return m;
  });
}

bytes to_payload(const failure& m) {
  json::object o;
  o["id"] = m.id;
  o["reason"] = m.reason;
  if (m.retry_after_seconds > 0) o["retry_after_seconds"] = m.retry_after_seconds;
  return dump(o);
}

std::optional<key_offer> parse_key_offer(std::span<const std::uint8_t> p, std::string& why) {
  return run<key_offer>(p, why, [](fields& f) {
    key_offer m;
    m.key = f.str("key", 13, 20);
    // A session key in its display form with the right check symbol (auth/session_key.hpp),
    // exactly as the agent shows it: anything else is a protocol error, not a key to store.
    auto canonical = auth::normalize_session_key(m.key);
    if (!canonical || auth::display_session_key(*canonical) != m.key)
      throw parse_fail{"key is not a session key in display form (XXXX-XXXX-XXXX-C with its check symbol)"};
    m.expires_in = f.integer("expires_in", 60, 86400, false, 3600);
    return m;
  });
}

bytes to_payload(const key_offer& m) {
  json::object o;
  o["key"] = m.key;
  o["expires_in"] = m.expires_in;
  return dump(o);
}

std::optional<key_ack> parse_key_ack(std::span<const std::uint8_t> p, std::string& why) {
  return run<key_ack>(p, why, [](fields& f) {
    key_ack m;
    m.expires_at = f.str("expires_at", 20, 32);
    return m;
  });
}

bytes to_payload(const key_ack& m) {
  json::object o;
  o["expires_at"] = m.expires_at;
  return dump(o);
}

std::optional<notice> parse_notice(std::span<const std::uint8_t> p, std::string& why) {
  return run<notice>(p, why, [](fields& f) {
    notice m;
    m.event = f.str("event", 1, 32);
    if (!is_notice_event(m.event)) throw parse_fail{"unknown event"};
    m.ts = f.str("ts", 20, 32);
    m.actor = f.str("actor", 0, 256, false);
    m.user = f.str("user", 0, 256, false);
    m.pmr = f.str("pmr", 0, 13, false);
    m.scope = f.str("scope", 0, kMaxNameBytes, false);
    m.access_type = f.str("access_type", 0, 32, false);
    m.reason = f.str("reason", 0, kMaxReasonBytes, false);
    m.channel = static_cast<std::uint32_t>(f.integer("channel", 0, kMaxChannelId, false, 0));
    m.bytes_in = f.integer("bytes_in", 0, INT64_MAX, false, 0);
    m.bytes_out = f.integer("bytes_out", 0, INT64_MAX, false, 0);
    return m;
  });
}

bytes to_payload(const notice& m) {
  json::object o;
  o["event"] = m.event;
  o["ts"] = m.ts;
  auto put = [&](const char* k, const std::string& v) {
    if (!v.empty()) o[k] = v;
  };
  put("actor", m.actor);
  put("user", m.user);
  put("pmr", m.pmr);
  put("scope", m.scope);
  put("access_type", m.access_type);
  put("reason", m.reason);
  if (m.channel) o["channel"] = m.channel;
  if (m.bytes_in) o["bytes_in"] = m.bytes_in;
  if (m.bytes_out) o["bytes_out"] = m.bytes_out;
  return dump(o);
}

std::optional<channel_open> parse_channel_open(std::span<const std::uint8_t> p, std::string& why) {
  return run<channel_open>(p, why, [](fields& f) {
    channel_open m;
    m.scope = f.str("scope", 1, kMaxNameBytes);
    if (!is_scope_name(m.scope)) throw parse_fail{"scope name is malformed"};
    m.access_type = f.str("access_type", 1, 32);
    if (!is_access_type(m.access_type)) throw parse_fail{"unknown access_type"};
    m.actor = f.str("actor", 0, 256, false);
    m.window = static_cast<std::uint32_t>(f.integer("window", 1024, kMaxWindow));
    return m;
  });
}

bytes to_payload(const channel_open& m) {
  json::object o;
  o["scope"] = m.scope;
  o["access_type"] = m.access_type;
  if (!m.actor.empty()) o["actor"] = m.actor;
  o["window"] = m.window;
  return dump(o);
}

namespace {

// `approval`: {"decision", "by"}; `by` names who decided (1..64 printable), absent for a timeout.
std::optional<approval> approval_of(fields& f) {
  auto* o = f.object("approval");
  if (!o) return std::nullopt;
  fields a(*o);
  approval m;
  m.decision = a.str("decision", 1, 16);
  if (m.decision != "approved" && m.decision != "refused" && m.decision != "timeout")
    throw parse_fail{"approval decision must be approved, refused or timeout"};
  m.by = a.str("by", m.decision == "timeout" ? 0 : 1, kMaxApproverBytes, m.decision != "timeout");
  if (m.decision == "timeout" && !m.by.empty()) throw parse_fail{"a timeout has no approver"};
  a.done();
  return m;
}

json::object approval_json(const approval& m) {
  json::object o{{"decision", m.decision}};
  if (!m.by.empty()) o["by"] = m.by;
  return o;
}

}  // namespace

std::optional<channel_accept> parse_channel_accept(std::span<const std::uint8_t> p, std::string& why) {
  return run<channel_accept>(p, why, [](fields& f) {
    channel_accept m;
    m.window = static_cast<std::uint32_t>(f.integer("window", 1024, kMaxWindow));
    m.approved = approval_of(f);
    if (m.approved && m.approved->decision != "approved") throw parse_fail{"CHANNEL_ACCEPT's approval must be approved"};
    return m;
  });
}

bytes to_payload(const channel_accept& m) {
  json::object o;
  o["window"] = m.window;
  if (m.approved) o["approval"] = approval_json(*m.approved);
  return dump(o);
}

std::optional<channel_reject> parse_channel_reject(std::span<const std::uint8_t> p, std::string& why) {
  return run<channel_reject>(p, why, [](fields& f) {
    channel_reject m;
    m.reason = f.str("reason", 0, kMaxReasonBytes, false);
    m.decided = approval_of(f);
    return m;
  });
}

bytes to_payload(const channel_reject& m) {
  json::object o;
  o["reason"] = m.reason;
  if (m.decided) o["approval"] = approval_json(*m.decided);
  return dump(o);
}

std::optional<reason_only> parse_reason(std::span<const std::uint8_t> p, std::string& why) {
  return run<reason_only>(p, why, [](fields& f) {
    reason_only m;
    m.reason = f.str("reason", 0, kMaxReasonBytes, false);
    return m;
  });
}

std::optional<signed_receipt> parse_receipt(std::span<const std::uint8_t> p, std::string& why) {
  return run<signed_receipt>(p, why, [](fields& f) {
    signed_receipt m;
    m.receipt = f.str("receipt", 2, kMaxControlPayload);
    m.signature = f.str("signature", 128, 128);
    m.key_id = f.str("key_id", 16, 16);
    auto hex = [](std::string_view s) { return s.find_first_not_of("0123456789abcdefABCDEF") == std::string_view::npos; };
    if (!hex(m.signature) || !hex(m.key_id)) throw parse_fail{"signature and key_id must be hex digits"};
    return m;
  });
}

bytes to_payload(const signed_receipt& m) {
  return dump(json::object{{"receipt", m.receipt}, {"signature", m.signature}, {"key_id", m.key_id}});
}

std::optional<receipt_ack> parse_receipt_ack(std::span<const std::uint8_t> p, std::string& why) {
  return run<receipt_ack>(p, why, [](fields& f) {
    receipt_ack m;
    m.session = f.str("session", 1, 64);
    return m;
  });
}

bytes to_payload(const receipt_ack& m) { return dump(json::object{{"session", m.session}}); }

std::optional<rekey> parse_rekey(std::span<const std::uint8_t> p, std::string& why) {
  return run<rekey>(p, why, [](fields&) { return rekey{}; });
}

bytes to_payload(const rekey&) { return dump(json::object{}); }

bytes to_payload(const reason_only& m) {
  json::object o;
  o["reason"] = m.reason;
  return dump(o);
}

std::optional<error_message> parse_error(std::span<const std::uint8_t> p, std::string& why) {
  return run<error_message>(p, why, [](fields& f) {
    error_message m;
    m.code = f.str("code", 1, 64);
    m.message = f.str("message", 0, kMaxReasonBytes, false);
    return m;
  });
}

bytes to_payload(const error_message& m) {
  json::object o;
  o["code"] = m.code;
  o["message"] = m.message;
  return dump(o);
}

std::string scram_auth_message(std::string_view machine, std::string_view client_nonce,
                               const challenge& c, std::span<const std::uint8_t> exporter) {
  // RFC 5802 §3 with RFC 9266: gs2-header "p=tls-exporter,," followed by the 32 exporter bytes.
  const std::string gs2 = "p=tls-exporter,,";
  bytes cbind(gs2.begin(), gs2.end());
  cbind.insert(cbind.end(), exporter.begin(), exporter.end());
  return fmt::format("n={},r={},r={},s={},i={},c={},r={}", machine, client_nonce, c.nonce,
                     to_base64(c.salt), c.iterations, to_base64(cbind), c.nonce);
}

}  // namespace rsgate::tunnel
