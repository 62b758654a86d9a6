-- The journal: one row per event, append-only, hash-chained (docs/journal.md).
-- Text fields are NOT NULL; '' means "not applicable" so the canonical encoding has one form.
CREATE TABLE journal (
  seq         INTEGER PRIMARY KEY CHECK (seq > 0),
  ts          INTEGER NOT NULL,              -- microseconds since 1970-01-01T00:00:00Z
  gateway     TEXT    NOT NULL,
  kind        TEXT    NOT NULL CHECK (kind <> ''),
  actor       TEXT    NOT NULL DEFAULT '',
  source      TEXT    NOT NULL DEFAULT '',
  session_id  TEXT    NOT NULL DEFAULT '',
  pmr         TEXT    NOT NULL DEFAULT '',
  machine     TEXT    NOT NULL DEFAULT '',
  access_type TEXT    NOT NULL DEFAULT '',
  scope       TEXT    NOT NULL DEFAULT '',
  outcome     TEXT    NOT NULL CHECK (outcome IN ('ok', 'denied', 'error')),
  secret_hmac TEXT    NOT NULL DEFAULT '',   -- keyed hash of a secret this entry concerns
  detail      TEXT    NOT NULL DEFAULT '{}', -- JSON object
  prev_hash   TEXT    NOT NULL,
  hash        TEXT    NOT NULL
);

-- Every filter of `rsgate journal query` has an index ending in ts (and, implicitly, seq),
-- so a filtered page is one index range scan. Mostly-empty columns get partial indexes.
CREATE INDEX journal_by_ts      ON journal(ts);
CREATE INDEX journal_by_kind    ON journal(kind, ts);
CREATE INDEX journal_by_actor   ON journal(actor, ts)      WHERE actor <> '';
CREATE INDEX journal_by_pmr     ON journal(pmr, ts)        WHERE pmr <> '';
CREATE INDEX journal_by_session ON journal(session_id, ts) WHERE session_id <> '';
CREATE INDEX journal_by_machine ON journal(machine, ts)    WHERE machine <> '';
CREATE INDEX journal_by_secret  ON journal(secret_hmac)    WHERE secret_hmac <> '';

CREATE TRIGGER journal_no_update BEFORE UPDATE ON journal
BEGIN SELECT RAISE(ABORT, 'the journal is append-only: UPDATE refused'); END;
CREATE TRIGGER journal_no_delete BEFORE DELETE ON journal
BEGIN SELECT RAISE(ABORT, 'the journal is append-only: DELETE refused'); END;

-- The signed head: rewritten in the same transaction as every append, so the newest entry
-- is always covered by a signature (docs/journal.md, "Signed head").
CREATE TABLE journal_head (
  id        INTEGER PRIMARY KEY CHECK (id = 1),
  seq       INTEGER NOT NULL,
  hash      TEXT    NOT NULL,
  signature TEXT    NOT NULL,
  probed_at INTEGER NOT NULL DEFAULT 0     -- last write probe (readiness), microseconds
);

-- Facts about this journal: gateway name, signing public key, creation time.
CREATE TABLE journal_meta (
  key   TEXT PRIMARY KEY,
  value TEXT NOT NULL
);
