-- A journal written by rsgate before migration 0002 (no subject column), kept to prove that
-- every journal written before keeps verifying and can be continued (tests/integration/
-- journal_compat_test.cpp). Made with rsgate 0.1.0 (commit d91d010): init --name gw-v1, user add,
-- token create, user disable, machine enroll, machine revoke; then sqlite3 journal.db .dump.
-- The keys next to this file are test keys of this journal only.
PRAGMA foreign_keys=OFF;
BEGIN TRANSACTION;
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
INSERT INTO journal VALUES(1,1796412707275472,'gw-v1','admin.user','rsgate init','','','','','','','ok','','{"action":"create","user":"admin","role":"admin","one_time_password":true}','0000000000000000000000000000000000000000000000000000000000000000','5c05c382621db2e2effbf73c580c00b024c311443e8f99134aa65c34f17752a0');
INSERT INTO journal VALUES(2,1796412707435659,'gw-v1','journal.checkpoint','gateway','','','','','','','ok','','{"through_seq":1,"through_hash":"5c05c382621db2e2effbf73c580c00b024c311443e8f99134aa65c34f17752a0","key_id":"af8d5cfc2b8efccf","signature":"393d4aea5c19ab5b04bf96e0166c5be3a93e2992ed4940ddf40a82ef6d2546cb1cd4af8df698331b4eb9db8c4bdc378b4d95ea36f48736dcfbfa1b88598d290a"}','5c05c382621db2e2effbf73c580c00b024c311443e8f99134aa65c34f17752a0','97031e9be61936591f1f0ffce42d281734537ad762ff84345ceaed94e0cb84fe');
INSERT INTO journal VALUES(3,1796412707464239,'gw-v1','admin.user','cli:root','','','','','','','ok','','{"action":"add","user":"alice","role":"representative"}','97031e9be61936591f1f0ffce42d281734537ad762ff84345ceaed94e0cb84fe','b29308cf966a4aa5af5545565d5d018c6ffd78d5fda6eef5cf76875a85388033');
INSERT INTO journal VALUES(4,1796412707676766,'gw-v1','journal.checkpoint','gateway','','','','','','','ok','','{"through_seq":3,"through_hash":"b29308cf966a4aa5af5545565d5d018c6ffd78d5fda6eef5cf76875a85388033","key_id":"af8d5cfc2b8efccf","signature":"9a8a7230710441cc2c679804aed5f99201e125a4d265d60854c7661566db878a8dbe2d67bfd95d26657cca4f02cd6618ede5056fce654a894cd893f0cbf1ab0a"}','b29308cf966a4aa5af5545565d5d018c6ffd78d5fda6eef5cf76875a85388033','77fcc109d8f5fb8d3580d11060c8e9767ca107a398805dbe37ba0ae85d9a1ab7');
INSERT INTO journal VALUES(5,1796412707698507,'gw-v1','admin.user','cli:root','','','','','','','ok','6048217eba60dd9002ce0e9a6a7b89b017dce525281e6b01e0f20aec4ffb85d8','{"action":"token_create","user":"alice","expires_at":"2027-01-03T19:31:47.697760Z"}','77fcc109d8f5fb8d3580d11060c8e9767ca107a398805dbe37ba0ae85d9a1ab7','d8139feae48c158f03421ff563a06e4df754b09593b07e3087dabba4b84b0001');
INSERT INTO journal VALUES(6,1796412707701946,'gw-v1','journal.checkpoint','gateway','','','','','','','ok','','{"through_seq":5,"through_hash":"d8139feae48c158f03421ff563a06e4df754b09593b07e3087dabba4b84b0001","key_id":"af8d5cfc2b8efccf","signature":"5452f1094c155298c3d6e9ccd756fc673540943f19b6fe7dc7c9b96ba71338de6dbd91977f39acd72a29cf20790c0672980343a826f206123d672e2183e5d108"}','d8139feae48c158f03421ff563a06e4df754b09593b07e3087dabba4b84b0001','ad6b7b3d7d4579f069743017f7caab8c67c74fa7deee4958d5d26cab13976b2f');
INSERT INTO journal VALUES(7,1796412707727406,'gw-v1','admin.user','cli:root','','','','','','','ok','','{"action":"disable","user":"alice"}','ad6b7b3d7d4579f069743017f7caab8c67c74fa7deee4958d5d26cab13976b2f','3e63e7998248fc2d823030b0c84caaf33315bc1a9db642e4d85e5c4f1955d2dc');
INSERT INTO journal VALUES(8,1796412707730708,'gw-v1','journal.checkpoint','gateway','','','','','','','ok','','{"through_seq":7,"through_hash":"3e63e7998248fc2d823030b0c84caaf33315bc1a9db642e4d85e5c4f1955d2dc","key_id":"af8d5cfc2b8efccf","signature":"3663b5bfa2870f2f9f347c67e490d25fb2162fa8011564608e768ce3d5caa4f9181670049624ccd4a41829eecb8a68754ff113cf894a3889f079620f2a17930f"}','3e63e7998248fc2d823030b0c84caaf33315bc1a9db642e4d85e5c4f1955d2dc','41d26aaf2a08a752a6c390eca431db75518ac18e46dfa39390e9edf15eb75f5e');
INSERT INTO journal VALUES(9,1796412707775784,'gw-v1','admin.machine','cli:root','','','','9009-42A*7801234','','','ok','','{"action":"enroll","md5":false,"scopes":["hmc"]}','41d26aaf2a08a752a6c390eca431db75518ac18e46dfa39390e9edf15eb75f5e','5db30cf20b939f791371ed039bfe02647ca682ed8e24372355c226c3b14d3d54');
INSERT INTO journal VALUES(10,1796412707780315,'gw-v1','journal.checkpoint','gateway','','','','','','','ok','','{"through_seq":9,"through_hash":"5db30cf20b939f791371ed039bfe02647ca682ed8e24372355c226c3b14d3d54","key_id":"af8d5cfc2b8efccf","signature":"1a689c07b442488eb1b6828a8359969377efc1fd722c5261f547646192245bcb6e38128b5cbd98eeb2e67f3e1d94a751ce1e3fed0b0c973ac8bc75193e235905"}','5db30cf20b939f791371ed039bfe02647ca682ed8e24372355c226c3b14d3d54','a244c4fe1c4ba5b65889615a8064b1314948c3f42a848e43ee2da9e3c22a695d');
INSERT INTO journal VALUES(11,1796412707806620,'gw-v1','admin.machine','cli:root','','','','9009-42A*7801234','','','ok','','{"action":"revoke"}','a244c4fe1c4ba5b65889615a8064b1314948c3f42a848e43ee2da9e3c22a695d','9c60b802813450b4806e521b24dce07b2cd24d14a256a917a57e99f6ef39e043');
INSERT INTO journal VALUES(12,1796412707810136,'gw-v1','journal.checkpoint','gateway','','','','','','','ok','','{"through_seq":11,"through_hash":"9c60b802813450b4806e521b24dce07b2cd24d14a256a917a57e99f6ef39e043","key_id":"af8d5cfc2b8efccf","signature":"8761636ff4cd138b369df9c02a5a0d3287a6171f55c07b4a5c8426c3f63c4be0ed3d0836ed3805aa8f5d45850acb62034366529b671cfebc0dd72fc8dce97f02"}','9c60b802813450b4806e521b24dce07b2cd24d14a256a917a57e99f6ef39e043','3ea468897283b1fc8b5f897e515a2f167ea17f8285dfa8ece5a5784b00361937');
CREATE TABLE journal_head (
  id        INTEGER PRIMARY KEY CHECK (id = 1),
  seq       INTEGER NOT NULL,
  hash      TEXT    NOT NULL,
  signature TEXT    NOT NULL,
  probed_at INTEGER NOT NULL DEFAULT 0     -- last write probe (readiness), microseconds
);
INSERT INTO journal_head VALUES(1,12,'3ea468897283b1fc8b5f897e515a2f167ea17f8285dfa8ece5a5784b00361937','ab71547cddf932866f0cfd416a22059f6b59d1d26a47e081cca8e555809f9ac0f36452965134080c9ab54cc809055d25103971891a7743120bc3e846b8b7d700',1796412707810136);
CREATE TABLE journal_meta (
  key   TEXT PRIMARY KEY,
  value TEXT NOT NULL
);
INSERT INTO journal_meta VALUES('gateway','gw-v1');
INSERT INTO journal_meta VALUES('created_at','1796412707272981');
INSERT INTO journal_meta VALUES('public_key','9e6443ef5b02c1b565d0fc9371b8666fa0b6673b22811754e3d132e6e316604e');
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
COMMIT;
PRAGMA application_id = 1920165706;
PRAGMA user_version = 1;
