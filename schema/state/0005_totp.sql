-- TOTP (RFC 6238, docs/security.md "TOTP"): an account's secret, sealed with keys/master.key;
-- the last time step a code was accepted for, so that a code is accepted once (a login moves it
-- forward with a compare-and-set, so two concurrent logins cannot both use one code); and the
-- account's one-time recovery codes, kept as their keyed hash (HMAC, keys/journal-hmac.key), a
-- row deleted when its code is used.
CREATE TABLE user_totp (
  user           TEXT PRIMARY KEY REFERENCES users(name),
  secret_sealed  TEXT NOT NULL,
  last_step      INTEGER NOT NULL DEFAULT 0,
  enrolled_at    INTEGER NOT NULL
);
CREATE TABLE user_recovery_codes (
  user       TEXT NOT NULL REFERENCES users(name),
  code_hash  TEXT NOT NULL,
  PRIMARY KEY (user, code_hash)
) WITHOUT ROWID;
