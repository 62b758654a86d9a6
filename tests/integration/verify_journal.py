#!/usr/bin/python3
"""Independent verifier for rsgate journals, written from docs/journal.md alone.

It shares no code with rsgate: the hash chain is checked with the Python standard library
(sqlite3, hashlib, json, struct), the Ed25519 signatures with PyNaCl (Debian: python3-nacl).
Its purpose is to prove that docs/journal.md is precise enough for an auditor to re-implement
verification in another language, and to give auditors a second opinion on a journal file.

Usage: verify_journal.py --db FILE [--pubkey FILE]

Prints "ok <entries> <head_hash>" and exits 0 when the journal holds, or
"bad <seq> <reason>" and exits 1 naming the first bad entry (docs/journal.md, "Verification
procedure"); usage and I/O errors print one line on stderr and exit 2.

The shebang names Debian's /usr/bin/python3 on purpose: python3-nacl installs PyNaCl for that
interpreter only. PyNaCl is imported only when --pubkey is given.
"""

import argparse
import hashlib
import json
import pathlib
import re
import sqlite3
import struct
import sys

ENTRY_TAG = b"rsgate-journal-entry-v1"
CHECKPOINT_TAG = b"rsgate-journal-checkpoint-v1"
HEAD_TAG = b"rsgate-journal-head-v1"
GENESIS = b"0" * 64
APPLICATION_ID = 0x7273674A  # "rsgJ"
CHECKPOINT_KIND = b"journal.checkpoint"
OUTCOMES = (b"ok", b"denied", b"error")
MAX_JSON_DEPTH = 32
U64 = (1 << 64) - 1
I64_MIN, I64_MAX = -(1 << 63), (1 << 63) - 1

HEX64 = re.compile(rb"[0-9a-fA-F]{64}")
SIG_HEX = re.compile(r"[0-9a-fA-F]{128}")

V1_COLUMNS = ("seq", "ts", "gateway", "kind", "actor", "source", "session_id", "pmr", "machine",
              "access_type", "scope", "outcome", "secret_hmac", "detail", "prev_hash", "hash")


class UsageError(Exception):
    pass


class Bad(Exception):
    def __init__(self, seq, reason):
        super().__init__(reason)
        self.seq = seq
        self.reason = reason


def u32(n):
    return struct.pack(">I", n)


def u64(n):
    # Two's complement: a negative value is encoded as 2^64 + value.
    return struct.pack(">Q", n & U64)


def text(v):
    """A text column as the bytes stored (NULL reads as empty)."""
    if v is None:
        return b""
    if isinstance(v, bytes):
        return v
    if isinstance(v, (int, float)):
        return str(v).encode()
    return bytes(v)


def canonical_encoding(row):
    """docs/journal.md, "Canonical encoding"."""
    (seq, ts, gateway, kind, actor, source, session_id, pmr, machine, access_type, scope,
     outcome, secret_hmac, detail, prev_hash, _hash, subject) = row
    # verify() has already refused an outcome outside ok/denied/error (§10, check 4.2).
    out = bytearray(ENTRY_TAG + b"\x00")
    out += u64(seq)
    out += u64(ts)
    for f in (gateway, kind, actor, source, session_id, pmr, machine, access_type, scope,
              outcome, secret_hmac, detail):
        out += u32(len(f)) + f
    out += bytes.fromhex(prev_hash.decode("ascii"))
    # Fields added after v1, up to the last non-empty one: today only subject.
    if subject:
        out += u32(len(subject)) + subject
    return bytes(out)


def signed_statement(tag, gateway, seq, hash_hex):
    """docs/journal.md, "Signed statements". hash_hex: 64 hex digits (either case)."""
    return tag + b"\x00" + u32(len(gateway)) + gateway + u64(seq) + bytes.fromhex(hash_hex)


def _reject_constant(name):
    raise ValueError("non-standard JSON constant " + name)


def _json_ok(v, depth):
    """Depth limit (objects and arrays only) and no unpaired surrogates."""
    if isinstance(v, (dict, list)) and depth > MAX_JSON_DEPTH:
        return False
    if isinstance(v, str):
        try:
            v.encode("utf-8")
        except UnicodeEncodeError:
            return False
        return True
    if isinstance(v, dict):
        return all(_json_ok(k, depth) and _json_ok(x, depth + 1) for k, x in v.items())
    if isinstance(v, list):
        return all(_json_ok(x, depth + 1) for x in v)
    return True


def parse_json_object(raw):
    """The detail as a JSON object, or None when it is not one (docs/journal.md)."""
    try:
        s = raw.decode("utf-8")
        v = json.loads(s, parse_constant=_reject_constant)
    except (UnicodeDecodeError, ValueError, RecursionError):
        return None
    if not isinstance(v, dict) or not _json_ok(v, 1):
        return None
    return v


def is_json_int64(v):
    return isinstance(v, int) and not isinstance(v, bool) and I64_MIN <= v <= I64_MAX


def load_public_key(path):
    try:
        with open(path, "rb") as f:
            data = f.read(4097)
    except OSError as e:
        raise UsageError(f"{path}: {e.strerror}")
    if len(data) > 4096:
        raise UsageError(f"{path}: file too large for a public key")
    data = data.rstrip(b"\n\r ")
    if not HEX64.fullmatch(data):
        raise UsageError(f"{path}: not a public key (64 hex digits expected)")
    return bytes.fromhex(data.decode("ascii"))


def open_journal(path):
    p = pathlib.Path(path)
    if not p.is_file():
        raise UsageError(f"{path}: no such journal file")
    try:
        db = sqlite3.connect(p.resolve().as_uri() + "?mode=ro", uri=True)
        db.text_factory = bytes
        app = db.execute("PRAGMA application_id").fetchone()[0]
    except sqlite3.Error as e:
        raise UsageError(f"{path} is not an rsgate journal ({e})")
    # Ours by its application_id; a missing table is judged by verify() (§10 step 0).
    if app != APPLICATION_ID:
        raise UsageError(f"{path} is not an rsgate journal")
    return db


def table_columns(db, table):
    """The column names of a table, or None when there is no such table."""
    if db.execute("SELECT 1 FROM sqlite_schema WHERE type = 'table' AND name = ?",
                  (table,)).fetchone() is None:
        return None
    return {text(r[1]).decode("utf-8", "replace")
            for r in db.execute("SELECT * FROM pragma_table_info(?)", (table,))}


def entry_select(db):
    """Step 0 of docs/journal.md §10: the SELECT for the entries, or Bad at seq 1."""
    cols = table_columns(db, "journal")
    if cols is None:
        raise Bad(1, "table journal is missing")
    for c in V1_COLUMNS:
        if c not in cols:
            raise Bad(1, f"table journal has no column {c}")
    subject = "subject" if "subject" in cols else "'' AS subject"  # before migration 2
    return "SELECT " + ", ".join(V1_COLUMNS) + ", " + subject + " FROM journal ORDER BY seq"


def read_head(db):
    """The journal_head row (seq, hash, signature), or None: no table, a table without those
    columns, and no row all mean the head is gone."""
    cols = table_columns(db, "journal_head")
    if cols is None or not {"seq", "hash", "signature"} <= cols:
        return None
    return db.execute("SELECT CAST(seq AS INTEGER), hash, signature FROM journal_head "
                      "WHERE id = 1").fetchone()


def verify(db, pk):
    """Returns (entries, head_hash) or raises Bad. Follows docs/journal.md step by step."""
    verify_key = None
    if pk is not None:
        import nacl.exceptions
        import nacl.signing
        verify_key = nacl.signing.VerifyKey(pk)

    def signature_holds(message, sig_hex):
        if not isinstance(sig_hex, str) or not SIG_HEX.fullmatch(sig_hex):
            return False
        try:
            verify_key.verify(message, bytes.fromhex(sig_hex))
            return True
        except nacl.exceptions.BadSignatureError:
            return False

    expected = 1
    prev = GENESIS
    entries = 0
    head_seq = 0
    head_hash = GENESIS
    last_gateway = b""
    cur = db.execute(entry_select(db))
    for raw in cur:
        row = (raw[0], raw[1]) + tuple(text(v) for v in raw[2:])
        seq, ts = row[0], row[1]
        if not isinstance(ts, int):
            ts = db.execute("SELECT CAST(ts AS INTEGER) FROM journal WHERE seq = ?",
                            (seq,)).fetchone()[0]
            row = (seq, ts) + row[2:]
        gateway, kind, outcome = row[2], row[3], row[11]
        detail, prev_hash, stored_hash = row[13], row[14], row[15]
        if seq != expected:
            raise Bad(expected, f"entry missing (the next entry present is seq {seq})")
        if outcome not in OUTCOMES:
            raise Bad(seq, "outcome is not ok, denied or error")
        if prev_hash != prev:
            raise Bad(seq, "prev_hash does not match the hash of the entry before it")
        if not HEX64.fullmatch(prev_hash):
            raise Bad(seq, "prev_hash is malformed")
        computed = hashlib.sha256(canonical_encoding(row)).hexdigest().encode("ascii")
        if computed != stored_hash:
            raise Bad(seq, "hash does not match the entry's content")
        if kind == CHECKPOINT_KIND:
            d = parse_json_object(detail)
            through_seq = d.get("through_seq") if d is not None else None
            through_hash = d.get("through_hash") if d is not None else None
            signature = d.get("signature") if d is not None else None
            if (not is_json_int64(through_seq) or not isinstance(through_hash, str)
                    or not isinstance(signature, str)):
                raise Bad(seq, "checkpoint detail is malformed")
            if through_seq != seq - 1 or through_hash != prev.decode("ascii"):
                raise Bad(seq, "checkpoint does not name the entry before it")
            if verify_key is not None:
                msg = signed_statement(CHECKPOINT_TAG, gateway, seq - 1, prev.decode("ascii"))
                if not signature_holds(msg, signature):
                    raise Bad(seq, "checkpoint signature does not verify")
        prev = stored_hash
        last_gateway = gateway
        head_seq = seq
        head_hash = stored_hash
        entries += 1
        expected += 1

    if verify_key is not None:
        h = read_head(db)
        if h is None:
            if entries == 0:
                return entries, head_hash.decode("ascii")  # never held an entry: no head yet
            raise Bad(1, "the signed head is missing")
        hseq = h[0] if h[0] is not None else 0
        hhash, hsig = text(h[1]), text(h[2])
        if hseq < 1 or not HEX64.fullmatch(hhash):
            raise Bad(max(min(hseq, head_seq), 0) + 1, "the signed head is malformed")
        if entries == 0:
            # Every entry is gone but a head remains: check it with the name the journal
            # was created with (journal_meta, key 'gateway'; '' when there is no such row).
            m = None
            if table_columns(db, "journal_meta") is not None:
                m = db.execute("SELECT value FROM journal_meta WHERE key = 'gateway'").fetchone()
            last_gateway = text(m[0]) if m is not None else b""
        try:
            hsig_text = hsig.decode("ascii")
        except UnicodeDecodeError:
            hsig_text = ""
        msg = signed_statement(HEAD_TAG, last_gateway, hseq, hhash.decode("ascii"))
        if not signature_holds(msg, hsig_text):
            raise Bad(min(hseq, head_seq) + 1,
                      "the signed head's signature does not verify with this key")
        if hseq < head_seq:
            raise Bad(hseq + 1, "entry was appended after the last signed head")
        if hseq > head_seq:
            raise Bad(head_seq + 1, f"entry missing: the signed head names seq {hseq}")
        if hhash != head_hash:
            raise Bad(hseq, "the signed head's hash does not match this entry")
    return entries, head_hash.decode("ascii")


def main(argv):
    ap = argparse.ArgumentParser(
        description="Verify an rsgate journal (docs/journal.md) independently of rsgate.")
    ap.add_argument("--db", required=True, help="journal database file (journal.db)")
    ap.add_argument("--pubkey", help="gateway public key file (64 hex digits): also check "
                    "every checkpoint signature and the signed head")
    args = ap.parse_args(argv)
    try:
        pk = load_public_key(args.pubkey) if args.pubkey else None
        db = open_journal(args.db)
        try:
            entries, head = verify(db, pk)
        finally:
            db.close()
    except UsageError as e:
        print(f"verify_journal: {e}", file=sys.stderr)
        return 2
    except sqlite3.Error as e:
        print(f"verify_journal: {args.db}: {e}", file=sys.stderr)
        return 2
    except ImportError as e:
        print(f"verify_journal: --pubkey needs PyNaCl (Debian: python3-nacl): {e}",
              file=sys.stderr)
        return 2
    except Bad as b:
        print(f"bad {b.seq} {b.reason}")
        return 1
    print(f"ok {entries} {head}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
