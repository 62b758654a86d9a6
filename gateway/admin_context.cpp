// See admin_context.hpp.
#include "gateway/admin_context.hpp"

#include <fmt/format.h>
#include <pwd.h>
#include <unistd.h>

#include <boost/json/serialize.hpp>
#include <boost/program_options.hpp>

#include "core/cli.hpp"
#include "journal/journal.hpp"

namespace po = boost::program_options;

namespace rsgate::gateway {
namespace {

const data_layout& prepared(const data_layout& l) {
  if (!is_prepared(l))
    throw cli::usage_error(fmt::format("{} is not a prepared data directory (rsgate init --data DIR)",
                                       l.dir.string()));
  return l;
}

journal::writer open_journal(const data_layout& l, const admin_target& t) {
  journal::writer_options o;
  // The name the gateway itself writes with: the configured one, else the journal's.
  o.gateway = !t.cfg.gateway_name.empty() ? t.cfg.gateway_name : journal_gateway_name(l).value_or("rsgate");
  o.probe_every = 0;
  o.checkpoint_every = 0;
  return journal::writer(l.journal_db(), journal::signing_key::load(l.signing_key()), o);
}

// {"action": ..., then what was asked}: the action first, as in every admin entry.
std::string detail_of(const attempt& a, const std::string& reason = "") {
  boost::json::object det{{"action", a.action}};
  for (auto& kv : a.detail) det[kv.key()] = kv.value();
  if (!reason.empty()) det["reason"] = journal::escape_for_journal(reason, 1024);
  return boost::json::serialize(det);
}

std::string cli_actor() {
  auto* pw = ::getpwuid(::geteuid());
  return std::string("cli:") + (pw ? pw->pw_name : std::to_string(::geteuid()));
}

}  // namespace

admin_target resolve_target(const po::variables_map& vm) {
  admin_target t;
  std::optional<std::filesystem::path> data;
  if (vm.count("data")) data = vm["data"].as<std::string>();
  std::filesystem::path file;
  if (vm.count("config")) {
    file = vm["config"].as<std::string>();
  } else {
    // The directory's own configuration, if `rsgate init` wrote one; its `data` key is not
    // followed (we are already in the directory it describes).
    file = data.value_or("rsgate-dev") / "rsgate.toml";
    if (!std::filesystem::exists(file)) file.clear();
  }
  if (!file.empty()) {
    try {
      t.cfg = load_config(file);
    } catch (const std::exception& e) {
      throw cli::usage_error(e.what());
    }
    t.has_config = true;
  }
  if (data)
    t.data = *data;
  else if (!vm.count("config"))
    t.data = "rsgate-dev";
  else
    t.data = t.cfg.data_dir;  // gateway.data, else its default ./rsgate-dev
  return t;
}

void deny(const std::string& why) { throw admin_refusal(journal::outcome::denied, cli::kFailed, why); }
void refuse_value(const std::string& why) { throw admin_refusal(journal::outcome::error, cli::kUsage, why); }

admin_context::admin_context(const admin_target& t)
    : layout{t.data},
      target(t),
      state(prepared(layout).state_db()),
      journal(open_journal(layout, t)),
      actor(cli_actor()),
      source(journal::local_source()) {}

void admin_context::record(const attempt& a, const std::string& secret_hmac) {
  journal::entry e;
  e.kind = a.kind;
  e.actor = actor;
  e.source = source;
  e.subject = a.subject;
  e.machine = a.machine;
  e.secret_hmac = secret_hmac;
  e.detail = detail_of(a);
  auto r = journal.append_sync(std::move(e));
  if (!r.ok()) throw journal_unavailable("the journal cannot write, nothing changed: " + r.message);
}

std::string admin_context::record_refusal(const attempt& a, const admin_refusal& why) {
  journal::entry e;
  e.kind = a.kind;
  e.actor = actor;
  e.source = source;
  e.subject = a.subject;
  e.machine = a.machine;
  e.result = why.result;
  e.detail = detail_of(a, why.what());
  auto r = journal.append_sync(std::move(e));
  return r.ok() ? std::string() : r.message;
}

int journaled(admin_context& ctx, attempt& a, const std::function<int()>& action) {
  try {
    return action();
  } catch (const admin_refusal& r) {
    auto failed = ctx.record_refusal(a, r);
    std::string msg = r.what();
    if (!failed.empty()) msg += " (and the journal could not record this refusal: " + failed + ")";
    if (r.exit_code == cli::kUsage) throw cli::usage_error(msg);
    throw std::runtime_error(msg);
  }
}

}  // namespace rsgate::gateway
