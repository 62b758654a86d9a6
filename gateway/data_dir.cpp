// See data_dir.hpp.
#include "gateway/data_dir.hpp"

#include <sqlite3.h>
#include <sys/stat.h>

#include <boost/json/serialize.hpp>
#include <boost/json/value.hpp>

#include "auth/password.hpp"
#include "core/files.hpp"
#include "core/sqlite.hpp"
#include "gateway/pki.hpp"
#include "journal/keys.hpp"
#include "journal/store.hpp"
#include "journal/writer.hpp"
#include "schema/schema.hpp"

namespace rsgate::gateway {
namespace fs = std::filesystem;

bool is_prepared(const data_layout& d) {
  return fs::exists(d.journal_db()) && fs::exists(d.signing_key()) && fs::exists(d.hmac_key());
}

namespace {

// The journal's signing and HMAC keys: created when missing, unless a journal already exists
// (a new key would not verify what it holds). True when a key was created.
bool prepare_keys(const data_layout& d) {
  if (fs::exists(d.journal_db())) {
    for (auto key : {d.signing_key(), d.hmac_key()})
      if (!fs::exists(key))
        throw std::runtime_error(
            d.journal_db().string() + " exists but " + key.string() +
            " is missing: restore keys/ from a backup (a new key would not verify the journal "
            "written so far)");
  }
  bool created = false;
  if (!fs::exists(d.signing_key())) {
    auto k = journal::signing_key::generate();
    k.save(d.signing_key());
    write_file_atomic(d.signing_pub(), journal::format_public_key(k.pub()), 0644);
    created = true;
  }
  if (!fs::exists(d.signing_pub())) {
    // Only the public half was lost: it follows from the private key.
    write_file_atomic(d.signing_pub(),
                      journal::format_public_key(journal::signing_key::load(d.signing_key()).pub()), 0644);
  }
  if (!fs::exists(d.hmac_key())) {
    journal::hmac_key::generate().save(d.hmac_key());
    created = true;
  }
  return created;
}

// A development CA (kept if present) and a server certificate from it.
void make_dev_certificates(const data_layout& d, const prepare_options& o) {
  issued_pair ca;
  if (fs::exists(d.ca_cert()) && fs::exists(d.ca_key())) {
    ca = {read_file(d.ca_cert()), read_file(d.ca_key())};
  } else {
    ca = make_ca("rsgate development CA", 3650);
    write_file_atomic(d.ca_key(), ca.key_pem, 0600);
    write_file_atomic(d.ca_cert(), ca.cert_pem, 0644);
  }
  auto server = make_server_cert(ca, o.server_names.empty() ? "localhost" : o.server_names[0], o.server_names, 825);
  write_file_atomic(d.server_key(), server.key_pem, 0600);
  write_file_atomic(d.server_cert(), server.cert_pem + ca.cert_pem, 0644);
}

// journal.db and state.db, created with mode 0600 when new; state.db migrated. True when
// either was created.
bool prepare_databases(const data_layout& d) {
  bool created = false;
  bool new_journal = !fs::exists(d.journal_db());
  { auto j = journal::open_for_writing(d.journal_db()); }
  if (new_journal) {
    ::chmod(d.journal_db().c_str(), 0600);
    created = true;
  }
  bool new_state = !fs::exists(d.state_db());
  sqlite::db state(d.state_db(), sqlite::open_mode::create);
  if (new_state) {
    ::chmod(d.state_db().c_str(), 0600);
    created = true;
  }
  state.exec("PRAGMA journal_mode = WAL");
  state.exec("PRAGMA synchronous = FULL");
  sqlite::migrate(state, schema::state_migrations, schema::kStateApplicationId);
  return created;
}

}  // namespace

prepare_result prepare_data_dir(const data_layout& d, const prepare_options& o) {
  prepare_result r;
  make_private_dir(d.dir, 0700);
  make_private_dir(d.keys(), 0700);
  r.created_anything = prepare_keys(d);
  if (o.make_certificates && !fs::exists(d.server_cert())) {
    make_dev_certificates(d, o);
    r.created_anything = true;
  }
  if (prepare_databases(d)) r.created_anything = true;
  return r;
}

std::optional<std::string> create_first_admin(const data_layout& d, journal::writer& jw,
                                              const std::string& admin_name,
                                              const std::string& created_by,
                                              const std::string& source) {
  sqlite::db state(d.state_db(), sqlite::open_mode::read_write);
  state.exec("PRAGMA synchronous = FULL");
  if (state.scalar_int("SELECT count(*) FROM users") != 0) return std::nullopt;
  journal::entry e;
  e.kind = "admin.user";
  e.actor = created_by;
  e.source = source;
  e.subject = admin_name;
  boost::json::object det;
  det["action"] = "create";
  det["user"] = admin_name;
  det["role"] = "admin";
  det["one_time_password"] = true;
  det["totp"] = true;  // enrolled by the caller, right after (gateway/accounts.hpp)
  e.detail = boost::json::serialize(det);
  auto r = jw.append_sync(std::move(e));
  if (!r.ok()) throw std::runtime_error("the journal cannot write, no administrator created: " + r.message);
  // 100 bits, Crockford base32: typed once at first login, then changed.
  auto password = auth::random_secret(100);
  auto ins = state.prepare(
      "INSERT INTO users(name, role, password_hash, must_change, created_at) "
      "VALUES (?1, 'admin', ?2, 1, ?3)");
  ins.bind(1, admin_name).bind(2, auth::hash_password(password)).bind(3, r.ts);
  ins.step();
  return password;
}

std::optional<std::string> journal_gateway_name(const data_layout& d) {
  if (!fs::exists(d.journal_db())) return std::nullopt;
  auto db = journal::open_for_reading(d.journal_db());
  return journal::meta_gateway(db);
}

}  // namespace rsgate::gateway
