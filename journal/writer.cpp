// See writer.hpp. The batch transaction is: BEGIN IMMEDIATE; INSERT each entry (plus a
// checkpoint entry when one is due); UPDATE the signed head; COMMIT. Any exception rolls the
// whole batch back and restores the in-memory chain head, so the chain never has a gap.
#include "journal/writer.hpp"

#include <fmt/format.h>
#include <sqlite3.h>

#include <boost/json/serialize.hpp>
#include <boost/json/value.hpp>

#include "core/log.hpp"
#include "journal/store.hpp"

namespace rsgate::journal {
namespace {

class category final : public std::error_category {
 public:
  const char* name() const noexcept override { return "rsgate.journal"; }
  std::string message(int c) const override {
    switch (static_cast<errc>(c)) {
      case errc::write_failed: return "the journal cannot write";
      case errc::queue_full: return "the journal queue is full";
      case errc::closed: return "the journal is closed";
      case errc::invalid_entry: return "invalid journal entry";
    }
    return "unknown journal error";
  }
};

append_result failure(errc e, std::string why) {
  append_result r;
  r.ec = make_error_code(e);
  r.message = std::move(why);
  return r;
}

}  // namespace

const std::error_category& journal_category() {
  static const category c;
  return c;
}

writer::writer(const std::filesystem::path& db_path, signing_key key, writer_options opts,
               const clock& clk)
    : key_(std::move(key)), opts_(std::move(opts)), clock_(clk) {
  if (opts_.max_batch == 0) opts_.max_batch = 1;
  // The name goes into every entry and signature: never sign with a malformed one.
  if (!is_valid_gateway_name(opts_.gateway))
    throw std::runtime_error("invalid gateway name '" + escape_for_journal(opts_.gateway, 100) +
                             "' (expected 1 to 64 of A-Z a-z 0-9 . _ -)");
  db_ = open_for_writing(db_path);
  ensure_meta(db_, opts_.gateway, key_.pub(), clock_.now());
  // journal_meta is not covered by the chain: a name edited into it is refused, whatever
  // name this writer signs with (throws bad_gateway_name).
  (void)meta_gateway(db_);
  {
    auto m = db_.prepare("SELECT value FROM journal_meta WHERE key = 'public_key'");
    if (m.step() && m.col_text(0) != to_hex(key_.pub()))
      throw std::runtime_error(db_path.string() +
                               ": the signing key is not the one this journal was created with");
  }
  auto head = read_chain_tail(db_);
  last_seq_ = head.seq;
  last_ts_ = head.ts;
  last_hash_ = head.hash;
  last_checkpoint_ts_ = clock_.now();
  stats_.last_seq = last_seq_;
  insert_ = db_.prepare(
      "INSERT INTO journal(seq, ts, gateway, kind, actor, source, session_id, pmr, machine, "
      "access_type, scope, outcome, secret_hmac, detail, prev_hash, hash, subject) "
      "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17)");
  tail_ = db_.prepare("SELECT seq, ts, hash FROM journal ORDER BY seq DESC LIMIT 1");
  head_ = db_.prepare(
      "INSERT INTO journal_head(id, seq, hash, signature, probed_at) VALUES (1, ?1, ?2, ?3, ?4) "
      "ON CONFLICT(id) DO UPDATE SET seq = excluded.seq, hash = excluded.hash, "
      "signature = excluded.signature, probed_at = excluded.probed_at");
  thread_ = std::thread([this] { run(); });
}

writer::~writer() { close(); }

void writer::append(entry e, completion done) {
  if (auto why = validate_for_append(e); !why.empty()) {
    done(failure(errc::invalid_entry, why));
    return;
  }
  {
    std::unique_lock lock(mu_);
    if (stopping_) {
      lock.unlock();
      done(failure(errc::closed, "the journal is closed"));
      return;
    }
    if (queue_.size() >= opts_.max_queue) {
      ++stats_.failed;
      lock.unlock();
      done(failure(errc::queue_full, "the journal queue is full"));
      return;
    }
    queue_.push_back({std::move(e), std::move(done)});
  }
  cv_.notify_one();
}

std::future<append_result> writer::append(entry e) {
  auto p = std::make_shared<std::promise<append_result>>();
  auto f = p->get_future();
  append(std::move(e), [p](const append_result& r) { p->set_value(r); });
  return f;
}

append_result writer::append_sync(entry e) { return append(std::move(e)).get(); }

void writer::close() {
  {
    std::lock_guard lock(mu_);
    if (stopping_ && !thread_.joinable()) return;
    stopping_ = true;
  }
  cv_.notify_one();
  if (thread_.joinable()) thread_.join();
}

bool writer::idle() const {
  std::lock_guard lock(mu_);
  return queue_.empty() && in_hand_ == 0;
}

writer_stats writer::stats() const {
  std::lock_guard lock(mu_);
  auto s = stats_;
  s.queued = queue_.size();
  return s;
}

void writer::run() {
  std::deque<pending> batch;
  for (;;) {
    bool stopping = false;
    {
      std::unique_lock lock(mu_);
      auto wake = [&] { return stopping_ || !queue_.empty(); };
      if (opts_.probe_every > 0 || opts_.checkpoint_every > 0) {
        // Wake periodically for the readiness probe and time-based checkpoints.
        micros period = opts_.probe_every > 0 ? opts_.probe_every : opts_.checkpoint_every;
        if (opts_.checkpoint_every > 0) period = std::min(period, opts_.checkpoint_every);
        cv_.wait_for(lock, std::chrono::microseconds(std::max<micros>(period / 4, 1000)), wake);
      } else {
        cv_.wait(lock, wake);
      }
      std::size_t take = opts_.group_commit ? opts_.max_batch : 1;
      while (!queue_.empty() && batch.size() < take) {
        batch.push_back(std::move(queue_.front()));
        queue_.pop_front();
      }
      in_hand_ = batch.size();
      stopping = stopping_ && queue_.empty();
    }
    micros now = clock_.now();
    bool checkpoint_due_by_time = since_checkpoint_ > 0 && opts_.checkpoint_every > 0 &&
                                  now - last_checkpoint_ts_ >= opts_.checkpoint_every;
    if (!batch.empty() || checkpoint_due_by_time || (stopping && since_checkpoint_ > 0)) {
      write_batch(batch, stopping);
      batch.clear();
      std::lock_guard lock(mu_);
      in_hand_ = 0;
    } else if (opts_.probe_every > 0 && now - last_write_ts_ >= opts_.probe_every) {
      probe();
    }
    if (stopping) break;
  }
  db_.close();
}

entry writer::make_checkpoint(std::int64_t seq, micros ts, const std::string& prev) const {
  entry cp;
  cp.seq = seq;
  cp.ts = ts;
  cp.gateway = opts_.gateway;
  cp.kind = "journal.checkpoint";
  cp.actor = "gateway";
  cp.result = outcome::ok;
  boost::json::object d;
  d["through_seq"] = seq - 1;
  d["through_hash"] = prev;
  d["key_id"] = key_.key_id();
  d["signature"] = key_.sign_hex(signed_statement(statement::checkpoint, opts_.gateway, seq - 1, prev));
  cp.detail = boost::json::serialize(d);
  cp.prev_hash = prev;
  cp.hash = compute_hash(cp);
  return cp;
}

// One batch as one transaction: the chain continued from what is on disk, the entries, a
// checkpoint when one is due, the signed head; then every completion. On failure nothing of
// the batch is on disk, the chain state is as before, and every completion gets the error.
void writer::write_batch(std::deque<pending>& batch, bool final_checkpoint) {
  const chain_tip saved{last_seq_, last_ts_, last_hash_, since_checkpoint_};
  std::vector<append_result> results;
  results.reserve(batch.size());
  micros now = 0;
  bool wrote_checkpoint = false;
  try {
    db_.exec("BEGIN IMMEDIATE");
    now = continue_chain();
    for (auto& p : batch) results.push_back(insert_entry(p.e, now));
    if (checkpoint_due(now, final_checkpoint)) {
      insert_row(make_checkpoint(last_seq_ + 1, now, last_hash_));
      since_checkpoint_ = 0;
      wrote_checkpoint = true;
    }
    head_.reset();
    head_.bind(1, last_seq_).bind(2, last_hash_)
        .bind(3, key_.sign_hex(signed_statement(statement::head, opts_.gateway, last_seq_, last_hash_)))
        .bind(4, now);
    head_.step();
    db_.exec("COMMIT");
  } catch (const std::exception& ex) {
    fail_batch(batch, saved, ex.what());
    return;
  }
  if (!ready_.exchange(true)) log::info("journal: writing again at seq {}", last_seq_);
  last_write_ts_ = now;
  if (wrote_checkpoint) last_checkpoint_ts_ = now;
  {
    std::lock_guard lock(mu_);
    stats_.appended += batch.size();
    stats_.batches += 1;
    stats_.checkpoints += wrote_checkpoint ? 1 : 0;
    stats_.last_seq = last_seq_;
  }
  for (std::size_t i = 0; i < batch.size(); ++i) complete(batch[i], results[i]);
}

// Another process (an admin command beside a running gateway) may have appended since our
// last batch: continue the chain from what is on disk, under the write lock. Returns the
// batch's timestamp, never before the tail's.
micros writer::continue_chain() {
  tail_.reset();
  if (tail_.step()) {
    last_seq_ = tail_.col_int(0);
    last_ts_ = tail_.col_int(1);
    last_hash_ = std::string(tail_.col_text(2));
  }
  tail_.reset();
  return std::max(clock_.now(), last_ts_);
}

// Chains `e` after the tip and inserts it; returns what its caller is told.
append_result writer::insert_entry(entry& e, micros now) {
  e.seq = last_seq_ + 1;
  e.ts = now;
  e.gateway = opts_.gateway;
  e.prev_hash = last_hash_;
  e.hash = compute_hash(e);
  insert_row(e);
  ++since_checkpoint_;
  return {{}, {}, e.seq, e.ts, e.hash};
}

void writer::insert_row(const entry& e) {
  insert_.reset();
  insert_.bind(1, e.seq).bind(2, e.ts).bind(3, e.gateway).bind(4, e.kind).bind(5, e.actor)
      .bind(6, e.source).bind(7, e.session_id).bind(8, e.pmr).bind(9, e.machine)
      .bind(10, e.access_type).bind(11, e.scope).bind(12, to_string(e.result))
      .bind(13, e.secret_hmac).bind(14, e.detail).bind(15, e.prev_hash).bind(16, e.hash)
      .bind(17, e.subject);
  insert_.step();
  last_seq_ = e.seq;
  last_ts_ = e.ts;
  last_hash_ = e.hash;
}

bool writer::checkpoint_due(micros now, bool final_checkpoint) const {
  if (since_checkpoint_ == 0) return false;
  return since_checkpoint_ >= opts_.checkpoint_every_entries || final_checkpoint ||
         (opts_.checkpoint_every > 0 && now - last_checkpoint_ts_ >= opts_.checkpoint_every);
}

// The transaction failed: roll back, restore the tip, refuse until a write succeeds again.
void writer::fail_batch(std::deque<pending>& batch, const chain_tip& saved, const char* what) {
  sqlite3_exec(db_.handle(), "ROLLBACK", nullptr, nullptr, nullptr);
  last_seq_ = saved.seq;
  last_ts_ = saved.ts;
  last_hash_ = saved.hash;
  since_checkpoint_ = saved.since_checkpoint;
  bool was_ready = ready_.exchange(false);
  if (was_ready) log::error("journal: write failed, refusing access until it recovers: {}", what);
  {
    std::lock_guard lock(mu_);
    stats_.failed += batch.size();
  }
  // Before the completions run: a caller woken by one may move a test clock at once.
  last_write_ts_ = clock_.now();
  auto err = failure(errc::write_failed, what);
  for (auto& p : batch) complete(p, err);
}

void writer::complete(pending& p, const append_result& r) {
  // A completion that throws must not end the writer thread (std::terminate): every later
  // append would hang. Log it; the caller's own guard answers its client.
  try {
    p.done(r);
  } catch (const std::exception& e) {
    log::error("journal: a completion failed: {}", e.what());
  } catch (...) {
    log::error("journal: a completion failed");
  }
}

void writer::probe() {
  micros now = clock_.now();
  last_write_ts_ = now;
  try {
    db_.exec("BEGIN IMMEDIATE");
    db_.exec(fmt::format("UPDATE journal_head SET probed_at = {} WHERE id = 1", now));
    if (sqlite3_changes(db_.handle()) == 0) {
      // A journal with no entry yet has no head row: probe through meta instead.
      db_.exec(fmt::format(
          "INSERT INTO journal_meta(key, value) VALUES ('probed_at', '{}') "
          "ON CONFLICT(key) DO UPDATE SET value = excluded.value", now));
    }
    db_.exec("COMMIT");
  } catch (const std::exception& ex) {
    sqlite3_exec(db_.handle(), "ROLLBACK", nullptr, nullptr, nullptr);
    if (ready_.exchange(false)) log::error("journal: write probe failed: {}", ex.what());
    else log::debug("journal: write probe still failing: {}", ex.what());
    return;
  }
  if (!ready_.exchange(true)) log::info("journal: write probe succeeded; ready again");
}

}  // namespace rsgate::journal
