// Test support: write a journal row straight into the table, bypassing the writer — what an
// attacker with write access to the file can do. Used by the tamper tests and journal_forge.
#pragma once
#include "core/sqlite.hpp"
#include "journal/entry.hpp"

namespace rsgate::test {

inline void insert_raw(sqlite::db& d, const journal::entry& e) {
  auto s = d.prepare(
      "INSERT INTO journal(seq, ts, gateway, kind, actor, source, session_id, pmr, machine, "
      "access_type, scope, outcome, secret_hmac, detail, prev_hash, hash, subject) VALUES "
      "(?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12,?13,?14,?15,?16,?17)");
  s.bind(1, e.seq).bind(2, e.ts).bind(3, e.gateway).bind(4, e.kind).bind(5, e.actor)
      .bind(6, e.source).bind(7, e.session_id).bind(8, e.pmr).bind(9, e.machine)
      .bind(10, e.access_type).bind(11, e.scope).bind(12, journal::to_string(e.result))
      .bind(13, e.secret_hmac).bind(14, e.detail).bind(15, e.prev_hash).bind(16, e.hash)
      .bind(17, e.subject);
  s.step();
}

}  // namespace rsgate::test
