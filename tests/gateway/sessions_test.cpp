// Session policy, table-tested without I/O: attach by key or machine with the lock, roles,
// key expiry and single use, rate limits on wrong keys, grants by scope/access type/time,
// revocation and transfer closing the right channels, ending everything.
#include "gateway/sessions.hpp"
#include "gateway/session_snapshot.hpp"

#include <catch2/catch.hpp>

using namespace rsgate;
using namespace rsgate::gateway;

namespace {
constexpr micros kMin = 60'000'000;

struct fixture {
  session_registry reg;
  micros now = 1'000'000'000'000;
  session* s = nullptr;
  fixture() {
    s = &reg.open_for_machine("S-1", "9009-42A*7801234", {"hmc", "partition:LP01"}, now);
    reg.set_key(*s, "KEYHMAC", now + 60 * kMin);
  }
  attach_request by_key(std::string user, std::string key = "KEYHMAC", role r = role::representative) {
    attach_request a;
    a.user = std::move(user);
    a.user_role = r;
    a.source = "203.0.113.7";
    a.key_hmac = std::move(key);
    a.pmr = "12345,677,000";
    return a;
  }
  refusal refused(const std::variant<session*, refusal>& v) {
    REQUIRE(std::holds_alternative<refusal>(v));
    return std::get<refusal>(v);
  }
  void attach(const std::string& user) {
    auto a = by_key(user);
    auto v = reg.check_attach(a, now);
    REQUIRE(std::holds_alternative<session*>(v));
    reg.commit_attach(*std::get<session*>(v), a, now);
  }
};
}  // namespace

TEST_CASE("attach by key locks the session to its first representative") {
  fixture f;
  f.attach("alice");
  CHECK(f.s->state == session_state::active);
  CHECK(f.s->owner == "alice");
  CHECK(f.s->pmrs == std::vector<std::string>{"12345,677,000"});
  auto r = f.refused(f.reg.check_attach(f.by_key("bob"), f.now));  // the same key again
  CHECK(r.status == 409);
  CHECK(r.code == "locked");
  CHECK_THAT(r.message, Catch::Contains("alice"));
  attach_request m = f.by_key("bob", "");
  m.machine = "9009-42A*7801234";
  CHECK(f.refused(f.reg.check_attach(m, f.now)).status == 409);
}

TEST_CASE("attach refusals: role, unknown key, expired key, unknown machine") {
  fixture f;
  CHECK(f.refused(f.reg.check_attach(f.by_key("dev", "KEYHMAC", role::developer), f.now)).status == 403);
  CHECK(f.refused(f.reg.check_attach(f.by_key("adm", "KEYHMAC", role::admin), f.now)).status == 403);
  CHECK(f.refused(f.reg.check_attach(f.by_key("aud", "KEYHMAC", role::auditor), f.now)).status == 403);
  auto bad = f.refused(f.reg.check_attach(f.by_key("alice", "WRONG"), f.now));
  CHECK(bad.status == 403);
  CHECK(bad.code == "bad_key");
  auto expired = f.refused(f.reg.check_attach(f.by_key("alice"), f.now + 61 * kMin));
  CHECK(expired.code == "key_expired");
  attach_request m = f.by_key("alice", "");
  m.machine = "1111-111*1111111";
  CHECK(f.refused(f.reg.check_attach(m, f.now)).status == 404);
  // A new key voids the old one.
  f.reg.set_key(*f.s, "NEWKEY", f.now + 60 * kMin);
  CHECK(f.refused(f.reg.check_attach(f.by_key("alice", "KEYHMAC"), f.now)).code == "bad_key");
}

TEST_CASE("wrong keys are limited per representative, per source and globally") {
  fixture f;
  for (int i = 0; i < 5; ++i) f.reg.record_bad_key(f.by_key("mallory", "X"), f.now);
  auto r = f.refused(f.reg.check_attach(f.by_key("mallory"), f.now));  // even the right key
  CHECK(r.status == 429);
  // Another representative from another address is not affected...
  auto other = f.by_key("alice");
  other.source = "198.51.100.1";
  CHECK(std::holds_alternative<session*>(f.reg.check_attach(other, f.now)));
  // ...but many representatives guessing from one address are.
  fixture g;
  for (int i = 0; i < 10; ++i) g.reg.record_bad_key(g.by_key("u" + std::to_string(i), "X"), g.now);
  CHECK(g.refused(g.reg.check_attach(g.by_key("fresh"), g.now)).status == 429);
  // And a distributed guess hits the global bound.
  fixture h;
  for (int i = 0; i < 50; ++i) {
    auto a = h.by_key("u" + std::to_string(i), "X");
    a.source = "10.0.0." + std::to_string(i);
    h.reg.record_bad_key(a, h.now);
  }
  auto a = h.by_key("fresh");
  a.source = "192.0.2.1";
  CHECK(h.refused(h.reg.check_attach(a, h.now)).status == 429);
  CHECK(std::holds_alternative<session*>(h.reg.check_attach(a, h.now + 2 * kMin)));
}

TEST_CASE("grants: only the owner grants, within offered scopes, to developers or representatives") {
  fixture f;
  f.attach("alice");
  auto g = f.reg.check_grant(*f.s, "alice", "dave", role::developer, {"hmc"}, {"ssh"}, 0, f.now);
  REQUIRE(std::holds_alternative<grant>(g));
  CHECK(std::get<grant>(g).id == "G1");
  auto by_other = f.reg.check_grant(*f.s, "bob", "dave", role::developer, {}, {}, 0, f.now);
  CHECK(std::get<refusal>(by_other).status == 403);
  auto to_admin = f.reg.check_grant(*f.s, "alice", "root", role::admin, {}, {}, 0, f.now);
  CHECK(std::get<refusal>(to_admin).status == 403);
  auto bad_scope = f.reg.check_grant(*f.s, "alice", "dave", role::developer, {"bmc"}, {}, 0, f.now);
  CHECK(std::get<refusal>(bad_scope).status == 400);
  auto past = f.reg.check_grant(*f.s, "alice", "dave", role::developer, {}, {}, f.now, f.now);
  CHECK(std::get<refusal>(past).status == 400);
  f.reg.commit_grant(*f.s, std::get<grant>(g));
  auto twice = f.reg.check_grant(*f.s, "alice", "dave", role::developer, {}, {}, 0, f.now);
  CHECK(std::get<refusal>(twice).status == 409);
}

TEST_CASE("channels: owner anywhere offered, grantee only within the grant, revoke and expiry") {
  fixture f;
  f.attach("alice");
  CHECK_FALSE(f.reg.check_channel(*f.s, "alice", "partition:LP01", "telnet-5250", f.now));
  CHECK(f.reg.check_channel(*f.s, "alice", "bmc", "ssh", f.now)->status == 400);
  CHECK(f.reg.check_channel(*f.s, "dave", "hmc", "ssh", f.now)->code == "no_grant");
  auto g = std::get<grant>(f.reg.check_grant(*f.s, "alice", "dave", role::developer, {"hmc"}, {"ssh", "sftp"},
                                             f.now + 30 * kMin, f.now));
  auto& committed = f.reg.commit_grant(*f.s, g);
  CHECK_FALSE(f.reg.check_channel(*f.s, "dave", "hmc", "ssh", f.now));
  CHECK(f.reg.check_channel(*f.s, "dave", "partition:LP01", "ssh", f.now)->code == "outside_grant");
  CHECK(f.reg.check_channel(*f.s, "dave", "hmc", "https", f.now)->code == "outside_grant");
  f.reg.commit_channel(*f.s, {.serial = 1, .id = 1, .user = "dave", .grant_id = "", .scope = "hmc", .access_type = "ssh", .opened_at = f.now});
  f.reg.commit_channel(*f.s, {.serial = 2, .id = 2, .user = "alice", .grant_id = "", .scope = "hmc", .access_type = "https", .opened_at = f.now});
  CHECK(f.s->channels.at(1).grant_id == "G1");
  // Revocation closes the grantee's channels only.
  auto rv = f.reg.check_revoke(*f.s, "alice", "G1");
  REQUIRE(std::holds_alternative<grant*>(rv));
  CHECK(std::get<grant*>(rv) == &committed);
  auto closed = f.reg.commit_revoke(*f.s, *std::get<grant*>(rv));
  CHECK(closed == std::vector<channel_serial>{1});
  CHECK(f.reg.check_channel(*f.s, "dave", "hmc", "ssh", f.now)->code == "no_grant");
  CHECK(std::get<refusal>(f.reg.check_revoke(*f.s, "alice", "G1")).status == 409);
  CHECK(std::get<refusal>(f.reg.check_revoke(*f.s, "alice", "G9")).status == 404);
  CHECK(std::get<refusal>(f.reg.check_revoke(*f.s, "dave", "G1")).status == 403);
  // Time-limited grants lapse.
  auto g2 = std::get<grant>(f.reg.check_grant(*f.s, "alice", "erin", role::representative, {}, {},
                                              f.now + kMin, f.now));
  f.reg.commit_grant(*f.s, g2);
  CHECK_FALSE(f.reg.check_channel(*f.s, "erin", "hmc", "ssh", f.now));
  CHECK(f.reg.lapsed_grants(f.now).empty());
  auto lapsed = f.reg.lapsed_grants(f.now + 2 * kMin);
  REQUIRE(lapsed.size() == 1);
  CHECK(lapsed[0] == std::pair<std::string, std::string>{"S-1", "G2"});
  CHECK(f.reg.check_channel(*f.s, "erin", "hmc", "ssh", f.now + 2 * kMin)->code == "no_grant");
}

TEST_CASE("channels are known by their serial: a later tunnel's channel 1 is another channel") {
  fixture f;
  f.attach("alice");
  auto g = std::get<grant>(f.reg.check_grant(*f.s, "alice", "dave", role::developer, {}, {}, 0, f.now));
  f.reg.commit_grant(*f.s, g);
  // Channel 1 of a tunnel that dropped, and channel 1 of the tunnel that replaced it.
  f.reg.commit_channel(*f.s, {.serial = 1, .id = 1, .user = "dave", .grant_id = "", .scope = "hmc", .access_type = "ssh", .opened_at = f.now});
  f.reg.commit_channel(*f.s, {.serial = 2, .id = 1, .user = "dave", .grant_id = "", .scope = "hmc", .access_type = "ssh", .opened_at = f.now});
  CHECK(f.s->channels.size() == 2);
  REQUIRE(f.reg.close_channel(*f.s, 1));  // the old one's late close takes only the old one
  CHECK(f.s->channels.count(2) == 1);
  auto rv = std::get<grant*>(f.reg.check_revoke(*f.s, "alice", "G1"));
  CHECK(f.reg.commit_revoke(*f.s, *rv) == std::vector<channel_serial>{2});  // and a revocation finds the new one
}

TEST_CASE("transfer and end") {
  fixture f;
  f.attach("alice");
  f.reg.commit_channel(*f.s, {.serial = 7, .id = 7, .user = "alice", .grant_id = "", .scope = "hmc", .access_type = "ssh", .opened_at = f.now});
  CHECK(f.reg.check_transfer(*f.s, "alice", "dave", role::developer)->status == 403);
  CHECK(f.reg.check_transfer(*f.s, "bob", "carol", role::representative)->status == 403);
  CHECK_FALSE(f.reg.check_transfer(*f.s, "alice", "bob", role::representative));
  CHECK(f.reg.commit_transfer(*f.s, "bob") == std::vector<channel_serial>{7});
  CHECK(f.s->owner == "bob");
  CHECK(f.reg.check_owner(*f.s, "alice")->status == 403);
  f.reg.commit_channel(*f.s, {.serial = 8, .id = 8, .user = "bob", .grant_id = "", .scope = "hmc", .access_type = "ssh", .opened_at = f.now});
  CHECK(f.reg.end(*f.s, "customer", f.now) == std::vector<channel_serial>{7, 8});
  CHECK(f.s->state == session_state::ended);
  CHECK(f.reg.check_channel(*f.s, "bob", "hmc", "ssh", f.now)->code == "ended");
  CHECK(f.reg.check_owner(*f.s, "bob")->code == "ended");
  // A new tunnel for the machine opens a new session; the ended one stays findable.
  auto& s2 = f.reg.open_for_machine("S-2", "9009-42A*7801234", {"hmc"}, f.now);
  CHECK(s2.id == "S-2");
  CHECK(f.reg.find("S-1")->state == session_state::ended);
  CHECK(f.reg.visible_to("bob", f.now).size() == 1);
}

TEST_CASE("ended sessions are forgotten after the retention time, or beyond the count, unless pinned") {
  fixture f;
  f.attach("alice");
  (void)f.reg.end(*f.s, "owner", f.now);
  for (int i = 2; i <= 4; ++i) {
    auto& s = f.reg.open_for_machine("S-" + std::to_string(i), "9009-42A*780123" + std::to_string(i), {"hmc"}, f.now + i);
    (void)f.reg.end(s, "owner", f.now + i);
  }
  auto& live = f.reg.open_for_machine("S-9", "9009-42A*7801239", {"hmc"}, f.now);
  CHECK(f.reg.size() == 5);
  CHECK(f.reg.prune(f.now + 10, 60 * kMin, 2, {"S-1"}) == std::vector<std::string>{"S-2"});  // keep 2 ended, S-1 pinned
  CHECK(f.reg.find("S-1"));   // pinned
  CHECK_FALSE(f.reg.find("S-2"));  // the oldest unpinned beyond the count
  CHECK(f.reg.find("S-3"));
  CHECK(f.reg.find("S-4"));
  CHECK(f.reg.find("S-9") == &live);
  CHECK(f.reg.prune(f.now + 61 * kMin, 60 * kMin, 100, {}) == std::vector<std::string>{"S-1", "S-3", "S-4"});
  CHECK(f.reg.size() == 1);  // only the live one
  CHECK(f.reg.find("S-9") == &live);
}

TEST_CASE("a session's snapshot for state.db reads back as written, and a damaged one is refused") {
  session s;
  s.id = "S-2026-12-05-5X0D3CKS";
  s.machine = "9009-42A*7801377";
  s.scopes = {"hmc", "partition:LP01"};
  s.state = session_state::active;
  s.key_hmac = "00ff";
  s.key_expires_at = 1'764'930'000'000'000;
  s.key_used = true;
  s.owner = "alice";
  s.pmr = "TS000000377";
  s.pmrs = {"TS000000376", "TS000000377"};
  grant g;
  g.id = "G3";
  g.user = "dave";
  g.scopes = {"hmc"};
  g.access_types = {"ssh", "scp"};
  g.expires_at = 1'764'931'000'000'000;
  g.granted_by = "alice";
  g.granted_at = 1'764'920'000'000'000;
  s.grants.push_back(g);
  g.id = "G4";
  g.revoked = true;
  s.grants.push_back(g);
  s.created_at = 1'764'910'000'000'000;
  s.next_grant = 5;
  s.tunnel_up = true;  // not kept: the process's own
  const auto text = to_snapshot(s);
  std::string why;
  auto back = session_from_snapshot(text, why);
  INFO(why);
  REQUIRE(back);
  CHECK(to_snapshot(*back) == text);
  CHECK(back->grants.size() == 2);
  CHECK(back->grants[1].revoked);
  CHECK(back->grants[0].access_types == std::set<std::string>{"scp", "ssh"});
  CHECK(back->pmrs == s.pmrs);
  CHECK(back->next_grant == 5);

  auto refused = [&](std::string t) {
    std::string w;
    auto r = session_from_snapshot(t, w);
    INFO(t);
    CHECK_FALSE(r);
    CHECK_FALSE(w.empty());
    return w;
  };
  auto edit = [&](const std::string& from, const std::string& to) {
    auto t = text;
    auto at = t.find(from);
    REQUIRE(at != std::string::npos);
    return t.replace(at, from.size(), to);
  };
  CHECK_THAT(refused(edit("\"next_grant\":5", "\"next_grant\":5,\"extra\":1")), Catch::Contains("unknown field extra"));
  CHECK_THAT(refused(edit("\"state\":\"active\"", "\"state\":\"ended\"")), Catch::Contains("state"));
  CHECK_THAT(refused(edit("\"owner\":\"alice\"", "\"owner\":\"\"")), Catch::Contains("owner"));
  CHECK_THAT(refused(edit("\"revoked\":true", "\"revoked\":1")), Catch::Contains("revoked"));
  CHECK_THAT(refused(edit(",\"next_grant\":5", "")), Catch::Contains("next_grant is missing"));
  refused(text.substr(0, text.size() - 1));
  refused("[]");
}

TEST_CASE("the live session of a machine and of a key are found by index, ended ones never") {
  session_registry reg;
  const micros now = 1'000'000'000'000;
  // Many sessions that ended, of the same machine and with keys, before the live one.
  for (int i = 0; i < 2000; ++i) {
    auto& old = reg.open_for_machine("S-old-" + std::to_string(i), "9009-42A*7801234", {"hmc"}, now);
    reg.set_key(old, "K" + std::to_string(i), now + kMin);
    (void)reg.end(old, "customer", now);
  }
  CHECK(reg.find_live_for_machine("9009-42A*7801234") == nullptr);
  CHECK(reg.find_live_by_key("K7") == nullptr);
  auto& s = reg.open_for_machine("S-live", "9009-42A*7801234", {"hmc"}, now);
  reg.set_key(s, "KLIVE", now + kMin);
  CHECK(reg.find_live_for_machine("9009-42A*7801234") == &s);
  CHECK(reg.find_live_by_key("KLIVE") == &s);
  reg.set_key(s, "KNEW", now + kMin);  // a new key voids the old one
  CHECK(reg.find_live_by_key("KLIVE") == nullptr);
  CHECK(reg.find_live_by_key("KNEW") == &s);
  (void)reg.end(s, "customer", now);
  CHECK(reg.find_live_for_machine("9009-42A*7801234") == nullptr);
  CHECK(reg.find_live_by_key("KNEW") == nullptr);
  // A session restored after a restart is found like any other.
  session kept;
  kept.id = "S-kept";
  kept.machine = "9009-42A*7801235";
  kept.key_hmac = "KKEPT";
  reg.restore(kept);
  CHECK(reg.find_live_for_machine("9009-42A*7801235") == reg.find("S-kept"));
  CHECK(reg.find_live_by_key("KKEPT") == reg.find("S-kept"));
}
