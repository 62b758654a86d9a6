// The gateway's state database (state.db): accounts, tokens and enrolled machines. Not
// evidence — the journal is — but every change here is journaled first by the callers.
// One state_store per thread (it owns a SQLite connection).
#pragma once
#include <cstdint>
#include <filesystem>
#include <functional>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "core/clock.hpp"
#include "core/sqlite.hpp"

namespace rsgate::gateway {

inline constexpr const char* kRoles[] = {"representative", "developer", "auditor", "admin"};
[[nodiscard]] bool is_role(std::string_view r);

struct user_row {
  std::string name;
  std::string role;
  std::string password_hash;
  bool must_change = false;
  bool disabled = false;
  micros created_at = 0;
};

struct machine_row {
  std::string machine;
  std::string verifier;
  bool md5_enabled = false;
  std::string md5_secret_sealed;
  bool revoked = false;
  micros enrolled_at = 0;
  micros revoked_at = 0;
};

struct token_row {
  std::string token_hash;
  std::string user;
  micros created_at = 0;
  micros expires_at = 0;
  bool revoked = false;
};

// An account's TOTP enrolment (schema/state/0005_totp.sql).
struct totp_row {
  std::string secret_sealed;    // master_key::seal of the raw secret
  std::int64_t last_step = 0;   // the last time step a code was accepted for
  micros enrolled_at = 0;
  int recovery_codes = 0;       // unused ones left
};

// A live session's snapshot (gateway/session_snapshot.hpp), kept across a restart.
struct live_session_row {
  std::string id;
  std::string machine;
  std::string snapshot;
  std::int64_t journal_seq = 0;  // the session's last session.* entry it reflects
  micros updated_at = 0;
};

class state_store {
 public:
  // Opens (migrating) state.db. Throws sqlite::error / std::runtime_error.
  explicit state_store(const std::filesystem::path& db);

  [[nodiscard]] std::optional<user_row> find_user(const std::string& name);
  [[nodiscard]] std::vector<user_row> users();
  void add_user(const user_row& u);  // throws on a duplicate name
  // The account and its TOTP enrolment (set_totp) in one transaction: both or neither.
  void add_user_with_totp(const user_row& u, const std::string& secret_sealed, const std::vector<std::string>& code_hashes);
  bool set_disabled(const std::string& name, bool disabled);
  bool set_password(const std::string& name, const std::string& hash, bool must_change);

  [[nodiscard]] std::optional<totp_row> find_totp(const std::string& user);
  // Enrols the account anew: its secret and recovery codes (their keyed hashes) replace any
  // earlier ones, in one transaction; the last used step starts at 0.
  void set_totp(const std::string& user, const std::string& secret_sealed, const std::vector<std::string>& code_hashes,
                micros now);
  // Moves the account's last used step forward to `step`; false when a login already used
  // that step or a later one (a code is accepted once, even by two concurrent logins).
  [[nodiscard]] bool use_totp_step(const std::string& user, std::int64_t step);
  // Uses one recovery code up; false when the account has no unused code with that hash.
  [[nodiscard]] bool use_recovery_code(const std::string& user, const std::string& code_hash);
  // Gives back a recovery code whose login failed after it was taken (the journal refused it).
  void restore_recovery_code(const std::string& user, const std::string& code_hash);

  [[nodiscard]] std::optional<machine_row> find_machine(const std::string& machine);
  // SQLite's PRAGMA data_version: changes when another connection (another process's
  // included) committed since this connection last asked; comparable only on one connection.
  [[nodiscard]] std::int64_t data_version();
  // For the connection that writes session snapshots (live_sessions) only: commits without
  // waiting for the disk (WAL with synchronous=NORMAL: a power loss may lose the latest
  // commits, never corrupt the file). Safe because a snapshot is trusted at the next start
  // only when the journal, which stays fully durable, confirms it; a lost one ends its session
  // there (fail closed). Saves an fdatasync per session change (docs/performance.md, scale).
  void relax_durability_for_snapshots();
  [[nodiscard]] std::vector<machine_row> machines();
  void add_machine(const machine_row& m);  // throws on a duplicate
  // Re-enrollment (`machine enroll --replace`): new verifier and MD5 state, not revoked.
  bool replace_machine(const machine_row& m);
  bool revoke_machine(const std::string& machine, micros now);

  void add_token(const token_row& t);
  // All tokens, or one account's, newest first.
  [[nodiscard]] std::vector<token_row> tokens(const std::string& user = "");
  // The token whose public id (token_id) is `id`; nullopt when none (or, never seen, two).
  [[nodiscard]] std::optional<token_row> find_token_by_id(const std::string& id_in);
  // False when it was revoked already (or is unknown).
  [[nodiscard]] bool revoke_token(const std::string& token_hash);

  void put_live_session(const live_session_row& r);  // insert or replace
  void delete_live_session(const std::string& id);
  [[nodiscard]] std::vector<live_session_row> live_sessions();
  // Receipts an agent of `machine` acknowledged (docs/protocol.md §4.12): recorded (the newest
  // 32 per machine kept), and which of `sessions` are among them.
  void receipt_delivered(const std::string& session_id, const std::string& machine, micros now);
  [[nodiscard]] std::set<std::string> delivered_receipts(const std::string& machine,
                                                         const std::vector<std::string>& sessions);
  [[nodiscard]] std::optional<token_row> find_token(const std::string& token_hash);

 private:
  void write_totp(const std::string& user, const std::string& secret_sealed, const std::vector<std::string>& code_hashes,
                  micros now);  // within a transaction
  // Runs `work` in one write transaction (BEGIN IMMEDIATE): committed, or rolled back and
  // rethrown.
  void in_transaction(const std::function<void()>& work);
  sqlite::db db_;
};

// Secrets sealed with the data directory's master key (libsodium secretbox).
class master_key {
 public:
  static master_key load_or_create(const std::filesystem::path& file);
  [[nodiscard]] std::string seal(std::string_view plaintext) const;
  [[nodiscard]] std::optional<std::string> open(std::string_view sealed) const;
  ~master_key();
  master_key(const master_key&) = default;
  master_key& operator=(const master_key&) = default;

 private:
  master_key() = default;
  std::array<std::uint8_t, 32> key_{};
};

// Bearer tokens: "rsg_" + 43 base64url characters (256 random bits); stored as SHA-256.
[[nodiscard]] std::string new_token();
[[nodiscard]] std::string token_hash(std::string_view token);
// A token's public id: the first 16 hex digits of its SHA-256, shown by `token list` and
// GET /tokens and used to revoke it. It names the token without being able to act as it.
[[nodiscard]] std::string token_id(std::string_view token_hash);
[[nodiscard]] bool is_token_id(std::string_view id);

}  // namespace rsgate::gateway
