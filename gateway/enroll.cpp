// See enroll.hpp.
#include "gateway/enroll.hpp"

#include <fmt/format.h>
#include <sodium.h>

#include <boost/json/serialize.hpp>
#include <boost/json/value.hpp>

#include "auth/password.hpp"
#include "auth/scram.hpp"

namespace rsgate::gateway {

agent::profile enroll_machine(const data_layout& layout, journal::writer& journal, state_store& state,
                              agent::profile p, bool md5, const std::string& actor) {
  auto machine = p.machine();
  if (state.find_machine(machine)) throw enrollment_refused(fmt::format("machine {} is enrolled already", machine));
  if (sodium_init() < 0) throw std::runtime_error("libsodium failed to initialise");
  p.secret = auth::random_secret(160);  // 32 symbols, 160 bits
  p.mechanisms = md5 ? std::vector<std::string>{"scram-sha-256", "md5"} : std::vector<std::string>{"scram-sha-256"};
  bytes salt(16);
  randombytes_buf(salt.data(), salt.size());
  machine_row row;
  row.machine = machine;
  row.verifier = auth::scram::make_verifier(p.secret, salt, auth::scram::kDefaultIterations).encode();
  row.md5_enabled = md5;
  if (md5) row.md5_secret_sealed = master_key::load_or_create(layout.keys() / "master.key").seal(p.secret);
  row.enrolled_at = system_clock::instance().now();
  boost::json::array names;
  for (auto& s : p.scopes) names.emplace_back(s.name);
  journal::entry e;
  e.kind = "admin.machine";
  e.actor = actor;
  e.machine = machine;
  e.detail = boost::json::serialize(boost::json::object{{"action", "enroll"}, {"md5", md5}, {"scopes", names}});
  auto r = journal.append_sync(std::move(e));
  if (!r.ok()) throw enrollment_refused("the journal cannot write, nothing changed: " + r.message);
  state.add_machine(row);
  return p;
}

}  // namespace rsgate::gateway
