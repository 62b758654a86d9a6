// See journal_cli.hpp. Every flag is validated before any file is opened, and every failure
// becomes one line on stderr and an exit code; nothing here throws past run_journal_command.
#include "journal/tool/journal_cli.hpp"

#include <fmt/format.h>
#include <unistd.h>

#include <algorithm>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <boost/program_options.hpp>
#include <chrono>
#include <iostream>
#include <thread>

#include "auth/formats.hpp"
#include "auth/session_key.hpp"
#include "core/encoding.hpp"
#include "core/files.hpp"
#include "core/timefmt.hpp"
#include "journal/journal.hpp"
#include "journal/tool/format.hpp"
#include "protocol/receipt.hpp"

namespace po = boost::program_options;

namespace rsgate::journal {
namespace {

constexpr int kOk = 0, kFailed = 1, kUsage = 2;

struct usage_error : std::runtime_error {
  using std::runtime_error::runtime_error;
};

struct common {
  std::vector<std::string> dbs;
  std::string data;
  std::string gateway, token, ca;  // online: the gateway's API instead of files
  bool insecure = false;
};

online_get& online() {
  static online_get f;
  return f;
}

void add_common(po::options_description& d, common& c, bool online_too = false) {
  d.add_options()
      ("db", po::value(&c.dbs)->composing(), "journal database file (repeatable; merged by time)")
      ("data", po::value(&c.data), "data directory whose journal.db to use (default ./rsgate-dev)")
      ("help,h", "show this help");
  if (online_too)
    d.add_options()
        ("gateway", po::value(&c.gateway), "online: the gateway's API, https://HOST:PORT (an auditor's token)")
        ("token", po::value(&c.token), "online: bearer token, or - to read it from stdin")
        ("ca", po::value(&c.ca), "online: the CA certificate that signed the gateway's (dev: DATA/ca.pem)")
        ("insecure", po::bool_switch(&c.insecure), "online: do not check the gateway's certificate (development)");
}

// Online flags checked together; true when the command works online.
bool is_online(common& c) {
  if (c.gateway.empty()) {
    if (!c.token.empty() || !c.ca.empty() || c.insecure) throw usage_error("--token, --ca and --insecure go with --gateway");
    return false;
  }
  if (!c.dbs.empty() || !c.data.empty()) throw usage_error("--gateway reads the gateway's journal: no --db or --data");
  if (c.token == "-") std::getline(std::cin, c.token);
  if (c.token.empty() || c.token.size() > 256) throw usage_error("--gateway needs --token T (or --token - for stdin)");
  if (c.ca.empty() && !c.insecure) throw usage_error("--gateway needs --ca FILE (or --insecure for development)");
  if (!online()) throw usage_error("this program cannot reach a gateway");
  return true;
}


// GET `target` from the gateway; a refusal or a failure is thrown as what it is: the API's
// own message for a refusal (exit 1), the reason for no answer (exit 2).
struct online_refused : std::runtime_error {
  using std::runtime_error::runtime_error;
};
online_answer fetch_online(const common& c, const std::string& target) {
  auto a = online()(c.gateway, c.token, c.ca, c.insecure, target);
  if (a.status == 0) throw std::runtime_error(a.error);
  if (a.status != 200) {
    std::string msg = a.body.substr(0, 300);
    boost::system::error_code ec;
    auto v = boost::json::parse(a.body, ec);
    if (!ec && v.is_object() && v.as_object().contains("error"))
      msg = std::string(v.as_object()["error"].as_object()["message"].as_string());
    throw online_refused(fmt::format("the gateway refused ({}): {}", a.status, msg));
  }
  return a;
}

std::vector<std::filesystem::path> journal_files(const common& c) {
  std::vector<std::filesystem::path> out;
  for (auto& d : c.dbs) out.emplace_back(d);
  if (out.empty()) out.push_back(std::filesystem::path(c.data.empty() ? "rsgate-dev" : c.data) / "journal.db");
  return out;
}

struct parsed {
  po::variables_map vm;
  bool help = false;
};

parsed parse(const std::vector<std::string>& args, const po::options_description& d,
             const po::positional_options_description* pos = nullptr) {
  parsed p;
  std::vector<std::string> rest(args.begin() + 1, args.end());
  auto parser = po::command_line_parser(rest).options(d);
  po::positional_options_description none;
  parser.positional(pos ? *pos : none);
  po::store(parser.run(), p.vm);
  po::notify(p.vm);
  p.help = p.vm.count("help") > 0;
  return p;
}

micros parse_time_flag(const po::variables_map& vm, const char* name) {
  auto text = vm[name].as<std::string>();
  auto t = parse_time(text, system_clock::instance().now());
  if (!t)
    throw usage_error(fmt::format(
        "invalid --{} '{}': expected an RFC 3339 time (2026-11-27T10:00:00Z), a date "
        "(2026-11-27) or an age (90m, 2h, 7d)",
        name, text));
  return *t;
}

void time_flags(po::options_description& d) {
  d.add_options()
      ("since", po::value<std::string>(), "from this time on (RFC 3339, date, or age like 2h)")
      ("until", po::value<std::string>(), "before this time");
}

void apply_time_flags(const po::variables_map& vm, filter& f) {
  if (vm.count("since")) f.since = parse_time_flag(vm, "since");
  if (vm.count("until")) f.until = parse_time_flag(vm, "until");
  if (f.since && f.until && *f.until <= *f.since)
    throw usage_error("--until must be later than --since");
}

std::filesystem::path key_dir_for(const common& c, const std::vector<std::filesystem::path>& files) {
  if (!c.data.empty()) return std::filesystem::path(c.data) / "keys";
  auto parent = files.front().parent_path();
  return (parent.empty() ? std::filesystem::path(".") : parent) / "keys";
}

std::string read_secret_from_stdin() {
  std::string line;
  std::getline(std::cin, line);
  while (!line.empty() && (line.back() == '\r' || line.back() == '\n')) line.pop_back();
  return line;
}

// The filters of `query` from its flags (the time flags apart); bad values are usage errors.
filter query_filter(const po::variables_map& vm) {
  filter f;
  apply_time_flags(vm, f);
  if (vm.count("pmr")) {
    auto v = vm["pmr"].as<std::string>();
    if (!auth::is_valid_pmr(v)) throw usage_error(fmt::format("invalid --pmr '{}': {}", v, auth::kPmrForm));
    f.pmr = auth::normalize_pmr(v);
  }
  if (vm.count("machine")) {
    auto v = vm["machine"].as<std::string>();
    if (!auth::is_valid_machine(v))
      throw usage_error(fmt::format("invalid --machine '{}': {}", v, auth::kMachineForm));
    f.machine = auth::normalize_machine(v);
  }
  if (vm.count("kind")) {
    auto v = vm["kind"].as<std::string>();
    if (!is_known_kind(v))
      throw usage_error(fmt::format("unknown --kind '{}' (see docs/journal.md for the kinds)", v));
    f.kind = v;
  }
  if (vm.count("outcome")) {
    auto v = vm["outcome"].as<std::string>();
    auto o = parse_outcome(v);
    if (!o) throw usage_error(fmt::format("invalid --outcome '{}': expected ok, denied or error", v));
    f.result = o;
  }
  for (auto [name, field] : {std::pair{"session", &f.session_id}, std::pair{"actor", &f.actor},
                              std::pair{"subject", &f.subject}}) {
    if (!vm.count(name)) continue;
    auto v = vm[name].as<std::string>();
    if (v.empty() || v.size() > kMaxFieldBytes)
      throw usage_error(fmt::format("invalid --{}: must be 1 to 256 characters", name));
    *field = v;
  }
  auto limit = vm["limit"].as<long long>();
  if (limit < 1 || limit > static_cast<long long>(kMaxQueryLimit))
    throw usage_error(fmt::format("invalid --limit {}: must be 1 to {}", limit, kMaxQueryLimit));
  f.limit = static_cast<std::size_t>(limit);
  auto order = vm["order"].as<std::string>();
  if (order != "asc" && order != "desc")
    throw usage_error(fmt::format("invalid --order '{}': expected asc or desc", order));
  f.descending = order == "desc";
  if (vm.count("cursor")) {
    auto cur = cursor::decode(vm["cursor"].as<std::string>());
    if (!cur) throw usage_error("invalid --cursor: use the value printed by a previous query");
    f.after = cur;
  }
  return f;
}

output_format parse_format(const std::string& name) {
  if (name == "table") return output_format::table;
  if (name == "json") return output_format::json;
  if (name == "csv") return output_format::csv;
  throw usage_error(fmt::format("invalid --format '{}': expected table, json or csv", name));
}

void write_entries(std::ostream& out, const std::vector<entry>& entries, output_format f, bool several_files) {
  switch (f) {
    case output_format::table:
      write_table(out, entries, true, several_files);
      break;
    case output_format::json:
      for (auto& e : entries) out << to_json_line(e) << '\n';
      break;
    case output_format::csv:
      out << csv_header() << "\r\n";
      for (auto& e : entries) out << to_csv_row(e) << "\r\n";
      break;
  }
}

// The filters of `query` as the API's query string (GET /api/v1/journal, docs/api.md §6).
std::string online_query_string(const po::variables_map& vm) {
  std::string q;
  for (auto name : {"pmr", "session", "actor", "subject", "machine", "kind", "outcome", "since", "until", "cursor"})
    if (vm.count(name)) q += fmt::format("&{}={}", name, percent_encode(vm[name].as<std::string>()));
  return q;
}

int query_online(const common& c, const po::variables_map& vm, std::ostream& out, std::ostream& err) {
  if (vm.count("hash-of")) throw usage_error("--hash-of works on files only (the gateway never sends the HMAC key)");
  if (vm["order"].as<std::string>() != "asc") throw usage_error("--order desc works on files only");
  auto limit = vm["limit"].as<long long>();
  if (limit < 1 || limit > 1000) throw usage_error("online, --limit is 1 to 1000 per page; continue with --cursor");
  auto format = parse_format(vm["format"].as<std::string>());
  auto a = fetch_online(c, fmt::format("/api/v1/journal?limit={}{}", limit, online_query_string(vm)));
  auto v = boost::json::parse(a.body).as_object();
  std::vector<entry> entries;
  for (auto& x : v["entries"].as_array()) {
    if (format == output_format::json) out << boost::json::serialize(x) << '\n';
    else entries.push_back(from_json_object(x.as_object()));
  }
  if (format != output_format::json) write_entries(out, entries, format, false);
  if (v["next_cursor"].is_string())
    err << "more entries follow; next page: --cursor " << v["next_cursor"].as_string().c_str() << "\n";
  return kOk;
}

int cmd_query(const std::vector<std::string>& args, std::ostream& out, std::ostream& err) {
  common c;
  po::options_description d("rsgate journal query [options]");
  add_common(d, c, true);
  time_flags(d);
  d.add_options()
      ("pmr", po::value<std::string>(), "PMR number (12345,677,000 or TS012345678)")
      ("session", po::value<std::string>(), "session id")
      ("actor", po::value<std::string>(), "user, machine or component that acted")
      ("subject", po::value<std::string>(), "account the action was done to (admin.user)")
      ("machine", po::value<std::string>(), "machine TTTT-MMM*SSSSSSS")
      ("kind", po::value<std::string>(), "event kind, e.g. session.attach")
      ("outcome", po::value<std::string>(), "ok, denied or error")
      ("hash-of", po::value<std::string>(), "entries about this secret ('-' reads it from stdin)")
      ("limit", po::value<long long>()->default_value(1000), "at most this many entries (1-100000)")
      ("cursor", po::value<std::string>(), "continue after this position (printed on stderr)")
      ("order", po::value<std::string>()->default_value("asc"), "asc (oldest first) or desc")
      ("format", po::value<std::string>()->default_value("table"), "table, json or csv");
  auto p = parse(args, d);
  if (p.help) {
    out << d << "\n";
    return kOk;
  }
  auto& vm = p.vm;
  auto f = query_filter(vm);
  if (is_online(c)) return query_online(c, vm, out, err);
  auto format = parse_format(vm["format"].as<std::string>());
  auto files = journal_files(c);
  if (vm.count("hash-of")) {
    auto v = vm["hash-of"].as<std::string>();
    if (v == "-") v = read_secret_from_stdin();
    if (v.empty()) throw usage_error("--hash-of needs a value");
    // A session key is hashed in its canonical form, however the customer wrote it down.
    if (auto canonical = auth::normalize_session_key(v)) v = *canonical;
    auto key = hmac_key::load(key_dir_for(c, files) / "journal-hmac.key");
    f.secret_hmac = key.hash_of(v);
  }
  reader r(files);
  auto pg = r.query(f);
  write_entries(out, pg.entries, format, r.files() > 1);
  if (pg.next) err << "more entries follow; next page: --cursor " << pg.next->encode() << "\n";
  return kOk;
}

// A customer's receipt given with --anchor: the journal position it names (docs/journal.md §11).
struct anchor {
  std::string file;
  tunnel::receipt_body body;
};

// Reads each receipt; throws usage_error (exit 2) for a file that is not a readable receipt, or
// one that the key given with --pubkey did not sign.
std::vector<anchor> read_anchors(const std::vector<std::string>& files, const std::optional<public_key>& pk) {
  std::vector<anchor> out;
  for (auto& f : files) {
    std::string text, why;
    try {
      text = read_file(f, tunnel::kMaxReceiptFileBytes);
    } catch (const std::exception& e) {
      throw usage_error(e.what());
    }
    auto r = tunnel::parse_receipt_file(text, why);
    if (!r) throw usage_error(fmt::format("--anchor {}: {}", f, why));
    if (pk && !tunnel::verify_receipt(*r, *pk))
      throw usage_error(fmt::format("--anchor {}: not signed by the key given with --pubkey", f));
    auto b = tunnel::parse_receipt_body(r->receipt, why);
    if (!b) throw usage_error(fmt::format("--anchor {}: {}", f, why));
    out.push_back({f, std::move(*b)});
  }
  return out;
}

// The gateway a journal file belongs to: its newest entry's, else journal_meta's.
std::string gateway_of(sqlite::db& db) {
  try {
    auto st = db.prepare("SELECT gateway FROM journal ORDER BY seq DESC LIMIT 1");
    if (st.step()) return std::string(st.col_text(0));
    auto m = db.prepare("SELECT value FROM journal_meta WHERE key = 'gateway'");
    if (m.step()) return std::string(m.col_text(0));
  } catch (const std::exception&) {
  }
  return {};
}

// The first anchor of this file's gateway whose entry is gone or different: its seq and why;
// 0 when every one holds.
std::pair<std::int64_t, std::string> check_anchors(sqlite::db& db, const std::vector<const anchor*>& mine) {
  std::pair<std::int64_t, std::string> first{0, ""};
  for (auto* a : mine) {
    auto st = db.prepare("SELECT hash FROM journal WHERE seq = ?");
    st.bind(1, a->body.journal_seq);
    std::string why;
    if (!st.step())
      why = fmt::format("entry missing: receipt {} names seq {} with hash {} (the journal was cut or rolled back)",
                        a->file, a->body.journal_seq, a->body.journal_hash);
    else if (st.col_text(0) != a->body.journal_hash)
      why = fmt::format("the entry's hash is not the {} that receipt {} names", a->body.journal_hash, a->file);
    if (!why.empty() && (first.first == 0 || a->body.journal_seq < first.first)) first = {a->body.journal_seq, why};
  }
  return first;
}

// Online verify: the gateway checks its own journal (GET /api/v1/journal/verify) and says so.
// An auditor who must not trust the gateway verifies a copy of the file offline with --pubkey.
int verify_online(const common& c, bool offline_flags, std::ostream& out) {
  if (offline_flags) throw usage_error("--pubkey and --anchor check a journal file: use them offline (--db FILE)");
  auto a = fetch_online(c, "/api/v1/journal/verify");
  auto v = boost::json::parse(a.body).as_object();
  if (v["ok"].as_bool()) {
    out << fmt::format("{}: journal ok (checked by the gateway): {} entries, head seq {} hash {}, signed through seq {}\n",
                       c.gateway, v["entries"].as_int64(), v["head_seq"].as_int64(), v["head_hash"].as_string().c_str(),
                       v["signed_through"].as_int64());
    return kOk;
  }
  out << fmt::format("{}: journal NOT ok (checked by the gateway): first bad seq {}: {}\n", c.gateway,
                     v["first_bad_seq"].as_int64(), v["problem"].as_string().c_str());
  return kFailed;
}

int cmd_verify(const std::vector<std::string>& args, std::ostream& out, std::ostream& err) {
  common c;
  std::string pubkey_file;
  std::vector<std::string> anchor_files;
  po::options_description d("rsgate journal verify [options]");
  add_common(d, c, true);
  d.add_options()("pubkey", po::value(&pubkey_file),
                  "gateway public key file (from `rsgate journal pubkey`): also check signatures")(
      "anchor", po::value(&anchor_files)->multitoken(),
      "a customer's receipt (repeatable): the journal must still hold the entry it names, with its hash");
  auto p = parse(args, d);
  if (p.help) {
    out << d << "\n";
    return kOk;
  }
  if (is_online(c)) return verify_online(c, !pubkey_file.empty() || !anchor_files.empty(), out);
  std::optional<public_key> pk;
  if (!pubkey_file.empty()) {
    std::string text;
    try {
      text = read_file(pubkey_file, 4096);
    } catch (const std::exception& e) {
      throw usage_error(e.what());
    }
    pk = parse_public_key(text);
    if (!pk) throw usage_error(fmt::format("{}: not a public key (64 hex digits expected)", pubkey_file));
  }
  auto anchors = read_anchors(anchor_files, pk);
  auto files = journal_files(c);
  reader r(files, true);  // opens every file before verifying any; verify() judges damage
  std::vector<std::vector<const anchor*>> anchors_of(r.files());
  for (auto& a : anchors) {
    bool placed = false;
    for (std::size_t i = 0; i < r.files() && !placed; ++i)
      if (gateway_of(r.db(i)) == a.body.gateway) {
        anchors_of[i].push_back(&a);
        placed = true;
      }
    if (!placed)
      throw usage_error(fmt::format("--anchor {}: it names gateway {}, and no journal given is that gateway's", a.file,
                                    a.body.gateway));
  }
  int rc = kOk;
  for (std::size_t i = 0; i < r.files(); ++i) {
    auto res = verify(r.db(i), pk);
    std::string name = r.path(i).string();
    if (res.ok) {
      auto [seq, why] = check_anchors(r.db(i), anchors_of[i]);
      if (seq != 0) {
        res.ok = false;
        res.first_bad_seq = seq;
        res.problem = why;
      }
    }
    if (!res.ok) {
      err << fmt::format("{}: FAILED at seq {}: {}\n", name, res.first_bad_seq, res.problem);
      out << fmt::format("{}: FAILED at seq {}: {}\n", name, res.first_bad_seq, res.problem);
      rc = kFailed;
      continue;
    }
    out << fmt::format("{}: ok: {} entries, {} checkpoints, head seq {} hash {}", name, res.entries,
                       res.checkpoints, res.head_seq, res.head_hash);
    if (res.signatures_checked)
      out << fmt::format(", signatures verified through seq {}", res.signed_through);
    else
      out << " (chain only; give --pubkey to check signatures)";
    if (!anchors_of[i].empty())
      out << fmt::format("; {} receipt anchor(s) hold{}", anchors_of[i].size(),
                         pk ? "" : " (their signatures unchecked without --pubkey)");
    out << "\n";
  }
  return rc;
}

// Online export: the gateway's pages (at most 10,000 entries each) one after the other.
int export_online(const common& c, const filter& f, const std::string& format, std::ostream& out) {
  std::string base = "/api/v1/journal/export?format=" + format;
  // Absolute times, worked out once here: an age such as 2h must not move between pages.
  if (f.since) base += "&since=" + percent_encode(format_rfc3339(*f.since));
  if (f.until) base += "&until=" + percent_encode(format_rfc3339(*f.until));
  std::string cursor;
  for (bool first = true;; first = false) {
    auto a = fetch_online(c, base + (cursor.empty() ? "" : "&cursor=" + percent_encode(cursor)));
    std::string_view body = a.body;
    if (!first && format == "csv") body.remove_prefix(std::min(body.size(), body.find("\r\n") + 2));  // one header
    out << body;
    if (a.next_cursor.empty()) break;
    cursor = a.next_cursor;
  }
  out.flush();
  return out ? kOk : kUsage;
}

int cmd_export(const std::vector<std::string>& args, std::ostream& out, std::ostream&) {
  common c;
  po::options_description d("rsgate journal export --format jsonl|csv [options]");
  add_common(d, c, true);
  time_flags(d);
  d.add_options()("format", po::value<std::string>(), "jsonl or csv (required)");
  auto p = parse(args, d);
  if (p.help) {
    out << d << "\n";
    return kOk;
  }
  auto& vm = p.vm;
  if (!vm.count("format")) throw usage_error("export needs --format jsonl or --format csv");
  auto fmt_name = vm["format"].as<std::string>();
  if (fmt_name != "jsonl" && fmt_name != "csv")
    throw usage_error(fmt::format("invalid --format '{}': expected jsonl or csv", fmt_name));
  filter f;
  apply_time_flags(vm, f);
  if (is_online(c)) return export_online(c, f, fmt_name, out);
  f.limit = 10000;
  reader r(journal_files(c));
  if (fmt_name == "csv") out << csv_header() << "\r\n";
  for (;;) {
    auto pg = r.query(f);
    for (auto& e : pg.entries) {
      if (fmt_name == "csv")
        out << to_csv_row(e) << "\r\n";
      else
        out << to_json_line(e) << '\n';
    }
    if (!pg.next) break;
    f.after = pg.next;
  }
  out.flush();
  return out ? kOk : kUsage;
}

// The last `n` entries over every file, newest first cut, printed oldest first. `last` gets
// where each file ends now, read before the page, so an entry appended in between is printed
// by the follow loop rather than lost.
std::vector<entry> tail_page(reader& r, std::size_t n, std::vector<std::int64_t>& last) {
  for (std::size_t i = 0; i < r.files(); ++i) last[i] = read_chain_tail(r.db(i)).seq;
  std::vector<entry> page;
  if (n == 0) return page;
  for (std::size_t i = 0; i < r.files(); ++i)
    for (auto& e : r.latest(i, last[i], n)) page.push_back(std::move(e));
  std::stable_sort(page.begin(), page.end(), [](const entry& a, const entry& b) {
    return std::tie(a.ts, a.gateway, a.seq) > std::tie(b.ts, b.gateway, b.seq);
  });
  if (page.size() > n) page.resize(n);
  return page;
}

// Entries appended after `last` in every file (at most 10000 each); `last` moves on.
std::vector<entry> tail_fresh(reader& r, std::vector<std::int64_t>& last) {
  std::vector<entry> fresh;
  for (std::size_t i = 0; i < r.files(); ++i) {
    auto es = r.since_seq(i, last[i], 10000);
    if (!es.empty()) last[i] = es.back().seq;
    for (auto& e : es) fresh.push_back(std::move(e));
  }
  return fresh;
}

int cmd_tail(const std::vector<std::string>& args, std::ostream& out, std::ostream&) {
  common c;
  po::options_description d("rsgate journal tail [-f] [-n N] [options]");
  add_common(d, c);
  d.add_options()
      ("follow,f", "keep printing new entries as they are appended")
      ("lines,n", po::value<long long>()->default_value(10), "how many of the last entries (0-10000)")
      ("format", po::value<std::string>()->default_value("table"), "table or json")
      ("interval", po::value<long long>()->default_value(500), "poll interval with -f, milliseconds");
  auto p = parse(args, d);
  if (p.help) {
    out << d << "\n";
    return kOk;
  }
  auto& vm = p.vm;
  auto n = vm["lines"].as<long long>();
  if (n < 0 || n > 10000) throw usage_error("invalid -n: must be 0 to 10000");
  auto fmt_name = vm["format"].as<std::string>();
  if (fmt_name != "table" && fmt_name != "json")
    throw usage_error(fmt::format("invalid --format '{}': expected table or json", fmt_name));
  auto interval = vm["interval"].as<long long>();
  if (interval < 10 || interval > 60000) throw usage_error("invalid --interval: must be 10 to 60000 ms");
  bool json = fmt_name == "json";
  reader r(journal_files(c));
  std::vector<std::int64_t> last(r.files(), 0);
  auto emit = [&](std::vector<entry> es, bool header) {
    std::stable_sort(es.begin(), es.end(), [](const entry& a, const entry& b) {
      return std::tie(a.ts, a.gateway, a.seq) < std::tie(b.ts, b.gateway, b.seq);
    });
    if (json)
      for (auto& e : es) out << to_json_line(e) << '\n';
    else if (!es.empty() || header)
      write_table(out, es, header, r.files() > 1);
    out.flush();
  };
  emit(tail_page(r, static_cast<std::size_t>(n), last), true);
  if (!vm.count("follow")) return kOk;
  for (;;) {  // the journal is another process's file: polled at --interval
    std::this_thread::sleep_for(std::chrono::milliseconds(interval));
    emit(tail_fresh(r, last), false);
    if (!out) return kOk;  // reader went away (e.g. a closed pipe)
  }
}

int cmd_pubkey(const std::vector<std::string>& args, std::ostream& out, std::ostream&) {
  std::string data;
  po::options_description d("rsgate journal pubkey [--data DIR]");
  d.add_options()
      ("data", po::value(&data), "data directory (default ./rsgate-dev)")
      ("help,h", "show this help");
  auto p = parse(args, d);
  if (p.help) {
    out << d << "\n";
    return kOk;
  }
  // The public half only: an auditor's copy of keys/ need not hold the private key.
  auto file = std::filesystem::path(data.empty() ? "rsgate-dev" : data) / "keys" / "journal-signing.pub";
  std::string text;
  try {
    text = read_file(file, 4096);
  } catch (const std::exception& e) {
    throw usage_error(e.what());
  }
  auto pk = parse_public_key(text);
  if (!pk) throw usage_error(file.string() + " is not a public key file");
  out << format_public_key(*pk);
  return kOk;
}

constexpr std::string_view kUsageText =
    "usage: rsgate journal <command> [options]\n"
    "commands:\n"
    "  query    list entries matching filters (--pmr --session --actor --subject --machine\n"
    "           --kind --outcome --since --until --hash-of --limit --format table|json|csv)\n"
    "  verify   check the hash chain (and signatures with --pubkey, and the entries customers'\n"
    "           receipts name with --anchor FILE); exit 1 names the first bad seq\n"
    "  export   write every entry as --format jsonl or csv\n"
    "  tail     show the last entries; -f follows new ones\n"
    "  pubkey   print the gateway's journal public key\n"
    "Each takes --db FILE (repeatable) or --data DIR; query, verify and export also work online\n"
    "with --gateway https://HOST:PORT --token T --ca FILE (an auditor's token), before or after\n"
    "the command. `rsgate journal <command> --help`.\n";

int run_moved(const std::vector<std::string>& args, std::ostream& out, std::ostream& err) {
  const std::string& cmd = args[0];
  std::string prefix = "rsgate journal " + cmd + ": ";
  try {
    if (cmd == "query") return cmd_query(args, out, err);
    if (cmd == "verify") return cmd_verify(args, out, err);
    if (cmd == "export") return cmd_export(args, out, err);
    if (cmd == "tail") return cmd_tail(args, out, err);
    if (cmd == "pubkey") return cmd_pubkey(args, out, err);
    err << "rsgate journal: unknown command '" << cmd << "' (query, verify, export, tail, pubkey)\n";
    return kUsage;
  } catch (const po::error& e) {
    err << prefix << e.what() << "\n";
  } catch (const usage_error& e) {
    err << prefix << e.what() << "\n";
  } catch (const online_refused& e) {
    err << prefix << e.what() << "\n";
    return kFailed;
  } catch (const not_a_journal& e) {
    err << prefix << e.what() << "\n";
  } catch (const std::exception& e) {
    err << prefix << e.what() << "\n";
  }
  return kUsage;
}

}  // namespace

void set_online_get(online_get f) { online() = std::move(f); }

int run_journal_command(const std::vector<std::string>& args, std::ostream& out,
                        std::ostream& err) {
  if (args.empty() || args[0] == "--help" || args[0] == "-h" || args[0] == "help") {
    (args.empty() ? err : out) << kUsageText;
    return args.empty() ? kUsage : kOk;
  }
  // `rsgate journal --gateway URL --token T query …` (SPEC §3): flags before the command
  // belong to it.
  auto moved = args;
  if (moved[0].starts_with("--")) {
    auto it = std::find_if(moved.begin(), moved.end(), [](const std::string& a) {
      return a == "query" || a == "verify" || a == "export" || a == "tail" || a == "pubkey";
    });
    if (it != moved.end()) std::rotate(moved.begin(), it, it + 1);
  }
  return run_moved(moved, out, err);
}


}  // namespace rsgate::journal
