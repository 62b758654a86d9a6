// See commands.hpp.
#include "gateway/commands.hpp"

#include <fmt/format.h>
#include <malloc.h>
#include <unistd.h>

#include <boost/json/serialize.hpp>
#include <boost/json/value.hpp>
#include <boost/program_options.hpp>
#include <csignal>
#include <iostream>

#include "protocol/profile.hpp"
#include "core/files.hpp"
#include "core/cli.hpp"
#include "core/log.hpp"
#include "gateway/accounts.hpp"
#include "gateway/config.hpp"
#include "gateway/data_dir.hpp"
#include "gateway/enroll.hpp"
#include "gateway/http/routes.hpp"
#include "gateway/metrics.hpp"
#include "gateway/peer_client.hpp"
#include "gateway/runtime.hpp"
#include "gateway/service.hpp"
#include "journal/journal.hpp"

namespace po = boost::program_options;

namespace rsgate::gateway {
namespace {

using cli::kOk, cli::kFailed, cli::kUsage, cli::usage_error;
constexpr std::string_view kVersion = "0.1.0";


std::string default_gateway_name() {
  char host[256] = {};
  ::gethostname(host, sizeof host - 1);
  std::string name = host[0] ? host : "gateway";
  return name.substr(0, 64);
}

po::variables_map parse(const std::vector<std::string>& args, const po::options_description& d) {
  po::variables_map vm;
  std::vector<std::string> rest(args.begin() + 1, args.end());
  po::store(po::command_line_parser(rest).options(d).run(), vm);
  po::notify(vm);
  return vm;
}

journal::writer_options writer_opts(const config& c) {
  journal::writer_options o;
  o.gateway = c.gateway_name;
  o.checkpoint_every_entries = c.checkpoint_entries;
  o.checkpoint_every = c.checkpoint_seconds * 1'000'000;
  o.probe_every = c.probe_ms * 1000;
  o.max_queue = static_cast<std::size_t>(c.max_queue);
  return o;
}

// Records that the gateway stops (best effort when it stops because of an error).
journal::append_result journal_stop(journal::writer& jw, journal::outcome result,
                                    std::string_view key, std::string_view value) {
  journal::entry stop;
  stop.kind = "gateway.stop";
  stop.actor = "gateway";
  stop.source = journal::local_source();  // who ran the gateway (PCI DSS 10.2.2)
  stop.result = result;
  boost::json::object det;
  det[key] = value;
  stop.detail = boost::json::serialize(det);
  return jw.append_sync(std::move(stop));
}

// The development gateway's demo machine: enrolled once, its profile kept in the data
// directory and pointed at wherever the tunnel listens this time.
std::filesystem::path demo_agent_profile(const data_layout& layout, journal::writer& jw, const std::string& tunnel) {
  auto file = layout.dir / "demo-agent.toml";
  agent::profile p;
  if (std::filesystem::exists(file)) {
    p = agent::load_profile(file);
  } else {
    p.type = "9999";
    p.model = "DEV";
    p.serial = "DEMO001";
    p.server_name = "localhost";
    p.ca_pem = read_file(layout.ca_cert());
    p.scopes = {agent::parse_scope_mapping("local-ssh=127.0.0.1:22")};
    state_store st(layout.state_db());
    p = enroll_machine(layout, jw, st, std::move(p), {.actor = "rsgate serve --dev", .source = journal::local_source(), .receipt_keys = {}});
  }
  p.primary = tunnel;
  // A demo profile from before receipts: it learns the journal key that signs them.
  if (p.receipt_keys.empty()) p.receipt_keys = {to_hex(jw.key().pub())};
  write_file_atomic(file, agent::to_toml(p), 0600);
  return file;
}

// A path as a shell word: quoted when it holds anything but letters, digits and ./_-.
std::string shell_word(const std::string& s) {
  if (!s.empty() && s.find_first_not_of("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789./_-") ==
                        std::string::npos)
    return s;
  std::string out = "'";
  for (char c : s) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return out + "'";
}

// rsgate-agent beside this program (an installation) or in the build tree's agent/ folder
// (`make run`), so the printed line works without rsgate-agent on the PATH.
std::string agent_command() {
  std::error_code ec;
  auto self = std::filesystem::read_symlink("/proc/self/exe", ec);
  if (!ec) {
    for (auto candidate : {self.parent_path() / "rsgate-agent",
                           self.parent_path().parent_path() / "agent" / "rsgate-agent"})
      if (std::filesystem::is_regular_file(candidate, ec) && ::access(candidate.c_str(), X_OK) == 0)
        return shell_word(candidate.string());
  }
  return "rsgate-agent";
}

// The first administrator's one-time password, and its TOTP enrolment (an admin signs in
// with both): the otpauth URI on a line of its own, its QR code on a terminal, the recovery
// codes. All shown only now.
void print_first_admin(std::ostream& out, const prepare_options& po_, const std::string& pw, const data_layout& layout,
                       const std::string& issuer) {
  out << fmt::format(
      "rsgate: one-time password for administrator '{}': {}\n"
      "rsgate: it is shown only now; it must be changed at first login.\n",
      po_.admin_name, pw);
  state_store st(layout.state_db());
  auto e = enrol_totp(st, layout, po_.admin_name, issuer, system_clock::instance().now());
  out << fmt::format("rsgate: TOTP for '{}': add it to an authenticator app:\n{}\n", po_.admin_name, e.uri);
  if (&out == &std::cout && ::isatty(STDOUT_FILENO)) out << qr_terminal(e.uri);
  out << "rsgate: recovery codes, each usable once in place of a TOTP code:\n";
  for (auto& c : e.recovery_codes) out << "  " << c << "\n";
}

// serve's flags over the configuration file's settings; bad ones are usage errors.
config serve_config(const po::variables_map& vm, bool dev) {
  if (dev && vm.count("config")) throw usage_error("--dev and --config exclude each other");
  config c;
  if (vm.count("config")) {
    try {
      c = load_config(vm["config"].as<std::string>());
    } catch (const std::exception& e) {
      throw usage_error(e.what());
    }
  }
  if (vm.count("data")) c.data_dir = vm["data"].as<std::string>();
  if (vm.count("name")) {
    c.gateway_name = vm["name"].as<std::string>();
    if (!is_valid_gateway_name(c.gateway_name))
      throw usage_error("invalid --name: 1 to 64 of A-Z a-z 0-9 . _ -");
  }
  if (vm.count("tunnel-listen")) c.tunnel_on_http = vm["tunnel-listen"].as<std::string>() == "http";
  for (const char* flag : {"http-listen", "tunnel-listen"}) {
    if (!vm.count(flag) || (c.tunnel_on_http && std::string_view(flag) == "tunnel-listen")) continue;
    auto a = parse_listen(vm[flag].as<std::string>());
    if (!a)
      throw usage_error(fmt::format("invalid --{} '{}': expected IP:PORT, e.g. 127.0.0.1:8443",
                                    flag, vm[flag].as<std::string>()));
    (std::string_view(flag) == "http-listen" ? c.http : c.tunnel) = *a;
  }
  if (vm.count("log-level")) {
    c.log_level = vm["log-level"].as<std::string>();
    if (c.log_level != "debug" && c.log_level != "info" && c.log_level != "warn" &&
        c.log_level != "error")
      throw usage_error("invalid --log-level: expected debug, info, warn or error");
  }
  return c;
}

// The data directory serve runs on: created with --dev, else it must have been prepared.
data_layout serve_data_dir(const config& c, bool dev, const prepare_options& prep, std::ostream& out) {
  data_layout layout{c.data_dir};
  if (dev) {
    bool existed = std::filesystem::exists(layout.journal_db());
    (void)prepare_data_dir(layout, prep);
    out << fmt::format("rsgate: development gateway, data directory {} ({})\n", c.data_dir.string(),
                       existed ? "existing" : "created");
    out << fmt::format("rsgate: development CA certificate: {}\n", layout.ca_cert().string());
  } else if (!is_prepared(layout)) {
    throw usage_error(fmt::format(
        "{} is not a prepared data directory: run `rsgate init --data {}` (or `rsgate serve --dev`)",
        c.data_dir.string(), c.data_dir.string()));
  }
  return layout;
}

journal::append_result journal_start(journal::writer& jw, const config& c, bool dev) {
  journal::entry start;
  start.kind = "gateway.start";
  start.actor = "gateway";
  start.source = journal::local_source();
  boost::json::object det;
  det["version"] = kVersion;
  det["dev"] = dev;
  det["http_listen"] = fmt::format("{}:{}", c.http.host, c.http.port);
  det["pid"] = static_cast<std::int64_t>(::getpid());
  start.detail = boost::json::serialize(det);
  return jw.append_sync(std::move(start));
}

runtime_options runtime_for(const config& c, service& sessions) {
  runtime_options ro;
  ro.host = c.http.host;
  ro.port = c.http.port;
  ro.cert_file = c.cert_file().string();
  ro.key_file = c.key_file().string();
  ro.limits = c.limits;
  ro.threads = c.threads;
  ro.workers = c.workers;
  ro.sessions = &sessions;
  ro.tunnel_host = c.tunnel.host;
  ro.tunnel_port = c.tunnel.port;
  ro.tunnel_on_http = c.tunnel_on_http;
  ro.drain_s = c.drain_seconds;
  ro.rekey_interval_s = c.rekey_interval_s;
  ro.keepalive_s = c.keepalive_s;
  ro.grace_s = c.grace_s;
  ro.max_tunnels = c.max_tunnels;
  ro.reauth_s = c.reauth_s;
  ro.peer_url = c.peer_url;
  ro.peer_ca = (c.peer_ca.empty() ? c.data_dir / "ca.pem" : c.peer_ca).string();
  ro.peer_timeout_ms = c.peer_timeout_ms;
  ro.log_level = c.log_level;
  return ro;
}

// The gateway's life once its journal is open: the session service, the listeners, and
// at the end every session and the stop journaled.
// The settings of `now` that differ from `running` and take a restart (SIGHUP applies the
// certificate, the tunnel timings, the grace and the log level only).
std::vector<std::string> restart_required(const config& running, const config& now) {
  std::vector<std::string> v;
  auto differs = [&v](bool d, const char* key) {
    if (d) v.emplace_back(key);
  };
  differs(now.data_dir != running.data_dir, "gateway.data");
  differs(!now.gateway_name.empty() && now.gateway_name != running.gateway_name, "gateway.name");
  differs(now.threads != running.threads, "gateway.threads");
  differs(now.workers != running.workers, "gateway.workers");
  differs(now.drain_seconds != running.drain_seconds, "gateway.drain_seconds");
  differs(now.http.host != running.http.host || now.http.port != running.http.port, "http.listen");
  auto& a = now.limits;
  auto& b = running.limits;
  differs(a.max_connections != b.max_connections || a.handshake_timeout_ms != b.handshake_timeout_ms ||
              a.request_timeout_ms != b.request_timeout_ms || a.idle_timeout_ms != b.idle_timeout_ms ||
              a.max_header_bytes != b.max_header_bytes || a.max_body_bytes != b.max_body_bytes,
          "http limits");
  differs(now.tunnel.host != running.tunnel.host || now.tunnel.port != running.tunnel.port ||
              now.tunnel_on_http != running.tunnel_on_http,
          "tunnel.listen");
  differs(now.max_tunnels != running.max_tunnels, "tunnel.max_tunnels");
  differs(now.checkpoint_entries != running.checkpoint_entries || now.checkpoint_seconds != running.checkpoint_seconds ||
              now.probe_ms != running.probe_ms || now.max_queue != running.max_queue,
          "journal");
  differs(now.peer_secret_file != running.peer_secret_file || now.peer_url != running.peer_url ||
              now.peer_ca != running.peer_ca || now.peer_timeout_ms != running.peer_timeout_ms,
          "peer");
  return v;
}

// gateway.reload: what SIGHUP did (docs/operations.md §7).
void journal_reload(journal::writer& jw, const std::string& error, const std::vector<std::string>& restart,
                    const std::string& cert_sha256) {
  journal::entry e;
  e.kind = "gateway.reload";
  e.actor = "gateway";
  e.source = journal::local_source();
  boost::json::array later;
  for (auto& k : restart) later.emplace_back(k);
  boost::json::object det{{"restart_required", std::move(later)}};
  if (error.empty()) {
    det["certificate_sha256"] = cert_sha256;
  } else {
    e.result = journal::outcome::error;
    det["reason"] = error.substr(0, 512);
  }
  e.detail = boost::json::serialize(det);
  jw.append(std::move(e), [](const journal::append_result& r) {
    if (!r.ok()) log::error("the journal could not record a reload: {}", r.message);
  });
}

int run_gateway(const config& c, const std::string& peer_secret, const std::function<config()>& reread,
                const data_layout& layout, journal::writer& jw, bool dev, std::ostream& out, std::ostream& err) {
  // As in the agent (agent/runtime.cpp): the data path allocates and frees 32 KiB frames at
  // a high rate, and glibc's default trimming of the heap's free top makes the next frames
  // fault the same pages in again (24,000 faults in 2 s in a 4-stream profile). Up to 32 MiB
  // of freed heap stay mapped instead; what the gateway holds per tunnel is bounded apart.
  mallopt(M_TRIM_THRESHOLD, 32 << 20);
  // Setting that threshold also freezes glibc's mmap threshold at 128 KiB, which would give
  // every tunnel's and HTTPS connection's TLS buffers (128 and 64 KiB plus OpenSSL's headroom)
  // a mapping of their own: an mmap, page faults and an munmap with a TLB shootdown each time
  // an idle tunnel's buffers are released and taken again (a quarter of an establishment's
  // CPU in a profile, docs/performance.md, scale). They come from the heap instead, where
  // freed buffers are reused; the housekeeping's malloc_trim gives the heap's free pages back
  // after connections closed (runtime.cpp).
  mallopt(M_MMAP_THRESHOLD, 1 << 20);
  metrics m;
  m.start_time_us = system_clock::instance().now();
  service sessions(jw, layout, system_clock::instance());
  sessions.set_reconnect_grace(static_cast<micros>(c.grace_s) * 1'000'000);
  // What POST /machines writes into profiles unless told otherwise: as `rsgate machine enroll`.
  enrollment_defaults ed;
  try {
    ed.gateway = agent_tunnel_address(c);
  } catch (const std::invalid_argument&) {
    // No address an agent could use (0.0.0.0, port 0): the request must name one.
  }
  if (!c.peer_receipt_key.empty()) ed.receipt_keys.push_back(c.peer_receipt_key);
  ed.issuer = c.gateway_name;
  sessions.set_enrollment_defaults(std::move(ed));
  // Sessions survive a restart (docs/protocol.md §9): those the last run kept in state.db wait
  // for their agents for the grace again; whatever else it left open in the journal (a crash
  // before a session's first snapshot) is closed there, so no session vanishes.
  sessions.keep_sessions_across_restarts(true);
  auto kept = sessions.restore_sessions();
  if (kept.kept) log::info("{} session(s) kept by the previous run wait for their agents", kept.kept);
  if (kept.ended) log::info("journaled the end of {} session(s) left open by the previous run", kept.ended);
  routes api(jw, m, &sessions);
  auto ro = runtime_for(c, sessions);
  ro.peer_secret = peer_secret;
  if (reread) {
    ro.reload = [&c, &sessions, &ro, reread](std::vector<std::string>& restart) {
      config now = reread();
      restart = restart_required(c, now);
      auto next = runtime_for(now, sessions);
      // What takes a restart stays as it runs.
      next.host = ro.host;
      next.port = ro.port;
      next.tunnel_host = ro.tunnel_host;
      next.tunnel_port = ro.tunnel_port;
      next.tunnel_on_http = ro.tunnel_on_http;
      return next;
    };
    ro.reloaded = [&jw](const std::string& error, const std::vector<std::string>& restart, const std::string& sha) {
      journal_reload(jw, error, restart, sha);
    };
  }
  ro.on_tunnel_listening = [&](const std::string& bound) {
    out << "rsgate: tunnel: " << bound << "\n";
    log::info("agent tunnels on {}", bound);
    if (dev) {
      auto demo = std::filesystem::absolute(demo_agent_profile(layout, jw, bound));
      out << "rsgate: demo machine agent: " << agent_command() << " start --profile " << shell_word(demo.string())
          << "\n";
    }
  };
  ro.on_drain = [&jw, drain = c.drain_seconds](int sig) {
    journal::entry e;
    e.kind = "gateway.drain";
    e.actor = "gateway";
    e.source = journal::local_source();
    e.detail = boost::json::serialize(boost::json::object{
        {"signal", sig == SIGTERM ? "SIGTERM" : "SIGINT"}, {"drain_seconds", drain}});
    auto r = jw.append_sync(std::move(e));
    if (!r.ok()) log::error("journal: the drain could not be recorded: {}", r.message);
  };
  ro.on_listening = [&](const std::string& bound) {
    out << "rsgate: console: https://" << bound << "/\n";
    out << "rsgate: ready (SIGINT or SIGTERM stops)\n";
    out.flush();
    log::info("listening on https://{}/ as gateway '{}'", bound, c.gateway_name);
  };
  int signo = 0;
  try {
    signo = run_https(ro, api, m);
  } catch (const std::exception& e) {
    sessions.keep_all_sessions();
    (void)journal_stop(jw, journal::outcome::error, "reason", e.what());
    jw.close();
    err << "rsgate serve: " << e.what() << "\n";
    return kFailed;
  }
  sessions.keep_all_sessions();  // the next start gives them back to their agents
  auto r = journal_stop(jw, journal::outcome::ok, "signal",
                        signo == SIGTERM ? "SIGTERM" : signo == SIGINT ? "SIGINT" : "other");
  jw.close();  // final signed checkpoint
  if (!r.ok()) {
    err << "rsgate serve: stopped, but the journal could not record it: " << r.message << "\n";
    return kFailed;
  }
  log::info("stopped cleanly at journal seq {}", jw.stats().last_seq);
  return kOk;
}

int serve(const std::vector<std::string>& args, std::ostream& out, std::ostream& err) {
  po::options_description d("rsgate serve [options]");
  d.add_options()
      ("dev", "development mode: create everything needed under --data (default ./rsgate-dev)")
      ("config", po::value<std::string>(), "TOML configuration file")
      ("data", po::value<std::string>(), "data directory (overrides the configuration)")
      ("http-listen", po::value<std::string>(), "HTTPS listen ADDR:PORT (default 127.0.0.1:8443)")
      ("tunnel-listen", po::value<std::string>(),
       "tunnel listen ADDR:PORT (default 127.0.0.1:4433), or `http`: on the HTTPS port, told apart by ALPN")
      ("name", po::value<std::string>(), "gateway name recorded in the journal")
      ("log-level", po::value<std::string>(), "debug, info, warn or error")
      ("help,h", "show this help");
  auto vm = parse(args, d);
  if (vm.count("help")) {
    out << d << "\n";
    return kOk;
  }
  const bool dev = vm.count("dev") > 0;
  auto c = serve_config(vm, dev);
  log::set_level(log::parse_level(c.log_level));
  std::string peer_secret;  // the pair's (docs/operations.md §10), checked before anything starts
  if (!c.peer_secret_file.empty()) {
    try {
      peer_secret = load_peer_secret(c.peer_secret_file);
    } catch (const std::runtime_error& e) {
      throw usage_error(e.what());
    }
  }
  prepare_options prep;
  auto layout = serve_data_dir(c, dev, prep, out);
  // Entries keep the name the journal was created with unless one is configured.
  if (c.gateway_name.empty())
    c.gateway_name = journal_gateway_name(layout).value_or(dev ? "rsgate-dev" : default_gateway_name());
  // A file-size limit must fail a journal write (and be reported), not kill the gateway.
  std::signal(SIGXFSZ, SIG_IGN);
  std::signal(SIGPIPE, SIG_IGN);
  journal::writer jw(layout.journal_db(), journal::signing_key::load(layout.signing_key()), writer_opts(c));
  if (auto r = journal_start(jw, c, dev); !r.ok()) {
    err << "rsgate serve: the journal cannot write, refusing to start: " << r.message << "\n";
    return kFailed;
  }
  if (dev) {
    std::optional<std::string> pw;
    try {
      pw = create_first_admin(layout, jw, prep.admin_name, "rsgate serve --dev", journal::local_source());
    } catch (const std::exception& e) {
      journal_stop(jw, journal::outcome::error, "reason", e.what());
      throw;
    }
    if (pw) {
      print_first_admin(out, prep, *pw, layout, c.gateway_name);
      pw->assign(pw->size(), '\0');
    }
  }
  // SIGHUP reads the configuration again, with the same flags over it.
  std::function<config()> reread;
  if (vm.count("config")) reread = [vm, dev] { return serve_config(vm, dev); };
  return run_gateway(c, peer_secret, reread, layout, jw, dev, out, err);
}

int init(const std::vector<std::string>& args, std::ostream& out, std::ostream& err) {
  po::options_description d("rsgate init --data DIR [options]");
  std::vector<std::string> names;
  d.add_options()
      ("data", po::value<std::string>(), "data directory to prepare (required)")
      ("name", po::value<std::string>(), "gateway name recorded in the journal (default: host name)")
      ("server-name", po::value(&names)->composing(),
       "DNS name or IP for the generated server certificate (repeatable)")
      ("no-certs", "do not generate a CA and server certificate (bring your own)")
      ("help,h", "show this help");
  auto vm = parse(args, d);
  if (vm.count("help")) {
    out << d << "\n";
    return kOk;
  }
  if (!vm.count("data")) throw usage_error("--data DIR is required");
  data_layout layout{vm["data"].as<std::string>()};
  std::string name = vm.count("name") ? vm["name"].as<std::string>()
                                      : journal_gateway_name(layout).value_or(default_gateway_name());
  if (!is_valid_gateway_name(name)) throw usage_error("invalid --name: 1 to 64 of A-Z a-z 0-9 . _ -");
  if (is_prepared(layout) && std::filesystem::exists(layout.config_file())) {
    err << "rsgate init: " << layout.dir.string() << " is already prepared; nothing changed\n";
    return kFailed;
  }
  prepare_options prep;
  prep.make_certificates = !vm.count("no-certs");
  if (!names.empty()) prep.server_names = names;
  (void)prepare_data_dir(layout, prep);
  std::optional<std::string> password;
  {
    journal::writer_options wo;
    wo.gateway = name;
    wo.probe_every = 0;
    journal::writer jw(layout.journal_db(), journal::signing_key::load(layout.signing_key()), wo);
    password = create_first_admin(layout, jw, prep.admin_name, "rsgate init", journal::local_source());
    jw.close();
  }
  if (!std::filesystem::exists(layout.config_file()))
    write_file_exclusive(layout.config_file(), sample_config(std::filesystem::absolute(layout.dir), name),
                         0600);
  out << fmt::format("rsgate: prepared {}\n", layout.dir.string());
  out << fmt::format("rsgate: configuration: {}\n", layout.config_file().string());
  out << fmt::format("rsgate: journal public key: {}", read_file(layout.signing_pub()));
  if (password) print_first_admin(out, prep, *password, layout, name);
  out << fmt::format("rsgate: start it with: rsgate serve --config {}\n", layout.config_file().string());
  return kOk;
}

}  // namespace

int run_serve(const std::vector<std::string>& args, std::ostream& out, std::ostream& err) {
  return cli::guarded("serve", [&] { return serve(args, out, err); }, err);
}

int run_init(const std::vector<std::string>& args, std::ostream& out, std::ostream& err) {
  return cli::guarded("init", [&] { return init(args, out, err); }, err);
}

}  // namespace rsgate::gateway
