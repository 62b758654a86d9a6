// See receipts.hpp.
#include "agent/receipts.hpp"

#include <fmt/format.h>

#include "core/timefmt.hpp"

namespace rsgate::agent {

receipt_verdict check_receipt(const tunnel::signed_receipt& r, const profile& p) {
  receipt_verdict v;
  if (p.receipt_keys.empty()) {
    v.problem = "the profile pins no gateway key (gateway.receipt_keys), so no receipt can be checked with it";
    return v;
  }
  for (auto& hex : p.receipt_keys) {
    auto k = tunnel::parse_receipt_key(hex);
    if (k && tunnel::verify_receipt(r, *k)) {
      v.key_id = tunnel::receipt_key_id(*k);
      break;
    }
  }
  std::string why;
  v.body = tunnel::parse_receipt_body(r.receipt, why);
  if (v.key_id.empty()) {
    v.problem = "its signature does not verify with any gateway key the profile pins: it was altered, or not "
                "signed by this vendor's gateway";
    return v;
  }
  if (v.key_id != r.key_id) {  // key_id is not signed: it must at least name the key that signed
    v.problem = fmt::format("its key_id {} does not name the key that signed it ({})", r.key_id, v.key_id);
    return v;
  }
  if (!v.body) {
    v.problem = why;
    return v;
  }
  if (v.body->machine != p.machine()) {
    v.problem = fmt::format("it is for machine {}, the profile for {}", v.body->machine, p.machine());
    return v;
  }
  v.valid = true;
  return v;
}

std::string describe_receipt(const tunnel::receipt_body& b) {
  auto join = [](const std::vector<std::string>& v) {
    std::string out;
    for (auto& s : v) out += (out.empty() ? "" : ", ") + s;
    return out.empty() ? std::string("none") : out;
  };
  return fmt::format(
      "session {} of {} on gateway {}: PMR {}; owners {}; {} grant(s), {} channel(s), {} refused request(s){}; "
      "ended {} by {} ({}); journal entry {} has hash {}",
      b.session, b.machine, b.gateway, join(b.pmrs), join(b.owners), b.grants, b.channels, b.refusals,
      b.truncated ? " (lists truncated: the journal has the rest)" : "", b.ended_at, b.ended_by, b.end_reason,
      b.journal_seq, b.journal_hash);
}

std::string receipt_file_name(std::string_view session, micros now) {
  std::string id;
  for (char c : session.substr(0, 64))
    id += (std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '_' || c == '-') ? c : '_';
  if (id.empty() || id[0] == '.') id = "session" + id;
  auto t = format_rfc3339(now);  // 2026-12-05T17:01:02.123456Z
  std::string stamp;
  for (char c : t.substr(0, 19))
    if (c != '-' && c != ':') stamp += c;
  return fmt::format("{}-{}Z.json", id, stamp);
}

}  // namespace rsgate::agent
