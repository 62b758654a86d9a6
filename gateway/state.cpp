// See state.hpp.
#include "gateway/state.hpp"

#include <sodium.h>

#include <cctype>
#include <sqlite3.h>

#include <array>
#include <stdexcept>

#include "auth/password.hpp"
#include "core/encoding.hpp"
#include "core/files.hpp"
#include "schema/schema.hpp"

namespace rsgate::gateway {

bool is_role(std::string_view r) {
  for (auto k : kRoles)
    if (r == k) return true;
  return false;
}

state_store::state_store(const std::filesystem::path& db) : db_(db, sqlite::open_mode::create) {
  // Accounts, tokens and revocations must survive a power loss like the journal entries
  // that record them: refused (sqlite::not_durable) unless WAL with synchronous=FULL.
  sqlite::make_durable(db_, db);
  db_.exec("PRAGMA foreign_keys = ON");
  sqlite::migrate(db_, schema::state_migrations, schema::kStateApplicationId);
}

namespace {
user_row user_from(const sqlite::stmt& s) {
  return {std::string(s.col_text(0)), std::string(s.col_text(1)), std::string(s.col_text(2)),
          s.col_int(3) != 0, s.col_int(4) != 0, s.col_int(5)};
}
machine_row machine_from(const sqlite::stmt& s) {
  return {std::string(s.col_text(0)), std::string(s.col_text(1)), s.col_int(2) != 0,
          std::string(s.col_text(3)), s.col_int(4) != 0, s.col_int(5), s.col_int(6)};
}
constexpr const char* kUserCols = "name, role, password_hash, must_change, disabled, created_at";
constexpr const char* kMachineCols =
    "machine, verifier, md5_enabled, md5_secret, revoked, enrolled_at, revoked_at";
}  // namespace

std::optional<user_row> state_store::find_user(const std::string& name) {
  auto s = db_.prepare(std::string("SELECT ") + kUserCols + " FROM users WHERE name = ?1");
  s.bind(1, name);
  if (!s.step()) return std::nullopt;
  return user_from(s);
}

std::vector<user_row> state_store::users() {
  auto s = db_.prepare(std::string("SELECT ") + kUserCols + " FROM users ORDER BY name");
  std::vector<user_row> out;
  while (s.step()) out.push_back(user_from(s));
  return out;
}

void state_store::add_user(const user_row& u) {
  auto s = db_.prepare(
      "INSERT INTO users(name, role, password_hash, must_change, disabled, created_at) "
      "VALUES (?1, ?2, ?3, ?4, ?5, ?6)");
  s.bind(1, u.name).bind(2, u.role).bind(3, u.password_hash).bind(4, u.must_change ? 1 : 0)
      .bind(5, u.disabled ? 1 : 0).bind(6, u.created_at);
  s.step();
}

bool state_store::set_disabled(const std::string& name, bool disabled) {
  auto s = db_.prepare("UPDATE users SET disabled = ?2 WHERE name = ?1");
  s.bind(1, name).bind(2, disabled ? 1 : 0);
  s.step();
  return db_.scalar_int("SELECT changes()") > 0;
}

bool state_store::set_password(const std::string& name, const std::string& hash, bool must_change) {
  auto s = db_.prepare("UPDATE users SET password_hash = ?2, must_change = ?3 WHERE name = ?1");
  s.bind(1, name).bind(2, hash).bind(3, must_change ? 1 : 0);
  s.step();
  return db_.scalar_int("SELECT changes()") > 0;
}

void state_store::in_transaction(const std::function<void()>& work) {
  db_.exec("BEGIN IMMEDIATE");
  try {
    work();
    db_.exec("COMMIT");
  } catch (...) {
    sqlite3_exec(db_.handle(), "ROLLBACK", nullptr, nullptr, nullptr);
    throw;
  }
}

std::optional<totp_row> state_store::find_totp(const std::string& user) {
  auto s = db_.prepare(
      "SELECT secret_sealed, last_step, enrolled_at, (SELECT count(*) FROM user_recovery_codes r WHERE r.user = t.user) "
      "FROM user_totp t WHERE user = ?1");
  s.bind(1, user);
  if (!s.step()) return std::nullopt;
  return totp_row{std::string(s.col_text(0)), s.col_int(1), s.col_int(2), static_cast<int>(s.col_int(3))};
}

void state_store::add_user_with_totp(const user_row& u, const std::string& secret_sealed,
                                     const std::vector<std::string>& code_hashes) {
  in_transaction([&] {
    add_user(u);
    write_totp(u.name, secret_sealed, code_hashes, u.created_at);
  });
}

void state_store::set_totp(const std::string& user, const std::string& secret_sealed,
                           const std::vector<std::string>& code_hashes, micros now) {
  in_transaction([&] {
    write_totp(user, secret_sealed, code_hashes, now);
  });
}

void state_store::write_totp(const std::string& user, const std::string& secret_sealed,
                             const std::vector<std::string>& code_hashes, micros now) {
  auto del = db_.prepare("DELETE FROM user_recovery_codes WHERE user = ?1");
  del.bind(1, user);
  del.step();
  auto s = db_.prepare(
      "INSERT OR REPLACE INTO user_totp(user, secret_sealed, last_step, enrolled_at) VALUES (?1, ?2, 0, ?3)");
  s.bind(1, user).bind(2, secret_sealed).bind(3, now);
  s.step();
  for (auto& h : code_hashes) {
    auto c = db_.prepare("INSERT INTO user_recovery_codes(user, code_hash) VALUES (?1, ?2)");
    c.bind(1, user).bind(2, h);
    c.step();
  }
}

void state_store::restore_recovery_code(const std::string& user, const std::string& code_hash) {
  auto s = db_.prepare("INSERT OR IGNORE INTO user_recovery_codes(user, code_hash) VALUES (?1, ?2)");
  s.bind(1, user).bind(2, code_hash);
  s.step();
}

bool state_store::use_totp_step(const std::string& user, std::int64_t step) {
  auto s = db_.prepare("UPDATE user_totp SET last_step = ?2 WHERE user = ?1 AND last_step < ?2");
  s.bind(1, user).bind(2, step);
  s.step();
  return db_.scalar_int("SELECT changes()") > 0;
}

bool state_store::use_recovery_code(const std::string& user, const std::string& code_hash) {
  auto s = db_.prepare("DELETE FROM user_recovery_codes WHERE user = ?1 AND code_hash = ?2");
  s.bind(1, user).bind(2, code_hash);
  s.step();
  return db_.scalar_int("SELECT changes()") > 0;
}

std::optional<machine_row> state_store::find_machine(const std::string& machine) {
  auto s = db_.prepare(std::string("SELECT ") + kMachineCols + " FROM machines WHERE machine = ?1");
  s.bind(1, machine);
  if (!s.step()) return std::nullopt;
  return machine_from(s);
}

void state_store::relax_durability_for_snapshots() { db_.exec("PRAGMA synchronous = NORMAL"); }

std::int64_t state_store::data_version() { return db_.scalar_int("PRAGMA data_version"); }

std::vector<machine_row> state_store::machines() {
  auto s = db_.prepare(std::string("SELECT ") + kMachineCols + " FROM machines ORDER BY machine");
  std::vector<machine_row> out;
  while (s.step()) out.push_back(machine_from(s));
  return out;
}

void state_store::add_machine(const machine_row& m) {
  auto s = db_.prepare(
      "INSERT INTO machines(machine, verifier, md5_enabled, md5_secret, revoked, enrolled_at) "
      "VALUES (?1, ?2, ?3, ?4, 0, ?5)");
  s.bind(1, m.machine).bind(2, m.verifier).bind(3, m.md5_enabled ? 1 : 0)
      .bind(4, m.md5_secret_sealed).bind(5, m.enrolled_at);
  s.step();
}

bool state_store::replace_machine(const machine_row& m) {
  auto s = db_.prepare(
      "UPDATE machines SET verifier = ?2, md5_enabled = ?3, md5_secret = ?4, revoked = 0, "
      "enrolled_at = ?5, revoked_at = 0 WHERE machine = ?1");
  s.bind(1, m.machine).bind(2, m.verifier).bind(3, m.md5_enabled ? 1 : 0)
      .bind(4, m.md5_secret_sealed).bind(5, m.enrolled_at);
  s.step();
  return db_.scalar_int("SELECT changes()") > 0;
}

bool state_store::revoke_machine(const std::string& machine, micros now) {
  auto s = db_.prepare("UPDATE machines SET revoked = 1, revoked_at = ?2 WHERE machine = ?1 AND revoked = 0");
  s.bind(1, machine).bind(2, now);
  s.step();
  return db_.scalar_int("SELECT changes()") > 0;
}

void state_store::put_live_session(const live_session_row& r) {
  auto s = db_.prepare(
      "INSERT OR REPLACE INTO live_sessions(id, machine, snapshot, journal_seq, updated_at) "
      "VALUES (?1, ?2, ?3, ?4, ?5)");
  s.bind(1, r.id).bind(2, r.machine).bind(3, r.snapshot).bind(4, r.journal_seq).bind(5, r.updated_at);
  s.step();
}

void state_store::delete_live_session(const std::string& id) {
  auto s = db_.prepare("DELETE FROM live_sessions WHERE id = ?1");
  s.bind(1, id);
  s.step();
}

std::vector<live_session_row> state_store::live_sessions() {
  auto s = db_.prepare("SELECT id, machine, snapshot, journal_seq, updated_at FROM live_sessions ORDER BY id");
  std::vector<live_session_row> out;
  while (s.step())
    out.push_back({std::string(s.col_text(0)), std::string(s.col_text(1)), std::string(s.col_text(2)), s.col_int(3),
                   s.col_int(4)});
  return out;
}

void state_store::receipt_delivered(const std::string& session_id, const std::string& machine, micros now) {
  in_transaction([&] {
    auto s = db_.prepare("INSERT OR IGNORE INTO receipts_delivered(session_id, machine, delivered_at) VALUES (?1, ?2, ?3)");
    s.bind(1, session_id).bind(2, machine).bind(3, now);
    s.step();
    // Only the last kOwedReceipts ended sessions of a machine are ever owed: older rows serve
    // nothing, and a machine's rows stay bounded however many sessions it had.
    auto prune = db_.prepare(
        "DELETE FROM receipts_delivered WHERE machine = ?1 AND session_id NOT IN "
        "(SELECT session_id FROM receipts_delivered WHERE machine = ?1 ORDER BY delivered_at DESC, session_id LIMIT 32)");
    prune.bind(1, machine);
    prune.step();
  });
}

std::set<std::string> state_store::delivered_receipts(const std::string& machine, const std::vector<std::string>& sessions) {
  auto s = db_.prepare("SELECT 1 FROM receipts_delivered WHERE session_id = ?1 AND machine = ?2");
  std::set<std::string> out;
  for (auto& id : sessions) {
    s.reset();
    s.bind(1, id).bind(2, machine);
    if (s.step()) out.insert(id);
  }
  return out;
}

void state_store::add_token(const token_row& t) {
  auto s = db_.prepare(
      "INSERT INTO tokens(token_hash, user, created_at, expires_at, revoked) VALUES (?1, ?2, ?3, ?4, 0)");
  s.bind(1, t.token_hash).bind(2, t.user).bind(3, t.created_at).bind(4, t.expires_at);
  s.step();
}

std::optional<token_row> state_store::find_token(const std::string& hash) {
  auto s = db_.prepare(
      "SELECT token_hash, user, created_at, expires_at, revoked FROM tokens WHERE token_hash = ?1");
  s.bind(1, hash);
  if (!s.step()) return std::nullopt;
  return token_row{std::string(s.col_text(0)), std::string(s.col_text(1)), s.col_int(2),
                   s.col_int(3), s.col_int(4) != 0};
}

std::vector<token_row> state_store::tokens(const std::string& user) {
  auto s = db_.prepare(
      "SELECT token_hash, user, created_at, expires_at, revoked FROM tokens WHERE ?1 = '' OR user = ?1 "
      "ORDER BY created_at DESC, token_hash");
  s.bind(1, user);
  std::vector<token_row> out;
  while (s.step())
    out.push_back({std::string(s.col_text(0)), std::string(s.col_text(1)), s.col_int(2), s.col_int(3),
                   s.col_int(4) != 0});
  return out;
}

std::optional<token_row> state_store::find_token_by_id(const std::string& id_in) {
  if (!is_token_id(id_in)) return std::nullopt;
  std::string id = id_in;  // hex digits in either case; the hash is stored in lower case
  for (auto& c : id) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  // The primary key's index serves the prefix range.
  auto s = db_.prepare(
      "SELECT token_hash, user, created_at, expires_at, revoked FROM tokens "
      "WHERE token_hash >= ?1 AND token_hash < ?1 || 'g' LIMIT 2");
  s.bind(1, id);
  std::optional<token_row> found;
  while (s.step()) {
    if (found) return std::nullopt;  // two tokens with one id: refuse to guess
    found = token_row{std::string(s.col_text(0)), std::string(s.col_text(1)), s.col_int(2), s.col_int(3),
                      s.col_int(4) != 0};
  }
  return found;
}

bool state_store::revoke_token(const std::string& hash) {
  auto s = db_.prepare("UPDATE tokens SET revoked = 1 WHERE token_hash = ?1 AND revoked = 0");
  s.bind(1, hash);
  s.step();
  return db_.scalar_int("SELECT changes()") > 0;
}

std::string token_id(std::string_view hash) { return std::string(hash.substr(0, 16)); }

bool is_token_id(std::string_view id) {
  if (id.size() != 16) return false;
  for (char c : id)
    if (!std::isxdigit(static_cast<unsigned char>(c))) return false;
  return true;
}

master_key master_key::load_or_create(const std::filesystem::path& file) {
  if (sodium_init() < 0) throw std::runtime_error("libsodium failed to initialise");
  master_key k;
  if (!std::filesystem::exists(file)) {
    crypto_secretbox_keygen(k.key_.data());
    write_file_exclusive(file, to_hex(k.key_) + "\n", 0600);
    return k;
  }
  if (is_group_or_world_accessible(file))
    throw std::runtime_error(file.string() + " is readable by group or others; chmod 600 it");
  auto text = read_file(file, 4096);
  while (!text.empty() && (text.back() == '\n' || text.back() == '\r')) text.pop_back();
  auto raw = from_hex(text);
  if (!raw || raw->size() != k.key_.size()) throw std::runtime_error(file.string() + " is malformed");
  std::copy(raw->begin(), raw->end(), k.key_.begin());
  sodium_memzero(raw->data(), raw->size());
  return k;
}

master_key::~master_key() { sodium_memzero(key_.data(), key_.size()); }

std::string master_key::seal(std::string_view plaintext) const {
  bytes out(crypto_secretbox_NONCEBYTES + crypto_secretbox_MACBYTES + plaintext.size());
  randombytes_buf(out.data(), crypto_secretbox_NONCEBYTES);
  crypto_secretbox_easy(out.data() + crypto_secretbox_NONCEBYTES,
                        reinterpret_cast<const unsigned char*>(plaintext.data()), plaintext.size(),
                        out.data(), key_.data());
  return to_base64(out);
}

std::optional<std::string> master_key::open(std::string_view sealed) const {
  auto raw = from_base64(sealed);
  if (!raw || raw->size() < crypto_secretbox_NONCEBYTES + crypto_secretbox_MACBYTES) return std::nullopt;
  std::string out(raw->size() - crypto_secretbox_NONCEBYTES - crypto_secretbox_MACBYTES, '\0');
  if (crypto_secretbox_open_easy(reinterpret_cast<unsigned char*>(out.data()),
                                 raw->data() + crypto_secretbox_NONCEBYTES,
                                 raw->size() - crypto_secretbox_NONCEBYTES, raw->data(),
                                 key_.data()) != 0)
    return std::nullopt;
  return out;
}

std::string new_token() { return "rsg_" + auth::random_token(32); }

std::string token_hash(std::string_view token) {
  std::array<std::uint8_t, 32> d{};
  crypto_hash_sha256(d.data(), reinterpret_cast<const unsigned char*>(token.data()), token.size());
  return to_hex(d);
}

}  // namespace rsgate::gateway
