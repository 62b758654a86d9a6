-- Enrolled machines and API tokens.
-- A machine is known by its SCRAM verifier only; the CHAP secret itself is kept (encrypted
-- with keys/master.key) only for machines enabled for legacy MD5-CHAP. The local host:port
-- behind each scope stays in the customer's profile: the gateway never stores it.
CREATE TABLE machines (
  machine      TEXT PRIMARY KEY CHECK (length(machine) = 16),  -- TTTT-MMM*SSSSSSS
  verifier     TEXT NOT NULL,                 -- "SCRAM-SHA-256$<i>:<salt>$<StoredKey>:<ServerKey>"
  md5_enabled  INTEGER NOT NULL DEFAULT 0,
  md5_secret   TEXT NOT NULL DEFAULT '',      -- secretbox(nonce ‖ ciphertext), base64, or ''
  revoked      INTEGER NOT NULL DEFAULT 0,
  enrolled_at  INTEGER NOT NULL,
  revoked_at   INTEGER NOT NULL DEFAULT 0
);

CREATE TABLE tokens (
  token_hash   TEXT PRIMARY KEY,              -- SHA-256 of the bearer token, hex
  user         TEXT NOT NULL REFERENCES users(name),
  created_at   INTEGER NOT NULL,
  expires_at   INTEGER NOT NULL,              -- microseconds; 0 = never
  revoked      INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX tokens_by_user ON tokens(user);
