#!/usr/bin/env python3
"""Small ping-pong latency over TCP, for tests/bench/tunnel_bench.sh.

  pingpong.py serve PORT          echo server (one thread per connection)
  pingpong.py client PORT N SIZE [FILE]  N round trips of SIZE bytes; prints p50 and p99 in
                                        microseconds, and appends every sample to FILE if given
  pingpong.py stats FILE...       p50 and p99 of all the samples in the FILEs together
"""
import socket
import sys
import threading
import time


def serve(port):
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", port))
    s.listen(16)

    def echo(c):
        c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        while True:
            d = c.recv(65536)
            if not d:
                break
            c.sendall(d)
        c.close()

    while True:
        c, _ = s.accept()
        threading.Thread(target=echo, args=(c,), daemon=True).start()


def percentiles(samples):
    samples = sorted(samples)
    return f"{samples[len(samples) // 2]:.0f} {samples[int(len(samples) * 0.99)]:.0f}"


def client(port, n, size, out=None):
    s = socket.create_connection(("127.0.0.1", port))
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    msg = b"x" * size
    samples = []
    for i in range(n + 100):
        t0 = time.perf_counter_ns()
        s.sendall(msg)
        got = 0
        while got < size:
            got += len(s.recv(size - got))
        if i >= 100:  # warm-up
            samples.append((time.perf_counter_ns() - t0) / 1000)
    if out:
        with open(out, "a") as f:
            f.write("".join(f"{x:.1f}\n" for x in samples))
    print(percentiles(samples))


def stats(files):
    samples = []
    for name in files:
        with open(name) as f:
            samples += [float(line) for line in f if line.strip()]
    print(percentiles(samples))


if __name__ == "__main__":
    if sys.argv[1] == "serve":
        serve(int(sys.argv[2]))
    elif sys.argv[1] == "stats":
        stats(sys.argv[2:])
    else:
        client(int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5] if len(sys.argv) > 5 else None)
