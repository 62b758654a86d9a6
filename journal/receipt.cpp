// See receipt.hpp. The body is derived from the entries' own fields and details; every string
// copied into it passes escape_for_journal, so the body is printable ASCII whatever a detail
// held, and nothing that is not in the journal can enter it.
#include "journal/receipt.hpp"

#include <algorithm>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <boost/json/value.hpp>
#include <map>
#include <set>

#include "core/timefmt.hpp"
#include "journal/reader.hpp"
#include "protocol/messages.hpp"
#include "protocol/wire.hpp"

namespace json = boost::json;

namespace rsgate::journal {
namespace {

constexpr std::size_t kTextBytes = 256;

std::string clean(std::string_view s) { return escape_for_journal(s, kTextBytes); }

json::object detail_of(const entry& e) {
  boost::system::error_code ec;
  auto v = json::parse(e.detail, ec);
  if (ec || !v.is_object()) return {};
  return std::move(v.as_object());
}

std::string str_of(const json::object& d, std::string_view key) {
  auto* v = d.if_contains(key);
  return v && v->is_string() ? clean(v->as_string()) : std::string();
}

std::int64_t int_of(const json::object& d, std::string_view key) {
  auto* v = d.if_contains(key);
  if (v && v->is_int64()) return v->as_int64();
  if (v && v->is_uint64()) return static_cast<std::int64_t>(std::min<std::uint64_t>(v->as_uint64(), INT64_MAX));
  return 0;
}

json::array names_of(const json::object& d, std::string_view key) {
  json::array out;
  auto* v = d.if_contains(key);
  if (!v || !v->is_array()) return out;
  for (auto& x : v->as_array())
    if (x.is_string() && out.size() < 64) out.emplace_back(clean(x.as_string()));
  return out;
}

// The session's story, read from its entries in order.
struct story {
  std::string machine, started_at, ended_at, ended_by, end_reason;
  std::vector<std::string> pmrs;
  std::set<std::string> scopes;
  json::array owners, grants, channels;
  std::int64_t refusals = 0, keys = 0, tunnels = 0;
};

story read_story(const std::vector<entry>& entries) {
  story s;
  std::map<std::string, std::size_t> grant_at;        // grant id -> index in s.grants
  std::map<std::int64_t, json::object> approvals;     // channel id -> the decision waiting for its close
  for (auto& e : entries) {
    if (s.started_at.empty()) s.started_at = format_rfc3339(e.ts);
    if (!e.machine.empty()) s.machine = clean(e.machine);
    if (e.result != outcome::ok && e.kind != "channel.approval") {
      ++s.refusals;
      continue;
    }
    auto d = detail_of(e);
    if (!e.pmr.empty() && std::find(s.pmrs.begin(), s.pmrs.end(), clean(e.pmr)) == s.pmrs.end())
      s.pmrs.push_back(clean(e.pmr));
    const auto at = format_rfc3339(e.ts);
    if (e.kind == "tunnel.auth") {
      ++s.tunnels;
      for (auto& n : names_of(d, "scopes")) s.scopes.insert(std::string(n.as_string()));
    } else if (e.kind == "session.key_issued") {
      ++s.keys;
    } else if (e.kind == "session.attach") {
      s.owners.emplace_back(json::object{{"user", clean(e.actor)}, {"pmr", clean(e.pmr)}, {"since", at}, {"how", "attach"}});
    } else if (e.kind == "session.transfer") {
      s.owners.emplace_back(json::object{
          {"user", str_of(d, "to")}, {"pmr", clean(e.pmr)}, {"since", at}, {"how", "transfer"}, {"from", clean(e.actor)}});
    } else if (e.kind == "session.grant" && d.contains("change")) {
      // A change of a grant's terms (docs/api.md PATCH …/grants/{gid}): listed under it.
      auto it = grant_at.find(str_of(d, "grant"));
      if (it != grant_at.end()) {
        auto* x = d.if_contains("expires_at");
        auto& g = s.grants[it->second].as_object();
        if (!g.contains("changes")) g["changes"] = json::array{};
        g["changes"].as_array().emplace_back(json::object{
            {"at", at}, {"by", clean(e.actor)}, {"scopes", names_of(d, "scopes")},
            {"access_types", names_of(d, "access_types")},
            {"expires_at", x && x->is_string() ? json::value(clean(x->as_string())) : nullptr}});
      }
    } else if (e.kind == "session.grant") {
      auto* x = d.if_contains("expires_at");
      grant_at[str_of(d, "grant")] = s.grants.size();
      s.grants.emplace_back(json::object{{"grant", str_of(d, "grant")},
                                         {"user", str_of(d, "user")},
                                         {"by", clean(e.actor)},
                                         {"scopes", names_of(d, "scopes")},
                                         {"access_types", names_of(d, "access_types")},
                                         {"granted_at", at},
                                         {"expires_at", x && x->is_string() ? json::value(clean(x->as_string())) : nullptr}});
    } else if (e.kind == "session.revoke") {
      auto it = grant_at.find(str_of(d, "grant"));
      if (it != grant_at.end()) {
        auto& g = s.grants[it->second].as_object();
        g["revoked_at"] = at;
        g["revoked_by"] = clean(e.actor);
        g["revoke_reason"] = str_of(d, "reason");
      }
    } else if (e.kind == "channel.approval") {
      json::object a{{"decision", str_of(d, "decision")}};
      if (auto by = str_of(d, "by"); !by.empty()) a["by"] = by;
      approvals[int_of(d, "channel")] = std::move(a);
    } else if (e.kind == "channel.close") {
      // Channel ids are per tunnel: a decision belongs to the next close of its id.
      const auto id = int_of(d, "channel");
      json::object c{{"channel", id},
                     {"user", clean(e.actor)},
                     {"scope", clean(e.scope)},
                     {"access_type", clean(e.access_type)},
                     {"closed_at", at},
                     {"duration_ms", int_of(d, "duration_ms")},
                     {"bytes_to_agent", int_of(d, "bytes_to_agent")},
                     {"bytes_from_agent", int_of(d, "bytes_from_agent")},
                     {"reason", str_of(d, "reason")}};
      if (auto it = approvals.find(id); it != approvals.end()) {
        c["approval"] = std::move(it->second);
        approvals.erase(it);
      }
      s.channels.emplace_back(std::move(c));
    } else if (e.kind == "session.end") {
      s.ended_at = at;
      s.ended_by = clean(e.actor);
      s.end_reason = str_of(d, "reason");
    }
  }
  return s;
}

json::array first(const json::array& a, std::size_t n) {
  json::array out;
  for (std::size_t i = 0; i < a.size() && i < n; ++i) out.push_back(a[i]);
  return out;
}

}  // namespace

std::string build_receipt_body(const receipt_input& in) {
  auto s = read_story(in.entries);
  json::array pmrs, scopes;
  for (auto& p : s.pmrs) pmrs.emplace_back(p);
  for (auto& sc : s.scopes) scopes.emplace_back(sc);
  json::object body{{"format", tunnel::kReceiptFormat},
                    {"gateway", clean(in.gateway)},
                    {"issued_at", format_rfc3339(in.issued_at)},
                    {"session", clean(in.entries.empty() ? std::string() : in.entries.front().session_id)},
                    {"machine", s.machine},
                    {"started_at", s.started_at},
                    {"ended_at", s.ended_at},
                    {"ended_by", s.ended_by},
                    {"end_reason", s.end_reason},
                    {"scopes", std::move(scopes)},
                    {"pmrs", std::move(pmrs)},
                    {"refusals", s.refusals},
                    {"keys_issued", s.keys},
                    {"tunnels", s.tunnels},
                    {"entries", json::object{{"count", in.entries.size()},
                                             {"first_seq", in.entries.empty() ? 0 : in.entries.front().seq},
                                             {"last_seq", in.entries.empty() ? 0 : in.entries.back().seq}}},
                    {"journal", json::object{{"seq", in.head_seq}, {"hash", in.head_hash}}},
                    {"totals", json::object{{"owners", s.owners.size()},
                                            {"grants", s.grants.size()},
                                            {"channels", s.channels.size()}}}};
  // Cut the lists (channels first, the longest) until the signed frame fits.
  std::size_t caps[3] = {s.owners.size(), s.grants.size(), s.channels.size()};
  const tunnel::signed_receipt probe{"", std::string(128, '0'), std::string(16, '0'), ""};
  for (;;) {
    body["owners"] = first(s.owners, caps[0]);
    body["grants"] = first(s.grants, caps[1]);
    body["channels"] = first(s.channels, caps[2]);
    body["truncated"] = caps[0] < s.owners.size() || caps[1] < s.grants.size() || caps[2] < s.channels.size();
    auto text = json::serialize(body);
    auto p = probe;
    p.receipt = text;
    if (tunnel::to_payload(p).size() <= tunnel::kMaxControlPayload) return text;
    if (caps[2] > 0) caps[2] /= 2;
    else if (caps[1] > 0) caps[1] /= 2;
    else if (caps[0] > 0) caps[0] /= 2;
    else return text;  // cannot happen: the fixed fields are bounded far below 16 KiB
  }
}

tunnel::signed_receipt sign_receipt(std::string body, const signing_key& key) {
  tunnel::signed_receipt r;
  auto m = tunnel::signed_message(body);
  r.signature = key.sign_hex(std::span(reinterpret_cast<const std::uint8_t*>(m.data()), m.size()));
  r.key_id = key.key_id();
  r.receipt = std::move(body);
  return r;
}

std::optional<tunnel::signed_receipt> make_receipt(reader& rd, const std::string& session_id, const signing_key& key,
                                                   micros now) {
  receipt_input in;
  auto& db = rd.db(0);
  db.exec("BEGIN");  // the entries and the head from one snapshot
  try {
    filter f;
    f.session_id = session_id;
    f.limit = kMaxQueryLimit;
    auto pg = rd.query(f);
    in.entries = std::move(pg.entries);
    std::sort(in.entries.begin(), in.entries.end(), [](auto& a, auto& b) { return a.seq < b.seq; });
    auto st = db.prepare("SELECT seq, hash, gateway FROM journal ORDER BY seq DESC LIMIT 1");
    if (st.step()) {
      in.head_seq = st.col_int(0);
      in.head_hash = std::string(st.col_text(1));
      in.gateway = std::string(st.col_text(2));
    }
    db.exec("COMMIT");
  } catch (...) {
    db.exec("ROLLBACK");
    throw;
  }
  const bool ended = std::any_of(in.entries.begin(), in.entries.end(),
                                 [](auto& e) { return e.kind == "session.end" && e.result == outcome::ok; });
  if (!ended || in.head_seq == 0) return std::nullopt;
  in.issued_at = now;
  return sign_receipt(build_receipt_body(in), key);
}

}  // namespace rsgate::journal
