// Test support: replays a session's journal entries (JSON objects as `rsgate journal query
// --format json` or journal::to_json_object give them, oldest first) into the state they
// describe, and compares it with the session object the API answers. This is the check of the
// concurrency tests: the journal and the state must agree exactly — grant ids unique, every
// live grant journaled, every journaled transfer made by the owner of that moment, every
// channel opened by the owner or a live grantee of that moment, nothing granted after
// session.end. (Grant expiry is not modelled: tests that use it must not rely on this.)
#pragma once
#include <boost/json/parse.hpp>
#include <boost/json/value.hpp>
#include <map>
#include <set>
#include <string>
#include <vector>

namespace rsgate::test {

struct replayed_session {
  std::string owner;
  bool ended = false;
  std::map<std::string, std::pair<std::string, bool>> grants;  // id -> (user, revoked)
  std::vector<std::string> problems;                            // empty when consistent
};

inline std::string str_of(const boost::json::object& o, const char* k) {
  auto* v = o.if_contains(k);
  return v && v->is_string() ? std::string(v->as_string()) : std::string();
}

inline replayed_session replay_session(const std::vector<boost::json::object>& entries) {
  replayed_session r;
  for (auto& e : entries) {
    if (str_of(e, "outcome") != "ok") continue;
    auto kind = str_of(e, "kind");
    auto seq = std::to_string(e.at("seq").as_int64());
    auto& dv = e.at("detail");  // an object; a damaged row's detail is a string
    auto d = dv.is_object() ? dv.as_object() : boost::json::object{};
    bool grants_access = kind == "session.attach" || kind == "session.grant" || kind == "session.transfer" ||
                         kind == "channel.open";
    if (r.ended && grants_access) r.problems.push_back("seq " + seq + ": " + kind + " after session.end");
    if (kind == "session.attach") {
      if (!r.owner.empty()) r.problems.push_back("seq " + seq + ": a second attach while owned by " + r.owner);
      r.owner = str_of(e, "actor");
    } else if (kind == "session.grant") {
      auto id = str_of(d, "grant");
      if (r.grants.count(id)) r.problems.push_back("seq " + seq + ": grant id " + id + " journaled twice");
      if (str_of(e, "actor") != r.owner) r.problems.push_back("seq " + seq + ": a grant by a non-owner");
      auto user = str_of(d, "user");
      for (auto& [gid, g] : r.grants)
        if (g.first == user && !g.second) r.problems.push_back("seq " + seq + ": a second live grant for " + user);
      r.grants[id] = {user, false};
    } else if (kind == "session.revoke") {
      auto id = str_of(d, "grant");
      auto it = r.grants.find(id);
      if (it == r.grants.end()) r.problems.push_back("seq " + seq + ": revoke of unknown grant " + id);
      else if (it->second.second) r.problems.push_back("seq " + seq + ": grant " + id + " revoked twice");
      else it->second.second = true;
    } else if (kind == "session.transfer") {
      if (str_of(d, "from") != r.owner)
        r.problems.push_back("seq " + seq + ": transfer from " + str_of(d, "from") + " but the owner was " + r.owner);
      r.owner = str_of(d, "to");
    } else if (kind == "channel.open") {
      auto actor = str_of(e, "actor");
      bool allowed = actor == r.owner;
      for (auto& [gid, g] : r.grants) allowed = allowed || (g.first == actor && !g.second);
      if (!allowed) r.problems.push_back("seq " + seq + ": channel.open for " + actor + ", who held no live grant");
    } else if (kind == "session.end") {
      if (r.ended) r.problems.push_back("seq " + seq + ": session.end twice");
      r.ended = true;
      for (auto& [gid, g] : r.grants) g.second = true;
    }
  }
  return r;
}

// Problems found comparing the replayed journal with the API's session object.
inline std::vector<std::string> compare_with_state(const replayed_session& r, const boost::json::object& s) {
  auto problems = r.problems;
  if (str_of(s, "owner") != r.owner)
    problems.push_back("owner: state says " + str_of(s, "owner") + ", the journal " + r.owner);
  if ((str_of(s, "state") == "ended") != r.ended) problems.push_back("state " + str_of(s, "state") + " vs the journal");
  std::set<std::string> seen;
  for (auto& gv : s.at("grants").as_array()) {
    auto& g = gv.as_object();
    auto id = str_of(g, "id");
    if (!seen.insert(id).second) problems.push_back("state holds grant id " + id + " twice");
    auto it = r.grants.find(id);
    if (it == r.grants.end()) {
      problems.push_back("state holds grant " + id + " the journal never recorded");
      continue;
    }
    if (it->second.first != str_of(g, "user")) problems.push_back("grant " + id + ": another user in the journal");
    if (it->second.second != g.at("revoked").as_bool())
      problems.push_back("grant " + id + ": revoked differs (journal " + (it->second.second ? "yes" : "no") + ")");
  }
  for (auto& [id, g] : r.grants)
    if (!seen.count(id)) problems.push_back("the journal has grant " + id + " the state does not");
  return problems;
}

}  // namespace rsgate::test
