-- Sessions that outlive the gateway process (docs/protocol.md §9): each live session's state
-- (machine, offered scopes, owner, PMRs, grants, session key as its keyed hash) as one JSON
-- object, written after every policy step that changed it and deleted when it ends.
-- `journal_seq` is the seq of the session's last `session.*` journal entry the snapshot
-- reflects: at start-up a snapshot older than the journal is not trusted (the session ends).
CREATE TABLE live_sessions (
  id           TEXT PRIMARY KEY,
  machine      TEXT NOT NULL,
  snapshot     TEXT NOT NULL,
  journal_seq  INTEGER NOT NULL,
  updated_at   INTEGER NOT NULL
);
