// journal_bench: how fast the journal appends durably, what that costs against bare SQLite,
// and how fast it answers queries and verifies. It measures, in one run:
//   1. appends/s and p50/p99 append latency through journal::writer, one transaction per
//      event versus group commit, with 1, 8 and 64 producer threads each appending
//      synchronously, on an empty journal and on one already holding --prefill entries;
//   2. a bare SQLite insert loop (sqlite3 C API, the journal's own schema, WAL and
//      synchronous=FULL) at 1, 8, 64 and 1024 rows per transaction on the same two starting
//      states: the ceiling the writer is compared with;
//   3. p50/p99 of journal::reader queries on the prefilled journal: the latest 50 entries of a
//      PMR, and counts over a one-hour and a one-day window;
//   4. journal::verify speed over the prefilled journal, with the public key.
// Every append measurement stops after --max-rows rows or --seconds, whichever comes first,
// and records the disk's flush latency just before it and the bytes written per row, since
// those decide most figures. The prefilled journal is built once and the large-journal runs
// append to it in place (no 500 MB copies, whose writeback would disturb the runs), so it grows
// during that phase; each row reports the size it started from. It prints one report with a
// met / NOT met line per target. Run by hand (make bench), never by ctest; docs/performance.md
// records a run and explains the figures.
#include <fcntl.h>
#include <fmt/format.h>
#include <sqlite3.h>
#include <stdlib.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <latch>
#include <random>
#include <semaphore>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "core/clock.hpp"
#include "journal/journal.hpp"
#include "schema/schema.hpp"

namespace {

namespace fs = std::filesystem;
namespace journal = rsgate::journal;
using steady = std::chrono::steady_clock;
using rsgate::micros;

// Prefilled entries are 2.6 s of journal time apart, so 1,000,000 entries span about 30 days
// and hour and day windows select realistic slices.
constexpr micros kSpacing = 2'600'000;
constexpr micros kHour = 3'600'000'000;
constexpr micros kDay = 24 * kHour;
constexpr int kPmrs = 1000;
constexpr int kActors = 200;
// Appends in flight while prefilling (callback API): enough for large batches, small enough
// that one batch spans minutes, not hours, of journal time (the writer stamps a batch once).
constexpr std::ptrdiff_t kPrefillWindow = 256;
constexpr std::array<std::size_t, 3> kProducers{1, 8, 64};
constexpr std::array<std::size_t, 4> kBatches{1, 8, 64, 1024};

struct options {
  fs::path dir;
  bool remove_dir = false;
  std::int64_t prefill = 1'000'000;
  double seconds = 10;
  std::int64_t max_rows = 100'000;
  int queries = 1000;
  double settle = 60;
  int rounds = 3;
};

double seconds_since(steady::time_point t0, steady::time_point t1 = steady::now()) {
  return std::chrono::duration<double>(t1 - t0).count();
}

double micros_between(steady::time_point t0, steady::time_point t1) {
  return std::chrono::duration<double, std::micro>(t1 - t0).count();
}

// Nearest-rank percentile; `q` in (0, 1].
double percentile(std::vector<double> v, double q) {
  if (v.empty()) return 0;
  auto rank = static_cast<std::size_t>(std::ceil(q * static_cast<double>(v.size())));
  auto idx = std::clamp<std::size_t>(rank, 1, v.size()) - 1;
  std::nth_element(v.begin(), v.begin() + static_cast<std::ptrdiff_t>(idx), v.end());
  return v[idx];
}

std::string load_average() {
  std::ifstream in("/proc/loadavg");
  std::string a, b, c;
  in >> a >> b >> c;
  return in ? fmt::format("{} {} {}", a, b, c) : std::string("?");
}

// Bytes this process has handed to write()/pwrite() so far (/proc/self/io "wchar"): what SQLite
// writes to the WAL and, at checkpoints, to the database file.
std::uint64_t bytes_written() {
  std::ifstream in("/proc/self/io");
  std::string key;
  std::uint64_t value = 0;
  while (in >> key >> value)
    if (key == "wchar:") return value;
  return 0;
}

std::string pmr_of(int i) { return fmt::format("{:05},{:03},000", 10000 + i * 89, 600 + i % 100); }
std::string machine_of(int i) { return fmt::format("9009-42A*78{:05}", 1000 + i * 7); }

// Deterministic, realistic entries: the kinds a support session produces, ~1000 PMRs (each
// with its machine), 200 actors, a detail object of about 100 bytes. tunnel.auth belongs to
// the machine's tunnel, not to a session, so it carries no PMR or session id.
class entry_source {
 public:
  explicit entry_source(std::uint64_t seed) : rng_(seed) {}

  journal::entry next() {
    static constexpr std::string_view kinds[] = {"session.attach", "channel.open",
                                                 "channel.close", "tunnel.auth"};
    const int kind = pick(4);
    const int p = pick(kPmrs);
    journal::entry e;
    e.kind = kinds[kind];
    e.actor = fmt::format("ce{:04}@support.example.com", pick(kActors));
    e.source = "203.0.113.7:51234";
    e.machine = machine_of(p);
    if (kind != 3) {
      e.pmr = pmr_of(p);
      e.session_id = fmt::format("{:016x}", rng_());
      e.access_type = kind == 0 ? "console" : "ssh";
      e.scope = fmt::format("LP{:02}", pick(16));
    }
    switch (kind) {
      case 0:
        e.detail = fmt::format(
            R"({{"grant":"g-{:012x}","role":"engineer","client":"rsgate-console/0.1","mfa":"totp"}})",
            rng_() & 0xffffffffffffULL);
        break;
      case 1:
        e.detail = fmt::format(
            R"({{"channel":{},"target":"hmc:22","direction":"out","window":65536,"client":"rsgate-console/0.1"}})",
            pick(64));
        break;
      case 2:
        e.detail = fmt::format(
            R"({{"channel":{},"bytes_in":{},"bytes_out":{},"duration_ms":{},"reason":"closed by peer"}})",
            pick(64), pick(50'000'000), pick(5'000'000), pick(7'200'000));
        break;
      default:
        e.detail =
            R"({"agent":"rsgate-agent/0.1","method":"chap-sha256","tls":"TLSv1.3","cipher":"TLS_AES_256_GCM_SHA384"})";
        e.result = pick(50) == 0 ? journal::outcome::denied : journal::outcome::ok;
        break;
    }
    return e;
  }

  // 64 hex digits, shaped like a hash (the baseline stores these instead of computing them).
  std::string fake_hash() {
    return fmt::format("{:016x}{:016x}{:016x}{:016x}", rng_(), rng_(), rng_(), rng_());
  }

  int pick(int n) { return static_cast<int>(rng_() % static_cast<std::uint64_t>(n)); }

 private:
  std::mt19937_64 rng_;
};

// --- files ---------------------------------------------------------------------------------

void remove_database(const fs::path& p) {
  for (const char* suffix : {"", "-wal", "-shm", "-journal"}) fs::remove(p.string() + suffix);
}

// What one durable commit costs the disk right now: 4 KiB appended and fdatasync'ed, `ops`
// times (a WAL commit is such an append). Sampled before every measurement because the disk's
// flush latency moves with recent I/O on the machine (on the reference VM it jumps from 0.2 ms
// to a throttled 4-8 ms for a while after a few hundred MB were written), and with it every
// figure bound by commits per second.
struct disk_probe {
  std::string when;
  std::string load;  // /proc/loadavg: other work on the machine
  double p50_ms = 0;
  double p99_ms = 0;
};

disk_probe probe_disk(const fs::path& dir, std::string when, int ops = 200) {
  const fs::path file = dir / "fsync_probe";
  int fd = ::open(file.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) throw std::runtime_error("cannot create " + file.string());
  std::vector<char> block(4096, 'x');
  std::vector<double> lat;
  for (int i = 0; i < ops; ++i) {
    auto t0 = steady::now();
    bool ok = ::pwrite(fd, block.data(), block.size(), static_cast<off_t>(i) * 4096) ==
                  static_cast<ssize_t>(block.size()) &&
              ::fdatasync(fd) == 0;
    if (!ok) break;
    lat.push_back(micros_between(t0, steady::now()) / 1000);
  }
  ::close(fd);
  fs::remove(file);
  return {std::move(when), load_average(), percentile(lat, 0.50), percentile(lat, 0.99)};
}

// Waits (at most `max_seconds`) for the disk to flush quickly again after bulk writes, so that
// a phase does not start inside the writeback of the one before. Returns the seconds waited.
double settle_disk(const fs::path& dir, double max_seconds) {
  const auto start = steady::now();
  while (seconds_since(start) < max_seconds) {
    if (probe_disk(dir, "settle", 50).p50_ms < 1.0) break;
    std::this_thread::sleep_for(std::chrono::seconds(5));
  }
  return seconds_since(start);
}

// --- appends through the writer ------------------------------------------------------------

// How long one timed run may last: whichever bound comes first.
struct bound {
  std::int64_t max_rows = 0;
  double seconds = 0;
};

// Rates over rounds: the median, and the spread that says how much the disk moved meanwhile.
struct rate_spread {
  double median = 0;
  double min = 0;
  double max = 0;
};

rate_spread spread_of(std::vector<double> rates) {
  if (rates.empty()) return {};
  std::sort(rates.begin(), rates.end());
  const auto n = rates.size();
  const double median = n % 2 ? rates[n / 2] : (rates[n / 2 - 1] + rates[n / 2]) / 2;
  return {median, rates.front(), rates.back()};
}

// One timed run of the writer.
struct append_round {
  std::int64_t start_rows = 0;
  double fsync_ms = 0;      // the disk's flush latency (p50) just before
  std::uint64_t bytes = 0;  // written to the WAL and database during the run
  std::uint64_t failed = 0;
  std::uint64_t appended = 0;
  std::uint64_t batches = 0;
  double seconds = 0;
  std::vector<double> latencies_us;
  [[nodiscard]] double rate() const {
    return seconds > 0 ? static_cast<double>(latencies_us.size()) / seconds : 0;
  }
};

// One writer configuration over all its rounds.
struct append_figures {
  bool group = false;
  std::size_t producers = 0;
  std::size_t rounds = 0;
  std::int64_t start_rows = 0;  // at the first round
  std::uint64_t rows = 0;
  std::uint64_t failed = 0;
  std::uint64_t bytes = 0;
  double seconds = 0;
  rate_spread rates;
  double p50_us = 0;  // over every append of every round
  double p99_us = 0;
  double mean_batch = 0;
  double fsync_ms = 0;  // the worst of the rounds' probes
  [[nodiscard]] double rate() const { return rates.median; }
};

append_figures combine(bool group, std::size_t producers, const std::vector<append_round>& rounds) {
  append_figures f;
  f.group = group;
  f.producers = producers;
  f.rounds = rounds.size();
  f.start_rows = rounds.empty() ? 0 : rounds.front().start_rows;
  std::vector<double> all, rates;
  std::uint64_t appended = 0, batches = 0;
  for (auto& r : rounds) {
    all.insert(all.end(), r.latencies_us.begin(), r.latencies_us.end());
    rates.push_back(r.rate());
    f.failed += r.failed;
    f.bytes += r.bytes;
    f.seconds += r.seconds;
    f.fsync_ms = std::max(f.fsync_ms, r.fsync_ms);
    appended += r.appended;
    batches += r.batches;
  }
  f.rows = all.size();
  f.rates = spread_of(rates);
  f.p50_us = percentile(all, 0.50);
  f.p99_us = percentile(all, 0.99);
  f.mean_batch = batches ? static_cast<double>(appended) / static_cast<double>(batches) : 0;
  return f;
}

// `producers` threads each append one entry and wait for it (std::future), in a loop, until
// `max_rows` appends were claimed in total or `seconds` passed. Latency is append() to get().
append_round measure_appends(const fs::path& db, const journal::signing_key& key, bool group,
                             std::size_t producers, const bound& limit) {
  journal::writer_options wo;
  wo.group_commit = group;
  wo.probe_every = 0;
  journal::writer w(db, key, wo);
  const auto start_rows = w.stats().last_seq;

  std::atomic<std::int64_t> claimed{0};
  std::atomic<bool> stop{false};
  std::atomic<std::size_t> finished{0};
  std::atomic<std::uint64_t> failed{0};
  std::vector<std::vector<double>> latencies(producers);
  std::vector<steady::time_point> ended(producers);
  std::latch ready(static_cast<std::ptrdiff_t>(producers));
  std::latch go(1);
  std::vector<std::thread> threads;
  for (std::size_t i = 0; i < producers; ++i) {
    threads.emplace_back([&, i] {
      entry_source src(1000 + i);
      auto& lat = latencies[i];
      lat.reserve(static_cast<std::size_t>(limit.max_rows) / producers + 16);
      ready.count_down();
      go.wait();
      while (!stop.load(std::memory_order_relaxed) && claimed.fetch_add(1) < limit.max_rows) {
        auto e = src.next();
        auto t0 = steady::now();
        auto r = w.append(std::move(e)).get();
        auto t1 = steady::now();
        if (r.ok())
          lat.push_back(micros_between(t0, t1));
        else
          failed.fetch_add(1);
      }
      ended[i] = steady::now();
      finished.fetch_add(1);
    });
  }
  ready.wait();
  const auto bytes_before = bytes_written();
  const auto start = steady::now();
  const auto deadline = start + std::chrono::duration<double>(limit.seconds);
  go.count_down();
  while (finished.load() < producers && steady::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  stop = true;
  for (auto& t : threads) t.join();
  const auto stats = w.stats();
  const auto bytes = bytes_written() - bytes_before;
  w.close();

  append_round r;
  r.start_rows = start_rows;
  r.bytes = bytes;
  r.seconds = seconds_since(start, *std::max_element(ended.begin(), ended.end()));
  for (auto& l : latencies) r.latencies_us.insert(r.latencies_us.end(), l.begin(), l.end());
  r.failed = failed.load();
  r.appended = stats.appended;
  r.batches = stats.batches;
  return r;
}

// --- the bare SQLite baseline --------------------------------------------------------------

// The baseline talks to SQLite through its C API only, so it measures SQLite alone.
class bare_db {
 public:
  explicit bare_db(const fs::path& p) {
    int rc = sqlite3_open_v2(p.c_str(), &h_,
                             SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, nullptr);
    if (rc != SQLITE_OK) {
      std::string msg = h_ ? sqlite3_errmsg(h_) : sqlite3_errstr(rc);
      sqlite3_close_v2(h_);
      throw std::runtime_error("cannot open " + p.string() + ": " + msg);
    }
  }
  ~bare_db() {
    sqlite3_finalize(insert_);
    sqlite3_close_v2(h_);
  }
  bare_db(const bare_db&) = delete;
  bare_db& operator=(const bare_db&) = delete;

  void exec(const std::string& sql) {
    char* msg = nullptr;
    if (sqlite3_exec(h_, sql.c_str(), nullptr, nullptr, &msg) != SQLITE_OK) {
      std::string m = msg ? msg : sqlite3_errmsg(h_);
      sqlite3_free(msg);
      throw std::runtime_error("sqlite: " + m);
    }
  }
  std::int64_t max_seq() {
    sqlite3_stmt* s = nullptr;
    check(sqlite3_prepare_v2(h_, "SELECT coalesce(max(seq), 0) FROM journal", -1, &s, nullptr));
    std::int64_t v = sqlite3_step(s) == SQLITE_ROW ? sqlite3_column_int64(s, 0) : 0;
    sqlite3_finalize(s);
    return v;
  }
  // The writer's INSERT, column for column.
  void insert(const journal::entry& e) {
    if (!insert_)
      check(sqlite3_prepare_v3(
          h_,
          "INSERT INTO journal(seq, ts, gateway, kind, actor, source, session_id, pmr, machine, "
          "access_type, scope, outcome, secret_hmac, detail, prev_hash, hash) "
          "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16)",
          -1, SQLITE_PREPARE_PERSISTENT, &insert_, nullptr));
    sqlite3_bind_int64(insert_, 1, e.seq);
    sqlite3_bind_int64(insert_, 2, e.ts);
    const std::string_view texts[] = {e.gateway,     e.kind,  e.actor,
                                      e.source,      e.session_id,
                                      e.pmr,         e.machine,
                                      e.access_type, e.scope, journal::to_string(e.result),
                                      e.secret_hmac, e.detail, e.prev_hash,
                                      e.hash};
    int idx = 3;
    for (auto t : texts)
      sqlite3_bind_text(insert_, idx++, t.data(), static_cast<int>(t.size()), SQLITE_STATIC);
    int rc = sqlite3_step(insert_);
    sqlite3_reset(insert_);
    if (rc != SQLITE_DONE) check(rc);
  }

 private:
  void check(int rc) {
    if (rc != SQLITE_OK) throw std::runtime_error(std::string("sqlite: ") + sqlite3_errmsg(h_));
  }
  sqlite3* h_ = nullptr;
  sqlite3_stmt* insert_ = nullptr;
};

struct bare_round {
  std::int64_t start_rows = 0;
  double fsync_ms = 0;
  std::uint64_t bytes = 0;
  std::uint64_t rows = 0;
  double seconds = 0;
  std::vector<double> commit_us;  // each COMMIT: the WAL flush shows here
  [[nodiscard]] double rate() const { return seconds > 0 ? static_cast<double>(rows) / seconds : 0; }
};

struct bare_figures {
  std::size_t batch = 0;
  std::size_t rounds = 0;
  std::int64_t start_rows = 0;
  std::uint64_t rows = 0;
  std::uint64_t bytes = 0;
  double seconds = 0;
  rate_spread rates;
  double fsync_ms = 0;
  double commit_p50_us = 0;
  double commit_p99_us = 0;
  [[nodiscard]] double rate() const { return rates.median; }
};

bare_figures combine(std::size_t batch, const std::vector<bare_round>& rounds) {
  bare_figures f;
  f.batch = batch;
  f.rounds = rounds.size();
  f.start_rows = rounds.empty() ? 0 : rounds.front().start_rows;
  std::vector<double> rates, commits;
  for (auto& r : rounds) {
    rates.push_back(r.rate());
    commits.insert(commits.end(), r.commit_us.begin(), r.commit_us.end());
    f.rows += r.rows;
    f.bytes += r.bytes;
    f.seconds += r.seconds;
    f.fsync_ms = std::max(f.fsync_ms, r.fsync_ms);
  }
  f.rates = spread_of(rates);
  f.commit_p50_us = percentile(commits, 0.50);
  f.commit_p99_us = percentile(commits, 0.99);
  return f;
}

// One thread, prepared INSERT, `batch` rows per BEGIN IMMEDIATE … COMMIT, the same pragmas as
// journal::open_for_writing. Rows come from a pool generated beforehand, so the loop times
// SQLite only. A fresh file gets the journal schema from the embedded migrations.
bare_round measure_bare(const fs::path& db, std::size_t batch, bool create_schema,
                        const bound& limit) {
  bare_db d(db);
  d.exec("PRAGMA journal_mode = WAL");
  d.exec("PRAGMA synchronous = FULL");
  if (create_schema) {
    std::vector<rsgate::embedded_file> files(rsgate::schema::journal_migrations.begin(),
                                             rsgate::schema::journal_migrations.end());
    std::sort(files.begin(), files.end(), [](auto& a, auto& b) { return a.name < b.name; });
    d.exec("BEGIN IMMEDIATE");
    for (auto& f : files) d.exec(std::string(f.content));
    d.exec("COMMIT");
  }
  std::vector<journal::entry> pool(8192);
  entry_source src(77);
  for (auto& e : pool) {
    e = src.next();
    e.gateway = "gateway";
    e.prev_hash = src.fake_hash();
    e.hash = src.fake_hash();
  }
  std::int64_t seq = d.max_seq();
  std::size_t next = 0;
  std::uint64_t rows = 0;
  std::vector<double> commits;
  const auto bytes_before = bytes_written();
  const auto start = steady::now();
  const auto deadline = start + std::chrono::duration<double>(limit.seconds);
  while (rows < static_cast<std::uint64_t>(limit.max_rows) && steady::now() < deadline) {
    const micros ts = rsgate::system_clock::instance().now();
    d.exec("BEGIN IMMEDIATE");
    for (std::size_t i = 0; i < batch; ++i) {
      auto& e = pool[next++ % pool.size()];
      e.seq = ++seq;
      e.ts = ts;
      d.insert(e);
    }
    const auto c0 = steady::now();
    d.exec("COMMIT");
    commits.push_back(micros_between(c0, steady::now()));
    rows += batch;
  }
  bare_round r;
  r.seconds = seconds_since(start);
  r.bytes = bytes_written() - bytes_before;
  r.start_rows = seq - static_cast<std::int64_t>(rows);
  r.rows = rows;
  r.commit_us = std::move(commits);
  return r;
}

// --- prefill, queries, verification --------------------------------------------------------

struct prefill_figures {
  std::int64_t entries = 0;
  double seconds = 0;
  double mean_batch = 0;
  micros first_ts = 0;
  micros last_ts = 0;
  std::uintmax_t bytes = 0;     // size of the database file
  std::uint64_t written = 0;    // written to the WAL and database while prefilling
};

// Builds the large journal through the writer itself: one thread, callback API, a window of
// appends in flight, a manual clock advanced kSpacing per entry. Time-based checkpoints are
// off (60 s of journal time passes every 23 entries here); count-based ones stay (every 1000).
prefill_figures prefill(const fs::path& db, const journal::signing_key& key, std::int64_t n) {
  rsgate::manual_clock clk(rsgate::system_clock::instance().now() - n * kSpacing);
  journal::writer_options wo;
  wo.probe_every = 0;
  wo.checkpoint_every = 0;
  std::counting_semaphore<kPrefillWindow> window(kPrefillWindow);
  std::atomic<std::uint64_t> failed{0};
  prefill_figures f;
  const auto bytes_before = bytes_written();
  const auto start = steady::now();
  {
    journal::writer w(db, key, wo, clk);
    entry_source src(42);
    for (std::int64_t i = 0; i < n; ++i) {
      window.acquire();
      clk.advance(kSpacing);
      w.append(src.next(), [&](const journal::append_result& r) {
        if (!r.ok()) failed.fetch_add(1);
        window.release();
      });
      if (i % 100'000 == 99'999)
        fmt::print(stderr, "  prefill: {} entries, {:.0f} s\n", i + 1, seconds_since(start));
    }
    for (std::ptrdiff_t i = 0; i < kPrefillWindow; ++i) window.acquire();
    f.seconds = seconds_since(start);
    f.written = bytes_written() - bytes_before;
    auto st = w.stats();
    f.mean_batch = st.batches ? static_cast<double>(st.appended) / static_cast<double>(st.batches) : 0;
    w.close();
  }
  if (failed.load() > 0) throw std::runtime_error(fmt::format("prefill: {} appends failed", failed.load()));
  journal::reader r({db});
  f.entries = r.db(0).scalar_int("SELECT count(*) FROM journal");
  f.first_ts = r.db(0).scalar_int("SELECT min(ts) FROM journal");
  f.last_ts = r.db(0).scalar_int("SELECT max(ts) FROM journal");
  f.bytes = fs::file_size(db);
  return f;
}

struct query_figures {
  std::string name;
  int runs = 0;
  double p50_us = 0;
  double p99_us = 0;
  double max_us = 0;
  double mean_rows = 0;
};

query_figures summarize(std::string name, const std::vector<double>& lat, std::uint64_t rows) {
  query_figures q;
  q.name = std::move(name);
  q.runs = static_cast<int>(lat.size());
  q.p50_us = percentile(lat, 0.50);
  q.p99_us = percentile(lat, 0.99);
  q.max_us = lat.empty() ? 0 : *std::max_element(lat.begin(), lat.end());
  q.mean_rows = lat.empty() ? 0 : static_cast<double>(rows) / static_cast<double>(lat.size());
  return q;
}

// Each query `opt.queries` times through journal::reader, random PMRs and random windows.
std::vector<query_figures> measure_queries(const fs::path& db, const prefill_figures& pf,
                                           const options& opt) {
  journal::reader r({db});
  std::mt19937_64 rng(9);
  std::vector<query_figures> out;

  std::vector<double> lat;
  std::uint64_t rows = 0;
  for (int i = 0; i < opt.queries; ++i) {
    journal::filter f;
    f.pmr = pmr_of(static_cast<int>(rng() % kPmrs));
    f.descending = true;
    f.limit = 50;
    auto t0 = steady::now();
    auto page = r.query(f);
    lat.push_back(micros_between(t0, steady::now()));
    rows += page.entries.size();
  }
  out.push_back(summarize("PMR lookup, latest 50 (query)", lat, rows));

  for (auto [name, width] : {std::pair{"count, one-hour window", kHour},
                             std::pair{"count, one-day window", kDay}}) {
    lat.clear();
    rows = 0;
    const micros span = std::max<micros>(1, pf.last_ts - pf.first_ts - width);
    for (int i = 0; i < opt.queries; ++i) {
      journal::filter f;
      f.since = pf.first_ts + static_cast<micros>(rng() % static_cast<std::uint64_t>(span));
      f.until = *f.since + width;
      auto t0 = steady::now();
      auto n = r.count(f);
      lat.push_back(micros_between(t0, steady::now()));
      rows += static_cast<std::uint64_t>(n);
    }
    out.push_back(summarize(name, lat, rows));
  }
  return out;
}

struct verify_figures {
  std::int64_t entries = 0;
  std::int64_t checkpoints = 0;
  double seconds = 0;
  bool ok = false;
  [[nodiscard]] double rate() const { return seconds > 0 ? static_cast<double>(entries) / seconds : 0; }
};

verify_figures measure_verify(const fs::path& db, const journal::signing_key& key) {
  auto d = journal::open_for_reading(db);
  const auto start = steady::now();
  auto r = journal::verify(d, key.pub());
  verify_figures v;
  v.seconds = seconds_since(start);
  v.entries = r.entries;
  v.checkpoints = r.checkpoints;
  v.ok = r.ok && r.signed_through == r.head_seq;
  if (!r.ok) fmt::print(stderr, "verify failed at seq {}: {}\n", r.first_bad_seq, r.problem);
  return v;
}

// --- the run -------------------------------------------------------------------------------

struct state_figures {
  std::string name;  // "empty" or "large"
  std::vector<append_figures> appends;
  std::vector<bare_figures> bare;
};

// The standard bare batch size nearest to `batch` (on a log scale).
const bare_figures& nearest_bare(const state_figures& s, double batch) {
  const bare_figures* best = nullptr;
  double best_d = 0;
  for (auto& b : s.bare) {
    if (std::find(kBatches.begin(), kBatches.end(), b.batch) == kBatches.end()) continue;
    double d = std::abs(std::log2(std::max(batch, 1.0)) - std::log2(static_cast<double>(b.batch)));
    if (!best || d < best_d) {
      best = &b;
      best_d = d;
    }
  }
  return *best;
}

const bare_figures* exact_bare(const state_figures& s, std::size_t batch) {
  for (auto& b : s.bare)
    if (b.batch == batch) return &b;
  return nullptr;
}

const append_figures& find_appends(const state_figures& s, bool group, std::size_t producers) {
  for (auto& a : s.appends)
    if (a.group == group && a.producers == producers) return a;
  throw std::logic_error("missing measurement");
}

void note(steady::time_point t0, const std::string& what) {
  fmt::print(stderr, "[{:6.1f} s] {}\n", seconds_since(t0), what);
}

// One starting state. For 1, 8 and 64 producers, --rounds rounds of (writer one transaction
// per event, writer group commit, bare loop at the comparable batch size), interleaved so that
// every configuration sees the same disk weather; then rounds of the bare loop at the
// group-commit-64 run's own mean batch size and at 1024 rows. Each round gets 1/rounds of the
// bounds. With `fresh` every round starts from a new file; otherwise every round appends to
// `db` itself, which therefore grows during the phase (each row reports its starting size).
state_figures measure_state(const std::string& name, const fs::path& db, bool fresh,
                            const journal::signing_key& key, const options& opt,
                            steady::time_point t0) {
  state_figures s;
  s.name = name;
  const auto rounds = static_cast<std::size_t>(opt.rounds);
  const bound limit{(opt.max_rows + opt.rounds - 1) / opt.rounds, opt.seconds / opt.rounds};
  const fs::path path = fresh ? opt.dir / "run.db" : db;
  auto fsync_now = [&] {
    if (fresh) remove_database(path);
    return probe_disk(opt.dir, "", 50).p50_ms;
  };
  auto run_writer = [&](bool group, std::size_t producers, std::size_t round) {
    const double fsync_ms = fsync_now();
    auto r = measure_appends(path, key, group, producers, limit);
    r.fsync_ms = fsync_ms;
    note(t0, fmt::format("{}: writer {} x{}, round {}: {:.0f} rows/s (fsync {:.2f} ms before)", name,
                         group ? "group" : "per-event", producers, round + 1, r.rate(), fsync_ms));
    return r;
  };
  auto run_bare = [&](std::size_t batch, std::size_t round) {
    const double fsync_ms = fsync_now();
    auto r = measure_bare(path, batch, fresh, limit);
    r.fsync_ms = fsync_ms;
    note(t0, fmt::format("{}: bare loop {} rows/txn, round {}: {:.0f} rows/s (fsync {:.2f} ms before)",
                         name, batch, round + 1, r.rate(), fsync_ms));
    return r;
  };
  for (auto producers : kProducers) {
    std::vector<append_round> per_event, group;
    std::vector<bare_round> bare;
    for (std::size_t i = 0; i < rounds; ++i) {
      per_event.push_back(run_writer(false, producers, i));
      group.push_back(run_writer(true, producers, i));
      bare.push_back(run_bare(producers, i));
    }
    s.appends.push_back(combine(false, producers, per_event));
    s.appends.push_back(combine(true, producers, group));
    s.bare.push_back(combine(producers, bare));
  }
  std::vector<std::size_t> extra;
  const auto own = static_cast<std::size_t>(
      std::max<long>(1, std::lround(find_appends(s, true, 64).mean_batch)));
  if (!exact_bare(s, own)) extra.push_back(own);
  extra.push_back(1024);
  std::vector<std::vector<bare_round>> extra_rounds(extra.size());
  for (std::size_t i = 0; i < rounds; ++i)
    for (std::size_t k = 0; k < extra.size(); ++k) extra_rounds[k].push_back(run_bare(extra[k], i));
  for (std::size_t k = 0; k < extra.size(); ++k) s.bare.push_back(combine(extra[k], extra_rounds[k]));
  std::sort(s.bare.begin(), s.bare.end(), [](auto& a, auto& b) { return a.batch < b.batch; });
  if (fresh) remove_database(path);
  return s;
}

void print_usage() {
  fmt::print(
      "usage: journal_bench [--dir DIR] [--prefill N] [--seconds S] [--max-rows N] [--queries N]\n"
      "                     [--settle S] [--rounds R]\n"
      "  --dir DIR      where the databases go (kept afterwards); default: a fresh directory\n"
      "                 under $TMPDIR or /tmp, removed at the end\n"
      "  --prefill N    entries in the large journal (default 1000000)\n"
      "  --seconds S    time bound of each append measurement, all rounds (default 10)\n"
      "  --max-rows N   row bound of each append measurement, all rounds (default 100000)\n"
      "  --rounds R     interleaved rounds per measurement; rates are their median (default 3)\n"
      "  --queries N    runs of each query (default 1000)\n"
      "  --settle S     before each phase, wait up to S seconds for the disk to flush fast\n"
      "                 again after earlier bulk writes (default 60; 0 = do not wait)\n");
}

options parse_options(int argc, char** argv) {
  options o;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) throw std::invalid_argument(a + " needs a value");
      return argv[++i];
    };
    if (a == "--dir") {
      o.dir = value();
    } else if (a == "--prefill") {
      o.prefill = std::stoll(value());
    } else if (a == "--seconds") {
      o.seconds = std::stod(value());
    } else if (a == "--max-rows") {
      o.max_rows = std::stoll(value());
    } else if (a == "--queries") {
      o.queries = std::stoi(value());
    } else if (a == "--settle") {
      o.settle = std::stod(value());
    } else if (a == "--rounds") {
      o.rounds = std::stoi(value());
    } else if (a == "--help" || a == "-h") {
      print_usage();
      std::exit(0);
    } else {
      throw std::invalid_argument("unknown option " + a);
    }
  }
  if (o.prefill < 1 || o.seconds <= 0 || o.max_rows < 1 || o.queries < 1 || o.settle < 0 ||
      o.rounds < 1)
    throw std::invalid_argument("--prefill, --seconds, --max-rows, --queries and --rounds must be "
                                "positive");
  if (o.dir.empty()) {
    std::string tmpl = (fs::temp_directory_path() / "journal_bench.XXXXXX").string();
    if (!::mkdtemp(tmpl.data())) throw std::runtime_error("mkdtemp failed");
    o.dir = tmpl;
    o.remove_dir = true;
  } else {
    fs::create_directories(o.dir);
  }
  return o;
}

double kib_per_row(std::uint64_t bytes, std::uint64_t rows) {
  return rows ? static_cast<double>(bytes) / 1024.0 / static_cast<double>(rows) : 0;
}

std::string met(bool ok) { return ok ? "met" : "NOT met"; }

std::string report(const options& opt, const std::vector<state_figures>& states,
                   const prefill_figures& pf, const std::vector<query_figures>& queries,
                   const verify_figures& vf, const std::vector<disk_probe>& probes,
                   double total_seconds) {
  std::string out;
  auto o = std::back_inserter(out);
  fmt::format_to(o, "\njournal_bench: SQLite {}, {} hardware threads, databases in {}, {:.0f} s\n",
                 sqlite3_libversion(), std::thread::hardware_concurrency(), opt.dir.string(),
                 total_seconds);
  fmt::format_to(o,
                 "bounds: {} rows or {} s per append measurement, in {} interleaved rounds; "
                 "{} runs per query\n",
                 opt.max_rows, opt.seconds, opt.rounds, opt.queries);

  fmt::format_to(o, "\nThe disk and the machine (4 KiB append + fdatasync, 200 times; load average)\n");
  fmt::format_to(o, "{:<28} {:>12} {:>12}   {}\n", "when", "fsync p50 ms", "fsync p99 ms",
                 "load 1/5/15 min");
  for (auto& p : probes)
    fmt::format_to(o, "{:<28} {:>12.2f} {:>12.2f}   {}\n", p.when, p.p50_ms, p.p99_ms, p.load);

  fmt::format_to(o, "\nPrefill: {} entries in {:.1f} s ({:.0f} entries/s, mean batch {:.1f}, "
                    "{:.1f} KiB written per entry), {:.0f} MiB, spanning {:.1f} days\n",
                 pf.entries, pf.seconds, static_cast<double>(pf.entries) / pf.seconds,
                 pf.mean_batch,
                 kib_per_row(pf.written, static_cast<std::uint64_t>(pf.entries)),
                 static_cast<double>(pf.bytes) / (1024.0 * 1024.0),
                 static_cast<double>(pf.last_ts - pf.first_ts) / static_cast<double>(kDay));

  fmt::format_to(o, "\nDurable appends through journal::writer (each producer: append, wait, repeat)\n"
                    "rows/s = median of the rounds (min-max beside it); p50/p99 = append latency over\n"
                    "all rounds; fsync = worst flush p50 (ms) probed before a round; KiB/r = bytes\n"
                    "written to WAL and database per row; vs bare = rows/s over the bare loop's at\n"
                    "the nearest standard batch size (in brackets) and at the same batch size\n");
  fmt::format_to(o, "{:>8} {:<9} {:>4} {:>7} {:>7} {:>13} {:>7} {:>7} {:>5} {:>5} {:>5} {:>13} {:>7}\n",
                 "start", "mode", "prod", "rows", "rows/s", "min-max", "p50 ms", "p99 ms", "batch",
                 "fsync", "KiB/r", "vs bare", "vs same");
  for (auto& s : states) {
    for (auto& a : s.appends) {
      const auto& nb = nearest_bare(s, a.group ? a.mean_batch : 1.0);
      const bare_figures* eb =
          exact_bare(s, static_cast<std::size_t>(std::lround(std::max(a.mean_batch, 1.0))));
      fmt::format_to(o,
                     "{:>8} {:<9} {:>4} {:>7} {:>7.0f} {:>13} {:>7.2f} {:>7.2f} {:>5.1f} {:>5.2f} "
                     "{:>5.1f} {:>6.2f}x ({:>4}) {:>7}\n",
                     a.start_rows, a.group ? "group" : "per-event", a.producers, a.rows, a.rate(),
                     fmt::format("{:.0f}-{:.0f}", a.rates.min, a.rates.max), a.p50_us / 1000,
                     a.p99_us / 1000, a.mean_batch, a.fsync_ms,
                     kib_per_row(a.bytes, a.rows), a.rate() / nb.rate(), nb.batch,
                     eb ? fmt::format("{:.2f}x", a.rate() / eb->rate()) : std::string("-"));
      if (a.failed) fmt::format_to(o, "         ({} appends failed)\n", a.failed);
    }
  }

  fmt::format_to(o, "\nGroup commit over one transaction per event, same producers\n");
  fmt::format_to(o, "{:<7} {:>5} {:>9} {:>11} {:>7}\n", "journal", "prod", "group/s",
                 "per-event/s", "ratio");
  for (auto& s : states)
    for (auto p : kProducers) {
      auto& g = find_appends(s, true, p);
      auto& e = find_appends(s, false, p);
      fmt::format_to(o, "{:<7} {:>5} {:>9.0f} {:>11.0f} {:>6.1f}x\n", s.name, p, g.rate(),
                     e.rate(), g.rate() / e.rate());
    }

  fmt::format_to(o, "\nBare SQLite insert loop (C API, same schema, WAL, synchronous=FULL)\n"
                    "commit = time of COMMIT (WAL write and flush, checkpoints), over all rounds\n");
  fmt::format_to(o, "{:>8} {:>8} {:>7} {:>7} {:>13} {:>7} {:>5} {:>5} {:>10} {:>10}\n", "start",
                 "rows/txn", "rows", "rows/s", "min-max", "txn/s", "fsync", "KiB/r",
                 "commit p50", "commit p99");
  for (auto& s : states)
    for (auto& b : s.bare)
      fmt::format_to(o, "{:>8} {:>8} {:>7} {:>7.0f} {:>13} {:>7.0f} {:>5.2f} {:>5.1f} {:>10.2f} {:>10.2f}\n",
                     b.start_rows, b.batch, b.rows, b.rate(),
                     fmt::format("{:.0f}-{:.0f}", b.rates.min, b.rates.max),
                     b.rate() / static_cast<double>(b.batch), b.fsync_ms,
                     kib_per_row(b.bytes, b.rows), b.commit_p50_us / 1000, b.commit_p99_us / 1000);

  fmt::format_to(o, "\nQueries through journal::reader on the {}-entry journal\n", pf.entries);
  fmt::format_to(o, "{:<30} {:>5} {:>8} {:>8} {:>8} {:>9}\n", "query", "runs", "p50 ms",
                 "p99 ms", "max ms", "mean rows");
  for (auto& q : queries)
    fmt::format_to(o, "{:<30} {:>5} {:>8.3f} {:>8.3f} {:>8.3f} {:>9.1f}\n", q.name, q.runs,
                   q.p50_us / 1000, q.p99_us / 1000, q.max_us / 1000, q.mean_rows);

  fmt::format_to(o, "\nVerification (journal::verify with the public key): {} entries, {} checkpoints, "
                    "{:.2f} s, {:.0f} entries/s, {}\n",
                 vf.entries, vf.checkpoints, vf.seconds, vf.rate(), vf.ok ? "ok" : "FAILED");

  fmt::format_to(o, "\nTargets\n");
  for (auto& s : states) {
    auto& g = find_appends(s, true, 64);
    auto& e = find_appends(s, false, 64);
    const auto label = fmt::format("{} journal, {} rows", s.name, g.start_rows);
    double r1 = g.rate() / e.rate();
    fmt::format_to(o, "group commit x64 >= 8x one transaction per event x64 ({}): {:.2f}x: {}\n",
                   label, r1, met(r1 >= 8));
    auto& nb = nearest_bare(s, g.mean_batch);
    double r2 = g.rate() / nb.rate();
    fmt::format_to(o, "group commit x64 >= 0.8x bare loop at {} rows/txn ({}): {:.3f}x: {}\n",
                   nb.batch, label, r2, met(r2 >= 0.8));
  }
  fmt::format_to(o, "PMR lookup p99 < 1 ms: {:.3f} ms: {}\n", queries[0].p99_us / 1000,
                 met(queries[0].p99_us < 1000));
  fmt::format_to(o, "one-hour count p99 < 1 ms: {:.3f} ms: {}\n", queries[1].p99_us / 1000,
                 met(queries[1].p99_us < 1000));
  return out;
}

int run(const options& opt) {
  const auto t0 = steady::now();
  fmt::print(stderr, "journal_bench: databases in {}\n", opt.dir.string());
  auto key = journal::signing_key::generate();
  std::vector<disk_probe> probes;
  auto sample = [&](const std::string& when) {
    probes.push_back(probe_disk(opt.dir, when));
    note(t0, fmt::format("disk: fsync p50 {:.2f} ms ({})", probes.back().p50_ms, when));
  };
  sample("start");
  sample(fmt::format("after settling {:.0f} s", settle_disk(opt.dir, opt.settle)));

  std::vector<state_figures> states;
  states.push_back(measure_state("empty", opt.dir / "run.db", true, key, opt, t0));
  sample("after the empty-journal runs");

  const fs::path big = opt.dir / "prefilled.db";
  remove_database(big);
  note(t0, fmt::format("prefilling {} entries", opt.prefill));
  auto pf = prefill(big, key, opt.prefill);
  note(t0, fmt::format("prefilled in {:.1f} s", pf.seconds));
  sample("after prefill");

  auto queries = measure_queries(big, pf, opt);
  note(t0, "queries done");
  auto vf = measure_verify(big, key);
  note(t0, fmt::format("verified {} entries in {:.2f} s", vf.entries, vf.seconds));
  sample(fmt::format("after settling {:.0f} s", settle_disk(opt.dir, opt.settle)));

  states.push_back(measure_state("large", big, false, key, opt, t0));
  sample("end");

  fmt::print("{}", report(opt, states, pf, queries, vf, probes, seconds_since(t0)));
  std::fflush(stdout);
  if (opt.remove_dir) fs::remove_all(opt.dir);
  return vf.ok ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  options opt;
  try {
    opt = parse_options(argc, argv);
  } catch (const std::exception& e) {
    fmt::print(stderr, "journal_bench: {}\n", e.what());
    print_usage();
    return 2;
  }
  try {
    return run(opt);
  } catch (const std::exception& e) {
    fmt::print(stderr, "journal_bench: {}\n", e.what());
    if (opt.remove_dir) {
      std::error_code ec;
      fs::remove_all(opt.dir, ec);
    }
    return 1;
  }
}
