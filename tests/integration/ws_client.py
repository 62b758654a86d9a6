#!/usr/bin/env python3
"""A scripted channel-stream client (docs/api.md §5.5) for the integration tests: it says
things `rsgate connect` never says, such as bytes after its own `eof`.

Usage: ws_client.py HOST:PORT CA_FILE TOKEN STEP...
Steps, in order: `bin:TEXT` (a binary message), `text:TEXT` (a text message), `wait:SECONDS`
(reads and reports what arrives meanwhile). After the steps it reads until the gateway closes
the WebSocket (at most 30 s). Prints one line per message received: `binary N`, `text TEXT`,
`close CODE REASON` (or `upgrade STATUS` when the upgrade is refused, `gone` when the
connection ends without a close frame). Standard library only.
"""
import base64
import os
import socket
import ssl
import struct
import sys
import time


def send_frame(s, opcode, payload):
    mask = os.urandom(4)
    n = len(payload)
    if n < 126:
        head = struct.pack("!BB", 0x80 | opcode, 0x80 | n)
    elif n < 65536:
        head = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, n)
    else:
        head = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, n)
    s.sendall(head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload)))


def read_exact(s, n):
    out = b""
    while len(out) < n:
        chunk = s.recv(n - len(out))
        if not chunk:
            raise EOFError
        out += chunk
    return out


def read_frame(s):
    b0, b1 = read_exact(s, 2)
    n = b1 & 0x7F
    if n == 126:
        n = struct.unpack("!H", read_exact(s, 2))[0]
    elif n == 127:
        n = struct.unpack("!Q", read_exact(s, 8))[0]
    return b0 & 0x0F, read_exact(s, n)


def report(s, until):
    """Prints messages until `until` (a monotonic time); True once the gateway closed."""
    while True:
        left = until - time.monotonic()
        if left <= 0:
            return False
        s.settimeout(left)
        try:
            op, payload = read_frame(s)
        except socket.timeout:
            return False
        except (EOFError, OSError):
            print("gone", flush=True)
            return True
        if op == 0x2:
            print(f"binary {len(payload)}", flush=True)
        elif op == 0x1:
            print(f"text {payload.decode()}", flush=True)
        elif op == 0x9:
            send_frame(s, 0xA, payload)
        elif op == 0x8:
            code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else 0
            print(f"close {code} {payload[2:].decode()}", flush=True)
            send_frame(s, 0x8, payload[:2])
            return True


def main():
    hostport, ca, token, steps = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]
    host, port = hostport.rsplit(":", 1)
    ctx = ssl.create_default_context(cafile=ca)
    ctx.check_hostname = False
    raw = socket.create_connection((host, int(port)), timeout=30)
    s = ctx.wrap_socket(raw, server_hostname=host)
    key = base64.b64encode(os.urandom(16)).decode()
    s.sendall((f"GET /api/v1/channels/stream?token={token} HTTP/1.1\r\nHost: {hostport}\r\n"
               f"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
               "Sec-WebSocket-Version: 13\r\n\r\n").encode())
    head = b""
    while b"\r\n\r\n" not in head:
        head += read_exact(s, 1)
    status = head.split(b" ", 2)[1].decode()
    if status != "101":
        print(f"upgrade {status}", flush=True)
        return
    for step in steps:
        kind, _, arg = step.partition(":")
        if kind == "bin":
            send_frame(s, 0x2, arg.encode())
        elif kind == "text":
            send_frame(s, 0x1, arg.encode())
        elif kind == "wait":
            if report(s, time.monotonic() + float(arg)):
                return
    report(s, time.monotonic() + 30)


if __name__ == "__main__":
    main()
