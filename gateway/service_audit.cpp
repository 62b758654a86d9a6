// The auditors' side of the API (service.hpp, docs/api.md §5.4, §6): everything linked to a
// PMR, the journal query with every filter of `rsgate journal query`, and the chain's
// verification. Every audit query is itself journaled (audit.query) before it is answered;
// its detail holds the filters as parsed, so it is valid and bounded whatever was sent.
#include <fmt/format.h>

#include <boost/json/serialize.hpp>
#include <boost/json/value.hpp>

#include "auth/formats.hpp"
#include "core/timefmt.hpp"
#include "gateway/detail/service_common.hpp"
#include "gateway/http/request_input.hpp"
#include "gateway/service.hpp"
#include "journal/tool/format.hpp"

namespace json = boost::json;

namespace rsgate::gateway {

using namespace detail;

namespace {

constexpr std::size_t kMaxFilterBytes = 256;

void answer_after(journal::writer& w, journal::entry e, http_response answer, const api::reply& done) {
  w.append(std::move(e), [answer = std::move(answer), done](const journal::append_result& r) {
    if (r.ok()) return done(answer);
    done(r.ec == journal::errc::invalid_entry ? json_error(500, "internal", "the journal entry could not be built")
                                              : journal_unavailable());
  });
}

std::optional<std::string> bounded(const query_params& q, std::string_view name) {
  auto v = q.get(name);
  if (v && (v->empty() || v->size() > kMaxFilterBytes))
    throw bad_input(fmt::format("\"{}\" must be 1 to {} characters", name, kMaxFilterBytes));
  return v;
}

// The filters of GET /journal, parsed strictly (docs/api.md §6).
// The parameters as given (decoded), for an audit.query entry's detail.
json::object as_object(const query_params& q) {
  json::object o;
  for (auto& [k, v] : q.all()) o[k] = v;
  return o;
}

journal::filter journal_filter(const query_params& q, micros now, std::int64_t max_limit = 1000,
                               std::int64_t default_limit = 100) {
  journal::filter f;
  if (auto v = q.get("pmr")) {
    if (!auth::is_valid_pmr(*v)) throw bad_input(std::string(auth::kPmrForm));
    f.pmr = auth::normalize_pmr(*v);
  }
  if (auto v = q.get("machine")) {
    if (!auth::is_valid_machine(*v)) throw bad_input(std::string(auth::kMachineForm));
    f.machine = auth::normalize_machine(*v);
  }
  if (auto v = q.get("kind")) {
    if (!journal::is_known_kind(*v)) throw bad_input("unknown kind");
    f.kind = *v;
  }
  if (auto v = q.get("outcome")) {
    f.result = journal::parse_outcome(*v);
    if (!f.result) throw bad_input("outcome must be ok, denied or error");
  }
  f.session_id = bounded(q, "session");
  f.actor = bounded(q, "actor");
  f.subject = bounded(q, "subject");
  for (auto [name, dst] : {std::pair{"since", &f.since}, std::pair{"until", &f.until}}) {
    if (auto v = q.get(name)) {
      auto t = parse_time(*v, now);
      if (!t) throw bad_input(fmt::format("{} must be an RFC 3339 time, a date or an age like 2h", name));
      *dst = t;
    }
  }
  f.limit = static_cast<std::size_t>(q.whole("limit", 1, max_limit).value_or(default_limit));
  if (auto v = bounded(q, "cursor")) {
    f.after = journal::cursor::decode(*v);
    if (!f.after) throw bad_input("malformed cursor");
  }
  return f;
}

}  // namespace

void service::pmr_sessions(const principal& p, const std::string& pmr_in, const http_request& req, const api::reply& done) {
  query_params(req.target, {});
  if (p.user_role != role::representative && p.user_role != role::auditor)
    return done(json_error(403, "forbidden", "PMR lookups are for representatives and auditors"));
  if (!auth::is_valid_pmr(pmr_in)) throw bad_input(std::string(auth::kPmrForm));
  auto pmr = auth::normalize_pmr(pmr_in);
  auto e = base_entry("audit.query", p, req);
  e.pmr = pmr;
  e.detail = json::serialize(json::object{{"endpoint", "pmrs"}});
  // Read first (on this worker thread, not the journal writer's), answer only once the query
  // itself is journaled.
  auto& rd = journal_reader();
  journal::filter f;
  f.pmr = pmr;
  f.exclude_audit = true;  // the earlier lookups of this PMR are not what happened under it
  f.limit = journal::kMaxQueryLimit;
  std::vector<std::string> ids;
  json::array direct;
  for (auto& x : rd.query(f).entries) {
    if (!x.session_id.empty() && std::find(ids.begin(), ids.end(), x.session_id) == ids.end()) ids.push_back(x.session_id);
    if (x.session_id.empty()) direct.emplace_back(journal::to_json_object(x));
  }
  json::array sessions;
  for (auto& id : ids) {
    journal::filter sf;
    sf.session_id = id;
    sf.limit = journal::kMaxQueryLimit;
    json::array entries;
    std::string machine;
    for (auto& x : rd.query(sf).entries) {
      if (machine.empty()) machine = x.machine;
      entries.emplace_back(journal::to_json_object(x));
    }
    sessions.emplace_back(json::object{{"id", id}, {"machine", machine}, {"entries", std::move(entries)}});
  }
  auto answer = ok_json(200, json::object{{"pmr", pmr}, {"sessions", std::move(sessions)}, {"other_entries", std::move(direct)}});
  answer_after(journal_, std::move(e), std::move(answer), done);
}

void service::journal_query(const principal& p, const http_request& req, const api::reply& done) {
  query_params q(req.target,
                 {"pmr", "session", "actor", "subject", "machine", "kind", "outcome", "since", "until", "limit", "cursor"});
  if (p.user_role != role::auditor) return done(json_error(403, "forbidden", "the journal is for auditors"));
  auto f = journal_filter(q, clock_.now());
  auto asked = as_object(q);
  auto e = base_entry("audit.query", p, req);
  e.detail = json::serialize(json::object{{"endpoint", "journal"}, {"query", std::move(asked)}});
  auto& rd = journal_reader();
  auto page = rd.query(f);
  json::array out;
  for (auto& x : page.entries) out.emplace_back(journal::to_json_object(x));
  auto answer = ok_json(200, json::object{{"entries", std::move(out)},
                                          {"next_cursor", page.next ? json::value(page.next->encode()) : json::value(nullptr)}});
  answer_after(journal_, std::move(e), std::move(answer), done);
}

// GET /journal/export: the entries the filters select, oldest first, as JSON lines or RFC 4180
// CSV (the same rows `rsgate journal export` writes), at most 10,000 per request so that an
// answer stays bounded in memory; X-Next-Cursor names where the next request continues.
void service::journal_export(const principal& p, const http_request& req, const api::reply& done) {
  query_params q(req.target, {"format", "pmr", "session", "actor", "subject", "machine", "kind", "outcome", "since",
                              "until", "limit", "cursor"});
  if (p.user_role != role::auditor) return done(json_error(403, "forbidden", "the journal is for auditors"));
  const auto format = q.get("format");
  if (!format || (*format != "csv" && *format != "jsonl")) throw bad_input("format must be csv or jsonl");
  auto f = journal_filter(q, clock_.now(), kMaxExportEntries, kMaxExportEntries);
  auto asked = as_object(q);
  auto e = base_entry("audit.query", p, req);
  e.detail = json::serialize(json::object{{"endpoint", "journal/export"}, {"query", std::move(asked)}});
  auto& rd = journal_reader();
  auto page = rd.query(f);
  http_response answer;
  const bool csv = *format == "csv";
  answer.content_type = csv ? "text/csv; charset=utf-8" : "application/x-ndjson";
  if (csv) answer.body = journal::csv_header() + "\r\n";
  // Bounded in bytes too (entries' details may be large): the page ends after the entry that
  // reaches kMaxExportBytes, and the cursor continues from there.
  std::size_t n = 0;
  std::optional<journal::cursor> next = page.next;
  for (auto& x : page.entries) {
    answer.body += csv ? journal::to_csv_row(x) + "\r\n" : journal::to_json_line(x) + "\n";
    ++n;
    if (answer.body.size() >= kMaxExportBytes && n < page.entries.size()) {
      next = journal::cursor{x.ts, x.seq, x.gateway};
      break;
    }
  }
  answer.headers.emplace_back("Content-Disposition",
                              fmt::format("attachment; filename=\"journal.{}\"", csv ? "csv" : "jsonl"));
  answer.headers.emplace_back("X-Entries", std::to_string(n));
  if (next) answer.headers.emplace_back("X-Next-Cursor", next->encode());
  answer_after(journal_, std::move(e), std::move(answer), done);
}

void service::journal_verify(const principal& p, const http_request& req, const api::reply& done) {
  query_params(req.target, {});
  if (p.user_role != role::auditor) return done(json_error(403, "forbidden", "the journal is for auditors"));
  auto e = base_entry("audit.query", p, req);
  e.detail = R"({"endpoint":"journal/verify"})";
  auto& rd = journal_reader();
  auto res = journal::verify(rd.db(0), journal_.key().pub());
  auto answer = ok_json(200, json::object{{"ok", res.ok}, {"entries", res.entries}, {"head_seq", res.head_seq},
                                          {"head_hash", res.head_hash}, {"signed_through", res.signed_through},
                                          {"first_bad_seq", res.first_bad_seq}, {"problem", res.problem}});
  answer_after(journal_, std::move(e), std::move(answer), done);
}

}  // namespace rsgate::gateway
