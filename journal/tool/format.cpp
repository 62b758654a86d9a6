// See format.hpp. What a journal holds is only as trustworthy as the file: a tampered (or
// merely odd) field must not drive the auditor's terminal. The table shows every control
// character (C0, DEL, C1 such as U+009B CSI), every byte that is not UTF-8 and every Unicode
// bidirectional control as '?'; JSON lines escape C0, DEL, C1 and the bidirectional controls
// as \uXXXX, so they stay lossless for UTF-8 and safe to print; CSV keeps the stored bytes
// exactly (it is for programs) and quotes any field that holds a control character.
#include "journal/tool/format.hpp"

#include <fmt/format.h>

#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <boost/json/value.hpp>
#include <ostream>
#include <vector>

#include "core/timefmt.hpp"

namespace rsgate::journal {
namespace {

struct utf8_char {
  char32_t cp = 0;
  std::size_t len = 1;
  bool valid = false;
};

// The UTF-8 sequence starting at s[i] (RFC 3629: no overlong forms, no surrogates, at most
// U+10FFFF); an invalid byte is one invalid char of length 1.
utf8_char next_char(std::string_view s, std::size_t i) {
  auto b = [&](std::size_t k) { return static_cast<unsigned char>(s[k]); };
  unsigned char c = b(i);
  if (c < 0x80) return {c, 1, true};
  std::size_t len = c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : c >= 0xC0 ? 2 : 0;
  if (len == 0 || c > 0xF4 || i + len > s.size()) return {};
  char32_t cp = c & (0x7F >> len);
  for (std::size_t k = 1; k < len; ++k) {
    if ((b(i + k) & 0xC0) != 0x80) return {};
    cp = (cp << 6) | (b(i + k) & 0x3F);
  }
  static constexpr char32_t kMin[] = {0, 0, 0x80, 0x800, 0x10000};
  if (cp < kMin[len] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return {};
  return {cp, len, true};
}

bool is_control(char32_t cp) { return cp < 0x20 || (cp >= 0x7F && cp <= 0x9F); }

// Characters that reorder or break the text around them (Trojan Source): shown as '?' in
// the table and escaped in JSON, so a field cannot disguise its neighbours.
bool is_bidi_or_separator(char32_t cp) {
  return cp == 0x061C || cp == 0x200E || cp == 0x200F || (cp >= 0x2028 && cp <= 0x202E) ||
         (cp >= 0x2066 && cp <= 0x2069);
}

// A table cell: unsafe characters as '?', at most `max` characters (0: no limit), '-' when
// empty. Returns the cell and its width in characters.
std::pair<std::string, std::size_t> cell_of(std::string_view s, std::size_t max = 0) {
  std::string out;
  std::size_t chars = 0;
  std::size_t cut_at = 0, cut_chars = 0;  // where "..." goes if the text is too long
  for (std::size_t i = 0; i < s.size();) {
    auto ch = next_char(s, i);
    if (max && chars == max - 3) {
      cut_at = out.size();
      cut_chars = chars;
    }
    if (!ch.valid || is_control(ch.cp) || is_bidi_or_separator(ch.cp))
      out.push_back('?');
    else
      out.append(s.substr(i, ch.len));
    ++chars;
    i += ch.len;
  }
  if (max && chars > max) {
    out.resize(cut_at);
    out += "...";
    chars = cut_chars + 3;
  }
  if (out.empty()) return {"-", 1};
  return {out, chars};
}

std::string cell(std::string_view s, std::size_t max = 0) { return cell_of(s, max).first; }

// Valid UTF-8 for a JSON string: each byte that is not part of a UTF-8 character becomes
// U+FFFD (a JSON string cannot hold raw bytes; the database keeps them).
std::string json_text(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (std::size_t i = 0; i < s.size();) {
    auto ch = next_char(s, i);
    if (ch.valid)
      out.append(s.substr(i, ch.len));
    else
      out += "\xEF\xBF\xBD";
    i += ch.len;
  }
  return out;
}

// Boost.JSON escapes C0 only: escape DEL, C1 and the bidirectional controls too. In
// serialized JSON such bytes can only be inside strings, where \uXXXX means the same.
std::string escape_unsafe(const std::string& json) {
  std::string out;
  out.reserve(json.size());
  for (std::size_t i = 0; i < json.size();) {
    auto ch = next_char(json, i);
    if (ch.valid && (ch.cp == 0x7F || (ch.cp >= 0x80 && ch.cp <= 0x9F) || is_bidi_or_separator(ch.cp)))
      out += fmt::format("\\u{:04x}", static_cast<std::uint32_t>(ch.cp));
    else
      out.append(json, i, ch.len);
    i += ch.len;
  }
  return out;
}

}  // namespace

std::string to_json_line(const entry& e) {
  return escape_unsafe(boost::json::serialize(to_json_object(e)));
}

boost::json::object to_json_object(const entry& e) {
  boost::json::object o;
  o["seq"] = e.seq;
  o["ts"] = format_rfc3339(e.ts);
  o["ts_us"] = e.ts;
  o["gateway"] = json_text(e.gateway);
  o["kind"] = json_text(e.kind);
  o["actor"] = json_text(e.actor);
  o["source"] = json_text(e.source);
  o["session_id"] = json_text(e.session_id);
  o["pmr"] = json_text(e.pmr);
  o["machine"] = json_text(e.machine);
  o["access_type"] = json_text(e.access_type);
  o["scope"] = json_text(e.scope);
  o["outcome"] = to_string(e.result);
  o["secret_hmac"] = json_text(e.secret_hmac);
  boost::system::error_code ec;
  auto d = boost::json::parse(e.detail, ec);
  if (ec)
    o["detail"] = json_text(e.detail);  // a damaged row is shown as it is, as a string
  else
    o["detail"] = std::move(d);
  o["prev_hash"] = json_text(e.prev_hash);
  o["hash"] = json_text(e.hash);
  o["subject"] = json_text(e.subject);  // last: added after the others (docs/journal.md §15)
  return o;
}

entry from_json_object(const boost::json::object& o) {
  auto text = [&](std::string_view k) {
    auto* v = o.if_contains(k);
    return v && v->is_string() ? std::string(v->as_string()) : std::string();
  };
  auto number = [&](std::string_view k) {
    auto* v = o.if_contains(k);
    return v && v->is_int64() ? v->as_int64() : std::int64_t{0};
  };
  entry e;
  e.seq = number("seq");
  e.ts = number("ts_us");
  e.gateway = text("gateway");
  e.kind = text("kind");
  e.actor = text("actor");
  e.source = text("source");
  e.session_id = text("session_id");
  e.pmr = text("pmr");
  e.machine = text("machine");
  e.access_type = text("access_type");
  e.scope = text("scope");
  e.result = parse_outcome(text("outcome")).value_or(outcome::error);
  e.secret_hmac = text("secret_hmac");
  if (auto* d = o.if_contains("detail")) e.detail = d->is_string() ? std::string(d->as_string()) : boost::json::serialize(*d);
  e.prev_hash = text("prev_hash");
  e.hash = text("hash");
  e.subject = text("subject");
  return e;
}

std::string csv_quote(std::string_view field) {
  bool needs = false;
  for (std::size_t i = 0; i < field.size() && !needs;) {
    auto ch = next_char(field, i);
    needs = ch.cp == ',' || ch.cp == '"' || (ch.valid && is_control(ch.cp));
    i += ch.len;
  }
  if (!needs) return std::string(field);
  std::string out = "\"";
  for (char c : field) {
    if (c == '"') out += '"';
    out += c;
  }
  out += '"';
  return out;
}

std::string csv_header() {
  return "seq,ts,gateway,kind,actor,source,session_id,pmr,machine,access_type,scope,outcome,"
         "secret_hmac,detail,prev_hash,hash,subject";
}

std::string to_csv_row(const entry& e) {
  std::string out = std::to_string(e.seq);
  const std::string ts = format_rfc3339(e.ts);  // outlives the loop (C++20 range-for rules)
  for (std::string_view f :
       {std::string_view(ts), std::string_view(e.gateway),
        std::string_view(e.kind), std::string_view(e.actor), std::string_view(e.source),
        std::string_view(e.session_id), std::string_view(e.pmr), std::string_view(e.machine),
        std::string_view(e.access_type), std::string_view(e.scope), to_string(e.result),
        std::string_view(e.secret_hmac), std::string_view(e.detail),
        std::string_view(e.prev_hash), std::string_view(e.hash), std::string_view(e.subject)}) {
    out += ',';
    out += csv_quote(f);
  }
  return out;
}

std::string table_cell(std::string_view field, std::size_t max_chars) { return cell(field, max_chars); }

void write_table(std::ostream& out, std::span<const entry> entries, bool header,
                 bool with_gateway) {
  std::vector<std::string> names = {"SEQ", "TIME (UTC)", "KIND", "OUTCOME", "ACTOR", "SUBJECT", "PMR",
                                    "SESSION", "MACHINE", "ACCESS", "SCOPE", "SOURCE", "DETAIL"};
  if (with_gateway) names.insert(names.begin() + 2, "GATEWAY");
  // Each cell with its width in characters (a UTF-8 name is several bytes but one column each).
  std::vector<std::vector<std::pair<std::string, std::size_t>>> rows;
  for (auto& e : entries) {
    auto seq = std::to_string(e.seq);
    auto ts = format_rfc3339(e.ts);
    std::vector<std::pair<std::string, std::size_t>> r = {
        {seq, seq.size()}, {ts, ts.size()}, cell_of(e.kind), cell_of(to_string(e.result)),
        cell_of(e.actor), cell_of(e.subject), cell_of(e.pmr), cell_of(e.session_id),
        cell_of(e.machine), cell_of(e.access_type), cell_of(e.scope), cell_of(e.source),
        cell_of(e.detail, 80)};
    if (with_gateway) r.insert(r.begin() + 2, cell_of(e.gateway));
    rows.push_back(std::move(r));
  }
  std::vector<std::size_t> width(names.size());
  for (size_t i = 0; i < names.size(); ++i) width[i] = header ? names[i].size() : 0;
  for (auto& r : rows)
    for (size_t i = 0; i < r.size(); ++i) width[i] = std::max(width[i], r[i].second);
  auto line = [&](const std::vector<std::pair<std::string, std::size_t>>& r) {
    std::string s;
    for (size_t i = 0; i < r.size(); ++i) {
      s += r[i].first;
      if (i + 1 < r.size()) s += std::string(width[i] - r[i].second + 2, ' ');
    }
    out << s << '\n';
  };
  if (header) {
    std::vector<std::pair<std::string, std::size_t>> h;
    for (auto& n : names) h.emplace_back(n, n.size());
    line(h);
  }
  for (auto& r : rows) line(r);
}

}  // namespace rsgate::journal
