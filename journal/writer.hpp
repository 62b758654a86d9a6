// The journal writer: the only code that appends to a journal database.
//
// Callers hand entries to append(); one writer thread takes everything queued (up to
// max_batch), assigns seq, ts and the chain hashes, inserts the batch and re-signs the head in
// one transaction, and only after COMMIT returns — the data is on disk (WAL,
// synchronous=FULL) — completes each caller with its seq. When the write fails (disk full,
// I/O error, read-only file) the transaction rolls back, each caller gets an error, and
// ready() turns false until a write succeeds again. Callers treat an error as "refuse the
// action" (SPEC §5, journal before access).
//
// Owned by the gateway for its whole life; append(), ready() and stats() may be called from
// any thread. Completions run on the writer thread and must not block. Several processes may
// each hold a writer on the same file (an admin command beside a running gateway): every
// batch continues the chain from the newest entry on disk, under SQLite's write lock.
#pragma once
#include <atomic>
#include <condition_variable>
#include <deque>
#include <filesystem>
#include <functional>
#include <future>
#include <mutex>
#include <string>
#include <system_error>
#include <thread>

#include "core/clock.hpp"
#include "core/sqlite.hpp"
#include "journal/entry.hpp"
#include "journal/keys.hpp"

namespace rsgate::journal {

enum class errc {
  write_failed = 1,  // the database refused the transaction; nothing of the batch was stored
  queue_full,        // more appends are waiting than max_queue allows
  closed,            // the writer is shutting down
  invalid_entry,     // the entry breaks a limit (field length, detail not a JSON object…)
};
[[nodiscard]] const std::error_category& journal_category();
[[nodiscard]] inline std::error_code make_error_code(errc e) {
  return {static_cast<int>(e), journal_category()};
}

struct append_result {
  std::error_code ec;
  std::string message;  // why, when ec is set
  std::int64_t seq = 0;
  micros ts = 0;
  std::string hash;
  [[nodiscard]] bool ok() const { return !ec; }
};

struct writer_options {
  std::string gateway = "gateway";
  std::size_t max_batch = 1024;       // entries per transaction at most
  std::size_t max_queue = 65536;      // waiting appends at most; beyond, queue_full
  bool group_commit = true;           // false: one transaction per entry (benchmark baseline)
  std::int64_t checkpoint_every_entries = 1000;
  micros checkpoint_every = 60'000'000;  // also checkpoint when this much time passed
  micros probe_every = 2'000'000;        // write probe for readiness when idle; 0 = never
};

struct writer_stats {
  std::uint64_t appended = 0;
  std::uint64_t failed = 0;
  std::uint64_t batches = 0;
  std::uint64_t checkpoints = 0;
  std::int64_t last_seq = 0;
  std::size_t queued = 0;
};

class writer {
 public:
  using completion = std::function<void(const append_result&)>;

  // Opens (creating and migrating if needed) the journal at `db_path`, recovers the chain
  // head, and starts the writer thread. Throws std::runtime_error / sqlite::error.
  writer(const std::filesystem::path& db_path, signing_key key, writer_options opts,
         const clock& clk = system_clock::instance());
  ~writer();
  writer(const writer&) = delete;
  writer& operator=(const writer&) = delete;

  void append(entry e, completion done);
  [[nodiscard]] std::future<append_result> append(entry e);
  // Appends and waits: for start-up, shutdown and tools, not for request paths.
  append_result append_sync(entry e);

  // Drains what is queued, writes a final checkpoint, stops the thread. Idempotent.
  void close();

  [[nodiscard]] bool ready() const { return ready_.load(); }
  // True when no append waits and none is being written or completed: every completion handed
  // to append() so far has run. For shutdown, which must not free what completions use.
  [[nodiscard]] bool idle() const;
  [[nodiscard]] writer_stats stats() const;
  [[nodiscard]] const signing_key& key() const { return key_; }

 private:
  struct pending {
    entry e;
    completion done;
  };
  void run();
  // The chain's last entry and the entries since the last checkpoint, saved before a batch.
  struct chain_tip {
    std::int64_t seq;
    micros ts;
    std::string hash;
    std::int64_t since_checkpoint;
  };
  void write_batch(std::deque<pending>& batch, bool final_checkpoint);
  micros continue_chain();
  append_result insert_entry(entry& e, micros now);
  void insert_row(const entry& e);
  [[nodiscard]] bool checkpoint_due(micros now, bool final_checkpoint) const;
  void fail_batch(std::deque<pending>& batch, const chain_tip& saved, const char* what);
  void probe();
  static void complete(pending& p, const append_result& r);
  entry make_checkpoint(std::int64_t seq, micros ts, const std::string& prev) const;

  signing_key key_;
  writer_options opts_;
  const clock& clock_;
  sqlite::db db_;
  sqlite::stmt insert_;
  sqlite::stmt head_;
  sqlite::stmt tail_;

  // Chain state: touched only by the writer thread (and the constructor before it starts).
  std::int64_t last_seq_ = 0;
  micros last_ts_ = 0;
  std::string last_hash_;
  std::int64_t since_checkpoint_ = 0;
  micros last_checkpoint_ts_ = 0;
  micros last_write_ts_ = 0;

  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<pending> queue_;
  bool stopping_ = false;
  writer_stats stats_;
  std::atomic<bool> ready_{true};
  std::size_t in_hand_ = 0;  // guarded by mu_: appends taken from the queue, not yet completed
  std::thread thread_;
};

}  // namespace rsgate::journal

template <>
struct std::is_error_code_enum<rsgate::journal::errc> : std::true_type {};
