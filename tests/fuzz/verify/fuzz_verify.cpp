// Fuzz target for journal verification (journal/reader.hpp), what an auditor runs on a
// journal file of unknown history: verify() must never crash or throw on any rows the schema
// admits, with or without a public key. It may report "not ok"; when it says ok, the rows it
// counted must be all there is, and checking signatures too must never turn not-ok into ok.
//
// One journal per process, in its own temp directory, created once with open_for_writing and
// ensure_meta (gateway "gw", the test key). Each input empties it (the DELETE trigger is
// dropped for that), then inserts 1–4 rows and a journal_head row straight with SQL.
// Input: fields separated by '|':
//   COUNT | per row: SEQ | GATEWAY | KIND | ACTOR | OUTCOME | DETAIL | PREV_HASH | HASH |
//   HEAD_SEQ | HEAD_HASH | HEAD_SIGNATURE
// COUNT is '1'–'4' (else its first byte mod 4, plus 1). A missing field takes a default that
// makes a valid journal, so short inputs go deep. Placeholders let the fuzzer reach the
// checks behind the hashes and signatures, which it cannot compute itself: "$PREV" (hash of
// the row before), "$HASH" (this row's correct hash), "$THRU" (seq - 1) and "$SIG" (the
// checkpoint's signature with the test key; in HEAD_SIGNATURE the head's, over the last
// accepted row's gateway, else the journal's). In HEAD_SEQ "$SEQ" is the last row's seq, and
// "none" leaves journal_head empty; in HEAD_HASH "$HASH" is the last row's hash.
#include "journal/reader.hpp"

#include <unistd.h>

#include <charconv>
#include <cstdlib>
#include <filesystem>
#include <optional>
#include <stdexcept>
#include <string>

#include "core/sqlite.hpp"
#include "journal/store.hpp"
#include "tests/fuzz/fuzz_support.hpp"

namespace journal = rsgate::journal;
namespace sqlite = rsgate::sqlite;

namespace {

constexpr std::string_view kMetaGateway = "gw";
constexpr rsgate::micros kStartTs = 1'795'746'438'000'000;  // 2026-11-27T02:27:18Z

// The fuzz journal: lives for the whole process, removed with its directory at exit.
struct fuzz_journal {
  std::filesystem::path dir;
  sqlite::db db;
  sqlite::stmt insert_row;
  sqlite::stmt insert_head;
  journal::signing_key key = journal::signing_key::from_seed(std::vector<std::uint8_t>(32, 0x42));

  fuzz_journal() {
    std::string tmpl =
        (std::filesystem::temp_directory_path() / "rsgate-fuzz-verify-XXXXXX").string();
    if (!mkdtemp(tmpl.data())) throw std::runtime_error("mkdtemp failed");
    dir = tmpl;
    db = journal::open_for_writing(dir / "journal.db");
    db.exec("PRAGMA synchronous = OFF");
    db.exec("PRAGMA locking_mode = EXCLUSIVE");
    db.exec("DROP TRIGGER journal_no_delete");
    journal::ensure_meta(db, std::string(kMetaGateway), key.pub(), kStartTs);
    insert_row = db.prepare(
        "INSERT INTO journal(seq, ts, gateway, kind, actor, outcome, detail, prev_hash, hash) "
        "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)");
    insert_head =
        db.prepare("INSERT INTO journal_head(id, seq, hash, signature) VALUES (1, ?1, ?2, ?3)");
  }
  ~fuzz_journal() {
    insert_row = {};
    insert_head = {};
    db.close();
    std::error_code ec;
    std::filesystem::remove_all(dir, ec);
  }
  fuzz_journal(const fuzz_journal&) = delete;
  fuzz_journal& operator=(const fuzz_journal&) = delete;
};

fuzz_journal& the_journal() {
  static fuzz_journal j;
  return j;
}

// Hands out the '|'-separated fields in order; a missing one gives the default.
class fields {
 public:
  explicit fields(std::string_view text) : parts_(rsgate::fuzz::split(text, '|')) {}
  std::string next(std::string_view fallback) {
    return std::string(at_ < parts_.size() ? parts_[at_++] : fallback);
  }

 private:
  std::vector<std::string_view> parts_;
  std::size_t at_ = 0;
};

bool is_hash(std::string_view s) { return s.size() == 64 && rsgate::from_hex(s).has_value(); }

std::int64_t to_int(std::string_view s, std::int64_t fallback) {
  std::int64_t v = 0;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  return ec == std::errc{} && p == s.data() + s.size() ? v : fallback;
}

// Inserts the rows the input describes; returns how many the schema accepted.
int fill(fuzz_journal& j, std::string_view input) {
  fields f(input);
  auto count_field = f.next("1");
  int count = 1;
  if (!count_field.empty())
    count = count_field[0] >= '1' && count_field[0] <= '4'
                ? count_field[0] - '0'
                : static_cast<unsigned char>(count_field[0]) % 4 + 1;

  int inserted = 0;
  std::string prev(journal::kGenesisHash);
  journal::entry last;
  last.gateway = kMetaGateway;
  for (int i = 0; i < count; ++i) {
    journal::entry e;
    e.seq = to_int(f.next("$N"), i + 1);
    e.ts = kStartTs + i;
    e.gateway = f.next("gw");
    e.kind = f.next("tunnel.auth");
    e.actor = f.next("");
    auto outcome_text = f.next("ok");
    e.result = journal::parse_outcome(outcome_text).value_or(journal::outcome::error);
    e.detail = f.next("{}");
    e.prev_hash = f.next("$PREV");
    e.hash = f.next("$HASH");
    if (e.seq <= 0) continue;  // CHECK (seq > 0) would refuse it; "$THRU" needs seq - 1

    rsgate::fuzz::replace_all(e.detail, "$PREV", prev);
    rsgate::fuzz::replace_all(e.detail, "$THRU", std::to_string(e.seq - 1));
    if (e.detail.find("$SIG") != std::string::npos && is_hash(prev)) {
      auto msg =
          journal::signed_statement(journal::statement::checkpoint, e.gateway, e.seq - 1, prev);
      rsgate::fuzz::replace_all(e.detail, "$SIG", j.key.sign_hex(msg));
    }
    rsgate::fuzz::replace_all(e.prev_hash, "$PREV", prev);
    if (e.hash.find("$HASH") != std::string::npos) {
      try {
        rsgate::fuzz::replace_all(e.hash, "$HASH", journal::compute_hash(e));
      } catch (const std::invalid_argument&) {
        // prev_hash is not 64 hex digits: the placeholder stays as text.
      }
    }

    auto& s = j.insert_row;
    s.reset();
    s.bind(1, e.seq).bind(2, e.ts).bind(3, e.gateway).bind(4, e.kind).bind(5, e.actor);
    s.bind(6, outcome_text).bind(7, e.detail).bind(8, e.prev_hash).bind(9, e.hash);
    try {
      s.step();
    } catch (const sqlite::error&) {
      continue;  // a CHECK, NOT NULL or duplicate seq refused the row
    }
    ++inserted;
    prev = e.hash;
    last = e;
  }

  auto head_seq_text = f.next("$SEQ");
  if (head_seq_text == "none") return inserted;
  auto head_hash = f.next("$HASH");
  auto head_sig = f.next("$SIG");
  std::int64_t head_seq = head_seq_text == "$SEQ" ? last.seq : to_int(head_seq_text, 0);
  rsgate::fuzz::replace_all(head_hash, "$HASH", last.hash);
  if (head_sig.find("$SIG") != std::string::npos && is_hash(head_hash)) {
    auto msg =
        journal::signed_statement(journal::statement::head, last.gateway, head_seq, head_hash);
    rsgate::fuzz::replace_all(head_sig, "$SIG", j.key.sign_hex(msg));
  }
  auto& h = j.insert_head;
  h.reset();
  h.bind(1, head_seq).bind(2, head_hash).bind(3, head_sig);
  h.step();
  return inserted;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  auto& j = the_journal();
  j.db.exec("BEGIN");
  j.db.exec("DELETE FROM journal; DELETE FROM journal_head");
  fill(j, rsgate::fuzz::as_text(data, size));
  j.db.exec("COMMIT");

  auto rows = j.db.scalar_int("SELECT count(*) FROM journal");
  auto with_key = journal::verify(j.db, j.key.pub());
  auto without_key = journal::verify(j.db, std::nullopt);
  journal::public_key wrong{};
  auto wrong_key = journal::verify(j.db, wrong);

  for (const auto* r : {&with_key, &without_key, &wrong_key}) {
    if (r->ok) {
      FUZZ_CHECK(r->entries == rows && r->head_seq == rows && r->problem.empty());
    } else {
      FUZZ_CHECK(!r->problem.empty());
    }
  }
  FUZZ_CHECK(without_key.signed_through == 0 && !without_key.signatures_checked);
  // Signatures only add checks: what passes with a key passes without one, and the same.
  if (with_key.ok) {
    FUZZ_CHECK(without_key.ok && without_key.head_hash == with_key.head_hash &&
               without_key.checkpoints == with_key.checkpoints);
    FUZZ_CHECK(with_key.signed_through == with_key.head_seq);
  }
  // Nothing here was signed with the all-zero key.
  FUZZ_CHECK(!wrong_key.ok || rows == 0);
  return 0;
}
