// See reader.hpp. Queries are built from a fixed set of clauses with bound parameters only;
// no caller text is ever spliced into SQL.
#include "journal/reader.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <boost/json/parse.hpp>
#include <charconv>

#include "journal/store.hpp"

namespace rsgate::journal {
namespace {

bool parse_i64(std::string_view s, std::int64_t& out) {
  if (s.empty() || s.size() > 20) return false;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
  return ec == std::errc{} && p == s.data() + s.size();
}

struct built_query {
  std::string sql;
  std::vector<std::string> texts;  // bound in order after ints
  std::vector<std::pair<int, std::int64_t>> ints;
  std::vector<std::pair<int, std::string>> strs;
};

// WHERE clause and binds for filter `f` (without pagination unless with_cursor).
built_query build_where(const filter& f, bool with_cursor) {
  built_query q;
  std::vector<std::string> terms;
  int n = 0;
  auto text_term = [&](const char* col, const std::optional<std::string>& v, bool partial) {
    if (!v) return;
    ++n;
    terms.push_back(fmt::format("{} = ?{}", col, n));
    // Partial indexes (WHERE col <> '') are only used when the query implies the condition.
    if (partial) terms.push_back(fmt::format("{} <> ''", col));
    q.strs.emplace_back(n, *v);
  };
  text_term("pmr", f.pmr, true);
  text_term("session_id", f.session_id, true);
  text_term("actor", f.actor, true);
  text_term("machine", f.machine, true);
  text_term("kind", f.kind, false);
  text_term("secret_hmac", f.secret_hmac, true);
  text_term("subject", f.subject, true);  // callers skip files without the column
  // Literal, as the partial index journal_by_pmr_access says it, so that the planner uses it.
  if (f.exclude_audit) terms.push_back("kind <> 'audit.query'");
  if (f.result) {
    ++n;
    terms.push_back(fmt::format("outcome = ?{}", n));
    q.strs.emplace_back(n, std::string(to_string(*f.result)));
  }
  if (f.since) {
    ++n;
    terms.push_back(fmt::format("ts >= ?{}", n));
    q.ints.emplace_back(n, *f.since);
  }
  if (f.until) {
    ++n;
    terms.push_back(fmt::format("ts < ?{}", n));
    q.ints.emplace_back(n, *f.until);
  }
  if (with_cursor && f.after) {
    int t = ++n, g = ++n, s = ++n;
    q.ints.emplace_back(t, f.after->ts);
    q.strs.emplace_back(g, f.after->gateway);
    q.ints.emplace_back(s, f.after->seq);
    const char* op = f.descending ? "<" : ">";
    terms.push_back(fmt::format("ts {}= ?{}", op, t));
    terms.push_back(fmt::format(
        "(ts {0} ?{1} OR (ts = ?{1} AND (gateway {0} ?{2} OR (gateway = ?{2} AND seq {0} ?{3}))))",
        op, t, g, s));
  }
  if (!terms.empty()) {
    q.sql = " WHERE ";
    for (size_t i = 0; i < terms.size(); ++i) q.sql += (i ? " AND " : "") + terms[i];
  }
  return q;
}

void bind_all(sqlite::stmt& s, const built_query& q) {
  for (auto& [i, v] : q.ints) s.bind(i, v);
  for (auto& [i, v] : q.strs) s.bind(i, v);
}

bool before(const entry& a, const entry& b, bool descending) {
  auto ka = std::tie(a.ts, a.gateway, a.seq);
  auto kb = std::tie(b.ts, b.gateway, b.seq);
  return descending ? kb < ka : ka < kb;
}

}  // namespace

std::string cursor::encode() const {
  return fmt::format("{}.{}.{}", ts, seq, to_hex(as_bytes(gateway)));
}

std::optional<cursor> cursor::decode(std::string_view text) {
  if (text.size() > 600) return std::nullopt;
  auto d1 = text.find('.');
  if (d1 == std::string_view::npos) return std::nullopt;
  auto d2 = text.find('.', d1 + 1);
  if (d2 == std::string_view::npos) return std::nullopt;
  cursor c;
  if (!parse_i64(text.substr(0, d1), c.ts) || !parse_i64(text.substr(d1 + 1, d2 - d1 - 1), c.seq))
    return std::nullopt;
  if (c.ts < 0 || c.seq < 0) return std::nullopt;
  auto g = from_hex(text.substr(d2 + 1));
  if (!g || g->size() > kMaxFieldBytes) return std::nullopt;
  c.gateway.assign(g->begin(), g->end());
  return c;
}

entry entry_from_row(const sqlite::stmt& s) {
  entry e;
  e.seq = s.col_int(0);
  e.ts = s.col_int(1);
  e.gateway = s.col_text(2);
  e.kind = s.col_text(3);
  e.actor = s.col_text(4);
  e.source = s.col_text(5);
  e.session_id = s.col_text(6);
  e.pmr = s.col_text(7);
  e.machine = s.col_text(8);
  e.access_type = s.col_text(9);
  e.scope = s.col_text(10);
  e.result = parse_outcome(s.col_text(11)).value_or(outcome::error);
  e.secret_hmac = s.col_text(12);
  e.detail = s.col_text(13);
  e.prev_hash = s.col_text(14);
  e.hash = s.col_text(15);
  e.subject = s.col_text(16);
  return e;
}

reader::reader(const std::vector<std::filesystem::path>& files, bool for_verify) : paths_(files) {
  for (auto& p : files) {
    dbs_.push_back(open_for_reading(p, for_verify));
    auto& d = dbs_.back();
    bool readable = d.table_exists("journal");
    columns_.push_back(readable ? entry_columns(d) : std::string(kEntryColumns));
    has_subject_.push_back(readable && has_column(d, "journal", "subject"));
  }
  statements_.resize(dbs_.size());
}

page reader::query(const filter& f) {
  const std::size_t limit = std::clamp<std::size_t>(f.limit, 1, kMaxQueryLimit);
  auto where = build_where(f, true);
  const char* dir = f.descending ? "DESC" : "ASC";
  // Each file yields at most limit+1 rows in order; merging and cutting at `limit` gives the
  // page, and the (limit+1)th tells whether another page exists.
  std::vector<entry> all;
  for (std::size_t i = 0; i < dbs_.size(); ++i) {
    if (f.subject && !has_subject_[i]) continue;  // written before subjects existed
    auto sql = fmt::format("SELECT {} FROM journal{} ORDER BY ts {}, gateway {}, seq {} LIMIT {}", columns_[i],
                           where.sql, dir, dir, dir, limit + 1);
    auto& cache = statements_[i];
    auto it = cache.find(sql);
    if (it == cache.end()) {
      if (cache.size() >= kStatementCache) cache.clear();
      it = cache.emplace(sql, dbs_[i].prepare(sql)).first;
    }
    auto& s = it->second;
    s.reset();  // and its bindings
    bind_all(s, where);
    while (s.step()) all.push_back(entry_from_row(s));
    s.reset();  // no read transaction stays open between queries
  }
  std::stable_sort(all.begin(), all.end(),
                   [&](const entry& a, const entry& b) { return before(a, b, f.descending); });
  page p;
  if (all.size() > limit) {
    all.resize(limit);
    const auto& last = all.back();
    p.next = cursor{last.ts, last.seq, last.gateway};
  }
  p.entries = std::move(all);
  return p;
}

std::int64_t reader::count(const filter& f) {
  auto where = build_where(f, false);
  auto sql = fmt::format("SELECT count(*) FROM journal{}", where.sql);
  std::int64_t total = 0;
  for (std::size_t i = 0; i < dbs_.size(); ++i) {
    if (f.subject && !has_subject_[i]) continue;
    auto s = dbs_[i].prepare(sql);
    bind_all(s, where);
    if (s.step()) total += s.col_int(0);
  }
  return total;
}

std::vector<entry> reader::since_seq(std::size_t file, std::int64_t after_seq, std::size_t limit) {
  auto s = dbs_.at(file).prepare(
      fmt::format("SELECT {} FROM journal WHERE seq > ?1 ORDER BY seq LIMIT ?2", columns_.at(file)));
  s.bind(1, after_seq).bind(2, static_cast<std::int64_t>(limit));
  std::vector<entry> out;
  while (s.step()) out.push_back(entry_from_row(s));
  return out;
}

std::vector<entry> reader::latest(std::size_t file, std::int64_t up_to_seq, std::size_t limit) {
  auto s = dbs_.at(file).prepare(fmt::format(
      "SELECT {} FROM journal WHERE seq <= ?1 ORDER BY seq DESC LIMIT ?2", columns_.at(file)));
  s.bind(1, up_to_seq).bind(2, static_cast<std::int64_t>(limit));
  std::vector<entry> out;
  while (s.step()) out.push_back(entry_from_row(s));
  return out;
}

namespace {

// The columns verification reads; `subject` may be missing (a file from before migration 0002).
constexpr std::string_view kVerifiedColumns[] = {
    "seq", "ts", "gateway", "kind", "actor", "source", "session_id", "pmr", "machine",
    "access_type", "scope", "outcome", "secret_hmac", "detail", "prev_hash", "hash"};

// Step 0 of docs/journal.md §10: a readable file of ours whose entry table was dropped or
// lost a column fails at seq 1 (exit 1), like any other tampering; "" when the table is whole.
std::string structure_problem(sqlite::db& d) {
  if (!d.table_exists("journal")) return "table journal is missing";
  for (auto col : kVerifiedColumns)
    if (!has_column(d, "journal", col)) return fmt::format("table journal has no column {}", col);
  return {};
}

// Checks 5.1-5.3 for a checkpoint entry; "" when it holds.
std::string checkpoint_problem(const entry& e, const std::string& prev,
                               const std::optional<public_key>& pk) {
  boost::system::error_code ec;
  auto v = boost::json::parse(e.detail, ec);
  const boost::json::object* o = (!ec && v.is_object()) ? &v.as_object() : nullptr;
  const boost::json::value* ts = o ? o->if_contains("through_seq") : nullptr;
  const boost::json::value* th = o ? o->if_contains("through_hash") : nullptr;
  const boost::json::value* sg = o ? o->if_contains("signature") : nullptr;
  if (!ts || !ts->is_int64() || !th || !th->is_string() || !sg || !sg->is_string())
    return "checkpoint detail is malformed";
  if (ts->as_int64() != e.seq - 1 || th->as_string() != prev)
    return "checkpoint does not name the entry before it";
  if (pk && !verify_signature(*pk, signed_statement(statement::checkpoint, e.gateway, e.seq - 1, prev),
                              std::string_view(sg->as_string())))
    return "checkpoint signature does not verify: the entries it covers were rewritten or it was "
           "not made with this key";
  return {};
}

struct signed_head {
  std::int64_t seq = 0;
  std::string hash, signature;
};

// The journal_head row, or nullopt when there is none. A dropped journal_head table, or one
// without the columns read here, counts as no row: the head is gone either way.
std::optional<signed_head> read_head(sqlite::db& d) {
  if (!d.table_exists("journal_head")) return std::nullopt;
  for (auto col : {"seq", "hash", "signature"})
    if (!has_column(d, "journal_head", col)) return std::nullopt;
  auto h = d.prepare("SELECT seq, hash, signature FROM journal_head WHERE id = 1");
  if (!h.step()) return std::nullopt;
  return signed_head{h.col_int(0), std::string(h.col_text(1)), std::string(h.col_text(2))};
}

// The gateway name an emptied journal's head is checked with: journal_meta's, taken as it
// is (verification judges the signature, not the name), or "".
std::string meta_name_as_stored(sqlite::db& d) {
  if (!d.table_exists("journal_meta")) return {};
  auto m = d.prepare("SELECT value FROM journal_meta WHERE key = 'gateway'");
  return m.step() ? std::string(m.col_text(0)) : std::string();
}

// Step 8: the signed head against the chain walked so far. Sets r.ok = false on failure.
void check_head(sqlite::db& d, const public_key& pk, std::string last_gateway, verify_result& r) {
  auto bad = [&](std::int64_t seq, std::string why) {
    r.ok = false;
    r.first_bad_seq = seq;
    r.problem = std::move(why);
  };
  auto head = read_head(d);
  if (!head) {
    if (r.entries > 0) bad(1, "the signed head is missing");
    return;  // a journal that never held an entry has no head yet
  }
  if (head->seq < 1 || head->hash.size() != 64 || !from_hex(head->hash))
    return bad(std::max<std::int64_t>(std::min(head->seq, r.head_seq), 0) + 1,
               "the signed head is malformed");
  // Every entry gone but the head says there were some: check it with the journal's name.
  if (r.entries == 0) last_gateway = meta_name_as_stored(d);
  if (!verify_signature(pk, signed_statement(statement::head, last_gateway, head->seq, head->hash),
                        head->signature))
    return bad(std::min(head->seq, r.head_seq) + 1,
               "the signed head's signature does not verify with this key");
  if (head->seq < r.head_seq)
    return bad(head->seq + 1,
               "entry was appended after the last signed head (not signed by the gateway)");
  if (head->seq > r.head_seq)
    return bad(r.head_seq + 1, fmt::format("entry missing: the signed head names seq {}", head->seq));
  if (head->hash != r.head_hash)
    return bad(head->seq, "the signed head's hash does not match this entry: the chain was rewritten");
  r.signed_through = head->seq;
}

}  // namespace

verify_result verify(sqlite::db& d, const std::optional<public_key>& pk) {
  verify_result r;
  r.signatures_checked = pk.has_value();
  r.head_hash = std::string(kGenesisHash);
  auto bad = [&](std::int64_t seq, std::string why) {
    r.ok = false;
    r.first_bad_seq = seq;
    r.problem = std::move(why);
    return r;
  };
  if (auto why = structure_problem(d); !why.empty()) return bad(1, why);
  auto s = d.prepare(fmt::format("SELECT {} FROM journal ORDER BY seq", entry_columns(d)));
  std::int64_t expected = 1;
  std::string prev(kGenesisHash);
  std::string last_gateway;
  while (s.step()) {
    entry e = entry_from_row(s);
    if (e.seq != expected)
      return bad(expected, fmt::format("entry missing (the next entry present is seq {})", e.seq));
    if (!parse_outcome(s.col_text(11))) return bad(e.seq, "outcome is not ok, denied or error");
    if (e.prev_hash != prev)
      return bad(e.seq, "prev_hash does not match the hash of the entry before it");
    std::string h;
    try {
      h = compute_hash(e);
    } catch (const std::exception&) {
      return bad(e.seq, "prev_hash is malformed");
    }
    if (h != e.hash) return bad(e.seq, "hash does not match the entry's content");
    if (e.kind == "journal.checkpoint") {
      if (auto why = checkpoint_problem(e, prev, pk); !why.empty()) return bad(e.seq, why);
      if (pk) r.signed_through = e.seq - 1;
      ++r.checkpoints;
    }
    prev = e.hash;
    last_gateway = e.gateway;
    r.head_seq = e.seq;
    r.head_hash = e.hash;
    ++r.entries;
    ++expected;
  }
  if (pk) check_head(d, *pk, last_gateway, r);
  return r;
}

}  // namespace rsgate::journal
