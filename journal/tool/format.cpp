// See format.hpp. Table cells are stripped of control characters so a tampered journal cannot
// drive the auditor's terminal with escape sequences.
#include "journal/tool/format.hpp"

#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <boost/json/value.hpp>
#include <ostream>
#include <vector>

#include "core/timefmt.hpp"

namespace rsgate::journal {
namespace {

std::string cell(std::string_view s, std::size_t max = 0) {
  std::string out;
  for (unsigned char c : s) out.push_back(c < 0x20 || c == 0x7f ? '?' : static_cast<char>(c));
  if (max && out.size() > max) {
    out.resize(max - 3);
    out += "...";
  }
  return out.empty() ? "-" : out;
}

}  // namespace

std::string to_json_line(const entry& e) { return boost::json::serialize(to_json_object(e)); }

boost::json::object to_json_object(const entry& e) {
  boost::json::object o;
  o["seq"] = e.seq;
  o["ts"] = format_rfc3339(e.ts);
  o["ts_us"] = e.ts;
  o["gateway"] = e.gateway;
  o["kind"] = e.kind;
  o["actor"] = e.actor;
  o["source"] = e.source;
  o["session_id"] = e.session_id;
  o["pmr"] = e.pmr;
  o["machine"] = e.machine;
  o["access_type"] = e.access_type;
  o["scope"] = e.scope;
  o["outcome"] = to_string(e.result);
  o["secret_hmac"] = e.secret_hmac;
  boost::system::error_code ec;
  auto d = boost::json::parse(e.detail, ec);
  if (ec)
    o["detail"] = e.detail;  // a damaged row is shown as it is, as a string
  else
    o["detail"] = std::move(d);
  o["prev_hash"] = e.prev_hash;
  o["hash"] = e.hash;
  return o;
}

std::string csv_quote(std::string_view field) {
  bool needs = field.find_first_of(",\"\r\n") != std::string_view::npos;
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
         "secret_hmac,detail,prev_hash,hash";
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
        std::string_view(e.prev_hash), std::string_view(e.hash)}) {
    out += ',';
    out += csv_quote(f);
  }
  return out;
}

void write_table(std::ostream& out, std::span<const entry> entries, bool header,
                 bool with_gateway) {
  std::vector<std::string> names = {"SEQ", "TIME (UTC)", "KIND", "OUTCOME", "ACTOR", "PMR",
                                    "SESSION", "MACHINE", "ACCESS", "SCOPE", "SOURCE", "DETAIL"};
  if (with_gateway) names.insert(names.begin() + 2, "GATEWAY");
  std::vector<std::vector<std::string>> rows;
  for (auto& e : entries) {
    std::vector<std::string> r = {std::to_string(e.seq), format_rfc3339(e.ts), cell(e.kind),
                                  std::string(to_string(e.result)), cell(e.actor), cell(e.pmr),
                                  cell(e.session_id), cell(e.machine), cell(e.access_type),
                                  cell(e.scope), cell(e.source), cell(e.detail, 80)};
    if (with_gateway) r.insert(r.begin() + 2, cell(e.gateway));
    rows.push_back(std::move(r));
  }
  std::vector<std::size_t> width(names.size());
  for (size_t i = 0; i < names.size(); ++i) width[i] = header ? names[i].size() : 0;
  for (auto& r : rows)
    for (size_t i = 0; i < r.size(); ++i) width[i] = std::max(width[i], r[i].size());
  auto line = [&](const std::vector<std::string>& r) {
    std::string s;
    for (size_t i = 0; i < r.size(); ++i) {
      s += r[i];
      if (i + 1 < r.size()) s += std::string(width[i] - r[i].size() + 2, ' ');
    }
    out << s << '\n';
  };
  if (header) line(names);
  for (auto& r : rows) line(r);
}

}  // namespace rsgate::journal
