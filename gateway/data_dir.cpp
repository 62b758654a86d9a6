// See data_dir.hpp.
#include "gateway/data_dir.hpp"

#include <sqlite3.h>
#include <sys/stat.h>

#include "auth/password.hpp"
#include "core/files.hpp"
#include "core/sqlite.hpp"
#include "gateway/pki.hpp"
#include "journal/keys.hpp"
#include "journal/store.hpp"
#include "schema/schema.hpp"

namespace rsgate::gateway {
namespace fs = std::filesystem;

bool is_prepared(const data_layout& d) {
  return fs::exists(d.journal_db()) && fs::exists(d.signing_key()) && fs::exists(d.hmac_key());
}

prepare_result prepare_data_dir(const data_layout& d, const prepare_options& o, micros now) {
  prepare_result r;
  make_private_dir(d.dir, 0700);
  make_private_dir(d.keys(), 0700);

  if (!fs::exists(d.signing_key())) {
    auto k = journal::signing_key::generate();
    k.save(d.signing_key());
    write_file_atomic(d.signing_pub(), journal::format_public_key(k.pub()), 0644);
    r.created_anything = true;
  }
  if (!fs::exists(d.hmac_key())) {
    journal::hmac_key::generate().save(d.hmac_key());
    r.created_anything = true;
  }
  if (o.make_certificates && !fs::exists(d.server_cert())) {
    issued_pair ca;
    if (fs::exists(d.ca_cert()) && fs::exists(d.ca_key())) {
      ca = {read_file(d.ca_cert()), read_file(d.ca_key())};
    } else {
      ca = make_ca("rsgate development CA", 3650);
      write_file_atomic(d.ca_key(), ca.key_pem, 0600);
      write_file_atomic(d.ca_cert(), ca.cert_pem, 0644);
    }
    auto server = make_server_cert(ca, o.server_names.empty() ? "localhost" : o.server_names[0],
                                   o.server_names, 825);
    write_file_atomic(d.server_key(), server.key_pem, 0600);
    write_file_atomic(d.server_cert(), server.cert_pem + ca.cert_pem, 0644);
    r.created_anything = true;
  }

  bool new_journal = !fs::exists(d.journal_db());
  { auto j = journal::open_for_writing(d.journal_db()); }
  if (new_journal) {
    ::chmod(d.journal_db().c_str(), 0600);
    r.created_anything = true;
  }

  bool new_state = !fs::exists(d.state_db());
  sqlite::db state(d.state_db(), sqlite::open_mode::create);
  if (new_state) ::chmod(d.state_db().c_str(), 0600);
  state.exec("PRAGMA journal_mode = WAL");
  state.exec("PRAGMA synchronous = FULL");
  sqlite::migrate(state, schema::state_migrations, schema::kStateApplicationId);
  if (state.scalar_int("SELECT count(*) FROM users") == 0) {
    // 100 bits, Crockford base32: typed once at first login, then changed.
    auto password = auth::random_secret(100);
    auto ins = state.prepare(
        "INSERT INTO users(name, role, password_hash, must_change, created_at) "
        "VALUES (?1, 'admin', ?2, 1, ?3)");
    ins.bind(1, o.admin_name).bind(2, auth::hash_password(password)).bind(3, now);
    ins.step();
    r.admin_password = std::move(password);
    r.created_anything = true;
  }
  return r;
}

}  // namespace rsgate::gateway
