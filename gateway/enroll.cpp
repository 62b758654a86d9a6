// See enroll.hpp.
#include "gateway/enroll.hpp"

#include <fmt/format.h>
#include <sodium.h>

#include <algorithm>

#include <boost/json/serialize.hpp>
#include <boost/json/value.hpp>

#include "auth/password.hpp"
#include "auth/scram.hpp"

namespace rsgate::gateway {

agent::profile enroll_machine(const data_layout& layout, journal::writer& journal, state_store& state,
                              agent::profile p, const enroll_options& how) {
  auto machine = p.machine();
  auto existing = state.find_machine(machine);
  if (existing && !how.replace)
    throw enrollment_refused(fmt::format("machine {} is enrolled already (--replace enrolls it again)", machine));
  if (sodium_init() < 0) throw std::runtime_error("libsodium failed to initialise");
  if (!how.import) {
    p.secret = auth::random_secret(160);  // 32 symbols, 160 bits
    p.mechanisms = how.md5 ? std::vector<std::string>{"scram-sha-256", "md5"} : std::vector<std::string>{"scram-sha-256"};
  } else if (p.secret.size() < 16 || p.secret.size() > 256) {
    throw std::invalid_argument("the profile's secret is not one rsgate enrolls (16 to 256 characters)");
  }
  if (!how.import) {
    // Receipts are signed with the journal key: the profile pins it, and the pair's.
    p.receipt_keys = {to_hex(journal.key().pub())};
    for (auto& k : how.receipt_keys)
      if (std::find(p.receipt_keys.begin(), p.receipt_keys.end(), k) == p.receipt_keys.end()) p.receipt_keys.push_back(k);
  }
  bytes salt(16);
  randombytes_buf(salt.data(), salt.size());
  machine_row row;
  row.machine = machine;
  row.verifier = auth::scram::make_verifier(p.secret, salt, auth::scram::kDefaultIterations).encode();
  row.md5_enabled = how.md5;
  if (how.md5) row.md5_secret_sealed = master_key::load_or_create(layout.keys() / "master.key").seal(p.secret);
  row.enrolled_at = system_clock::instance().now();
  boost::json::array names;
  for (auto& s : p.scopes) names.emplace_back(s.name);
  boost::json::object det{{"action", how.import ? "import" : existing ? "replace" : "enroll"},
                          {"md5", how.md5}, {"scopes", names}};
  if (existing) det["was_revoked"] = existing->revoked;
  journal::entry e;
  e.kind = "admin.machine";
  e.actor = how.actor;
  e.source = how.source;
  e.machine = machine;
  e.detail = boost::json::serialize(det);
  auto r = journal.append_sync(std::move(e));
  if (!r.ok()) throw enrollment_refused("the journal cannot write, nothing changed: " + r.message);
  if (existing)
    state.replace_machine(row);
  else
    state.add_machine(row);
  return p;
}

}  // namespace rsgate::gateway
