-- Gateway state that is not evidence: accounts (and, as the product grows, machines,
-- tokens, sessions). The journal records every change made here.
CREATE TABLE users (
  name          TEXT PRIMARY KEY CHECK (length(name) BETWEEN 1 AND 64),
  role          TEXT NOT NULL CHECK (role IN ('representative', 'developer', 'auditor', 'admin')),
  password_hash TEXT NOT NULL,               -- libsodium crypto_pwhash_str (Argon2id)
  must_change   INTEGER NOT NULL DEFAULT 0,  -- one-time password: change at first login
  disabled      INTEGER NOT NULL DEFAULT 0,
  created_at    INTEGER NOT NULL             -- microseconds since the epoch
);
