-- The account an entry concerns when it is not the actor (PCI DSS 10.2.2: the affected
-- identity in a field of its own, not only inside `detail`). Applied when a writer opens a
-- journal created before it; existing rows read as '' and, because the canonical encoding
-- appends `subject` only when it is non-empty, keep their hashes (docs/journal.md §5).
-- ADD COLUMN rewrites no row, so the append-only triggers are not involved.
ALTER TABLE journal ADD COLUMN subject TEXT NOT NULL DEFAULT '';
CREATE INDEX journal_by_subject ON journal(subject, ts) WHERE subject <> '';
