#!/usr/bin/env python3
"""The gateway's HTTPS API under load (issue 10; docs/performance.md, "The HTTPS API"), run by
hand: make bench-http.

In one run, on loopback, with wrk (Debian's package) as the load:

1. GET /healthz on the gateway, against nginx (Debian's nginx-light) serving a static file of
   the same size over TLS with the gateway's own certificate and key, with as many worker
   processes as the gateway has I/O threads. Reported: requests per second of each, and the
   ratio (target: the gateway at least 50% of nginx).
2. GET /api/v1/pmrs/{pmr}/sessions on a journal of JOURNAL entries (1,000,000 by default:
   100,000 sessions of ten entries, each with its own PMR, written by tests/bench/journal_fill
   through the real writer), as a representative with a bearer token, under the same load;
   each lookup is journaled (audit.query) before it is answered, as in production. Against
   nginx serving a static file the size of that answer. Reported: requests per second and the
   latency percentiles wrk measures (target: p99 under 10 ms).

Both servers get the same connections (wrk -c), the same duration and the same machine. Every
process started here is stopped by its PID; every wait is bounded.
"""
import argparse
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from scale_bench import free_port, wait_port  # noqa: E402 (the benchmarks' shared helpers)


def to_ms(v):
    m = re.match(r"([\d.]+)(us|ms|s)$", v)
    n = float(m.group(1))
    return n / 1000 if m.group(2) == "us" else n * 1000 if m.group(2) == "s" else n


def wrk(url, threads, conns, seconds, headers=()):
    cmd = ["wrk", f"-t{threads}", f"-c{conns}", f"-d{seconds}s", "--latency", "--timeout", "5s"]
    for h in headers:
        cmd += ["-H", h]
    out = subprocess.run(cmd + [url], check=True, capture_output=True, text=True, timeout=seconds + 60).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    pct = {p: to_ms(v) for p, v in re.findall(r"^\s+(50|75|90|99)%\s+(\S+)$", out, re.M)}
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    sock_err = re.search(r"Socket errors: (.*)", out)
    return {"rps": rps, "p50_ms": pct.get("50"), "p90_ms": pct.get("90"), "p99_ms": pct.get("99"),
            "non_2xx": int(errors.group(1)) if errors else 0, "socket_errors": sock_err.group(1) if sock_err else "",
            "raw": out}


def profiled(out, pid, run):
    """run() while `perf record -g` samples process `pid` into `out` (when given)."""
    if not out:
        return run()
    perf = subprocess.Popen(["perf", "record", "-g", "-o", out, "-p", str(pid)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        return run()
    finally:
        perf.send_signal(signal.SIGINT)
        perf.wait(timeout=60)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--build", default="build/release")
    ap.add_argument("--journal", type=int, default=1_000_000)
    ap.add_argument("--threads", type=int, default=2, help="gateway I/O threads = nginx workers")
    ap.add_argument("--wrk-threads", type=int, default=1)
    ap.add_argument("--connections", type=int, default=32)
    ap.add_argument("--seconds", type=int, default=15)
    ap.add_argument("--json", help="write the results here")
    ap.add_argument("--perf", help="record the gateway with perf during the PMR run into this file")
    a = ap.parse_args()
    rsgate = os.path.join(a.build, "gateway", "rsgate")
    fill = os.path.join(a.build, "tests", "bench", "journal_fill")
    for tool in ("wrk", "nginx", "curl"):
        if not shutil.which(tool) and not os.path.exists(f"/usr/sbin/{tool}"):
            sys.exit(f"http_bench: {tool} is missing (make bench-http installs it)")
    nginx_bin = shutil.which("nginx") or "/usr/sbin/nginx"

    tmp = tempfile.mkdtemp(prefix="rsgate-http-bench-")
    data = os.path.join(tmp, "gw")
    procs = []
    try:
        subprocess.run([rsgate, "init", "--data", data, "--name", "gw-bench"], check=True, capture_output=True)
        t0 = time.time()
        r = subprocess.run([fill, data, str(a.journal), "gw-bench"], check=True, capture_output=True, text=True)
        print(r.stdout.strip(), f"({time.time() - t0:.0f} s)")
        subprocess.run([rsgate, "user", "add", "rep", "--role", "representative", "--password-stdin", "--data", data],
                       input="a long enough password\n", check=True, capture_output=True, text=True)
        token = subprocess.run([rsgate, "token", "create", "--user", "rep", "--data", data], check=True,
                               capture_output=True, text=True).stdout.strip()

        gw_port, ngx_port = free_port(), free_port()
        cfg_path = os.path.join(data, "rsgate.toml")
        cfg = open(cfg_path).read()
        cfg = cfg.replace('listen = "127.0.0.1:8443"', f'listen = "127.0.0.1:{gw_port}"')
        cfg = cfg.replace('listen = "127.0.0.1:4433"', f'listen = "127.0.0.1:{free_port()}"')
        cfg = re.sub(r"^threads = 1 ", f"threads = {a.threads} ", cfg, count=1, flags=re.M)
        open(cfg_path, "w").write(cfg)
        gw = subprocess.Popen([rsgate, "serve", "--config", cfg_path], stdout=subprocess.DEVNULL,
                              stderr=open(os.path.join(tmp, "gw.err"), "w"))
        procs.append(gw)
        wait_port(gw_port)
        ca = os.path.join(data, "ca.pem")
        pmr = f"TS{(a.journal // 10) // 2:09}"  # a session in the middle of the journal
        gw_base = f"https://127.0.0.1:{gw_port}"
        health_body = subprocess.run(["curl", "-sS", "--cacert", ca, f"{gw_base}/healthz"], check=True,
                                     capture_output=True).stdout
        pmr_body = subprocess.run(["curl", "-sS", "--cacert", ca, "-H", f"Authorization: Bearer {token}",
                                   f"{gw_base}/api/v1/pmrs/{pmr}/sessions"], check=True, capture_output=True).stdout
        if b'"sessions"' not in pmr_body:
            raise RuntimeError(f"the PMR lookup failed: {pmr_body[:300]!r}")

        # nginx: the same certificate and key, the same number of workers, static files of the
        # same sizes, keep-alive as the gateway (which closes a connection after its request limit).
        www = os.path.join(tmp, "www")
        os.makedirs(www)
        os.chmod(tmp, 0o755)  # nginx's workers drop root; the data directory itself stays 0700
        os.chmod(www, 0o755)
        open(os.path.join(www, "healthz"), "wb").write(health_body)
        open(os.path.join(www, "pmr.json"), "wb").write(pmr_body)
        conf = os.path.join(tmp, "nginx.conf")
        open(conf, "w").write(f"""
worker_processes {a.threads};
pid {tmp}/nginx.pid;
error_log {tmp}/nginx.err warn;
events {{ worker_connections 1024; }}
http {{
  access_log off;
  default_type application/json;
  sendfile on;
  server {{
    listen 127.0.0.1:{ngx_port} ssl;
    ssl_certificate {data}/server.pem;
    ssl_certificate_key {data}/keys/server.key;
    ssl_protocols TLSv1.2 TLSv1.3;
    root {www};
  }}
}}
""")
        ngx = subprocess.Popen([nginx_bin, "-c", conf, "-p", tmp, "-g", "daemon off;"], stdout=subprocess.DEVNULL,
                               stderr=open(os.path.join(tmp, "nginx.stderr"), "w"))
        procs.append(ngx)
        wait_port(ngx_port)

        load = dict(threads=a.wrk_threads, conns=a.connections, seconds=a.seconds)
        auth = (f"Authorization: Bearer {token}",)
        results = {
            "journal_entries": a.journal,
            "gateway_io_threads": a.threads,
            "wrk": load,
            "healthz_gateway": wrk(f"{gw_base}/healthz", **load),
            "healthz_nginx": wrk(f"https://127.0.0.1:{ngx_port}/healthz", **load),
            "pmr_gateway": profiled(a.perf, gw.pid, lambda: wrk(f"{gw_base}/api/v1/pmrs/{pmr}/sessions", headers=auth, **load)),
            "pmr_nginx": wrk(f"https://127.0.0.1:{ngx_port}/pmr.json", **load),
        }
        for k in ("healthz_gateway", "healthz_nginx", "pmr_gateway", "pmr_nginx"):
            results[k].pop("raw")
        results["healthz_ratio"] = results["healthz_gateway"]["rps"] / results["healthz_nginx"]["rps"]
        results["answer_bytes"] = {"healthz": len(health_body), "pmr": len(pmr_body)}
        print(f"{'':22} {'req/s':>10} {'p50 ms':>8} {'p90 ms':>8} {'p99 ms':>8} {'non-2xx':>8}")
        for k in ("healthz_gateway", "healthz_nginx", "pmr_gateway", "pmr_nginx"):
            v = results[k]
            print(f"{k:22} {v['rps']:10.0f} {v['p50_ms']:8.2f} {v['p90_ms']:8.2f} {v['p99_ms']:8.2f} {v['non_2xx']:8}"
                  + (f"  socket errors: {v['socket_errors']}" if v["socket_errors"] else ""))
        print(f"healthz: the gateway serves {results['healthz_ratio']:.2f}x nginx's requests per second (target >= 0.50)")
        print(f"PMR lookup on {a.journal:,} entries: p99 {results['pmr_gateway']['p99_ms']:.2f} ms (target < 10 ms)")
        if a.json:
            json.dump(results, open(a.json, "w"), indent=2)
    finally:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
                try:
                    p.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    p.kill()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
