-- Receipts the agents acknowledged (RECEIPT_ACK, docs/protocol.md §4.12). A machine's ended
-- sessions are owed their receipts until one of its agents acknowledges them: an agent that
-- announces `receipts` in HELLO gets those of its machine's last 8 ended sessions (from the
-- journal) that are not here. At most 32 rows are kept per machine, the newest.
CREATE TABLE receipts_delivered (
  session_id    TEXT PRIMARY KEY,
  machine       TEXT NOT NULL,
  delivered_at  INTEGER NOT NULL
);
CREATE INDEX receipts_delivered_by_machine ON receipts_delivered(machine, delivered_at);
