#!/usr/bin/env python3
"""The gateway at scale (issue 9; docs/performance.md, "Scale"), run by hand: make bench-scale.

In one run, on loopback, with tests/bench/tunnel_swarm (many agents in one process, each a real
TLS 1.3 connection with CHAP for its own enrolled machine, from its own 127.1.x.y source):

1. Idle tunnels: TUNNELS agents establish and stay idle; the gateway's resident memory per
   tunnel (VmRSS after - before, / TUNNELS), then after every session ended (STOP) how much of
   that memory the gateway gave back. Baseline: stunnel with the gateway's own certificate and
   key holding as many idle TLS connections (to a sink), measured the same way.
2. CPU per establishment: the gateway's CPU (utime + stime) while ESTABLISH agents establish
   (TLS 1.3 + CHAP + KEY_OFFER/KEY_ACK, journaled), against `openssl s_server`'s CPU for as
   many full TLS 1.3 handshakes with the same certificate, measured right before and after; at
   the start, then again after SESSIONS sessions were created and ended (churn), to see that
   the cost stays flat.
3. Resumes after a restart: TUNNELS tunnels up; the gateway is stopped (SIGTERM: END restart,
   sessions kept in state.db) and started again; every agent reconnects with the agent's own
   backoff and jitter and resumes. Reported: resumes per second from the moment the new
   gateway listened, and that none gave up or lost its session.

Every process started here is stopped by its PID. Every wait is bounded.
"""
import argparse
import os
import re
import resource
import select
import signal
import socket
import subprocess
import sys
import tempfile
import time

HZ = os.sysconf("SC_CLK_TCK")


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for {pid}")


def cpu_s(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / HZ  # utime, stime


def wait_port(port, limit=300):
    end = time.monotonic() + limit
    while time.monotonic() < end:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"port {port} never opened")


class Swarm:
    def __init__(self, exe, template, machines, sources, parallel, log):
        self.p = subprocess.Popen(
            [exe, "run", "--template", template, "--machines", machines,
             "--sources", str(sources), "--parallel", str(parallel)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, text=True, bufsize=1)

    def ask(self, line, limit):
        self.p.stdin.write(line + "\n")
        self.p.stdin.flush()
        ready, _, _ = select.select([self.p.stdout], [], [], limit)
        if not ready:
            raise RuntimeError(f"swarm: no answer to '{line}' within {limit} s")
        answer = self.p.stdout.readline().strip()
        if not answer:
            raise RuntimeError(f"swarm ended while asked '{line}'")
        words = answer.split()
        # "up 10 failed 0 seconds 1.2" -> {"up": 10.0, "failed": 0.0, "seconds": 1.2}
        return {words[i]: float(words[i + 1]) for i in range(0, len(words) - 1, 2)}

    def quit(self):
        try:
            self.p.stdin.write("quit\n")
            self.p.stdin.flush()
            self.p.wait(timeout=30)
        except Exception:
            self.p.kill()
            self.p.wait()


class Bench:
    def __init__(self, args):
        self.a = args
        self.work = tempfile.mkdtemp(prefix="rsgate-scale-bench.")
        self.procs = []
        self.gw = None
        self.results = {}

    def start(self, argv, **kw):
        p = subprocess.Popen(argv, **kw)
        self.procs.append(p)
        return p

    def stop(self, p, sig=signal.SIGTERM, limit=60):
        if p.poll() is None:
            p.send_signal(sig)
            try:
                p.wait(timeout=limit)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()

    def cleanup(self):
        for p in self.procs:
            if p.poll() is None:
                p.kill()
                p.wait()
        subprocess.run(["rm", "-rf", self.work])

    def path(self, name):
        return os.path.join(self.work, name)

    # -- the gateway ----------------------------------------------------------------------------
    def setup(self):
        rsgate = self.a.bin + "/gateway/rsgate"
        data = self.path("gw")
        subprocess.run([rsgate, "init", "--data", data, "--name", "scale"], check=True, stdout=subprocess.DEVNULL)
        self.http_port, self.tunnel_port = free_port(), free_port()
        conf = open(os.path.join(data, "rsgate.toml")).read()
        conf = conf.replace('listen = "127.0.0.1:8443"', f'listen = "127.0.0.1:{self.http_port}"')
        conf = conf.replace('listen = "127.0.0.1:4433"', f'listen = "127.0.0.1:{self.tunnel_port}"')
        conf = re.sub(r"(?m)^max_tunnels = \d+", f"max_tunnels = {self.a.tunnels + 1000}", conf)
        open(os.path.join(data, "rsgate.toml"), "w").write(conf)
        subprocess.run([rsgate, "machine", "enroll", "--type", "9009", "--model", "42A", "--serial", "0000001",
                        "--scope", "hmc=127.0.0.1:9", "--gateway", f"127.0.0.1:{self.tunnel_port}",
                        "--profile-out", self.path("template.toml"), "--data", data],
                       check=True, stdout=subprocess.DEVNULL)
        t0 = time.monotonic()
        subprocess.run([self.a.bin + "/tests/bench/tunnel_swarm", "enroll", "--data", data,
                        "--template", self.path("template.toml"), "--count", str(self.a.tunnels),
                        "--out", self.path("machines.txt")], check=True)
        print(f"enrolled {self.a.tunnels} machines in {time.monotonic() - t0:.0f} s", file=sys.stderr)
        self.data = data

    def start_gateway(self):
        out = open(self.path("gw.out"), "a")
        err = open(self.path("gw.err"), "a")
        self.gw = self.start([self.a.bin + "/gateway/rsgate", "serve",
                              "--config", os.path.join(self.data, "rsgate.toml")], stdout=out, stderr=err)
        t0 = time.monotonic()
        wait_port(self.tunnel_port)
        self.gw_ready = time.monotonic()
        self.gw_start_s = self.gw_ready - t0
        time.sleep(1)

    # -- phases -----------------------------------------------------------------------------------
    def idle_tunnels(self, swarm):
        n = self.a.tunnels
        time.sleep(2)
        before = rss_kib(self.gw.pid)
        c0 = cpu_s(self.gw.pid)
        r = swarm.ask(f"connect {n}", 1800)
        c1 = cpu_s(self.gw.pid)
        if r["failed"]:
            raise RuntimeError(f"{int(r['failed'])} of {n} tunnels failed to establish (see swarm.err)")
        time.sleep(self.a.settle)
        held = rss_kib(self.gw.pid)
        r2 = swarm.ask("stop", 1800)
        time.sleep(self.a.settle)
        after = rss_kib(self.gw.pid)
        self.results["idle"] = dict(n=n, before=before, held=held, after=after, up_s=r["seconds"],
                                    establish_cpu=c1 - c0, stopped=r2["stopped"], receipts=r2["receipts"])
        print(f"gateway: {n} idle tunnels up in {r['seconds']:.1f} s; RSS {before} -> {held} -> {after} KiB "
              f"after all {int(r2['stopped'])} ended ({int(r2['receipts'])} receipts)", file=sys.stderr)

    def stunnel_idle(self, swarm):
        # stunnel holds two descriptors per connection (client and sink side) and refuses clients
        # beyond about 49% of its open-files limit: as many as that allows, at most TUNNELS.
        n = min(self.a.tunnels, int(resource.getrlimit(resource.RLIMIT_NOFILE)[0] * 0.45))
        sink_port, st_port = free_port(), free_port()
        sink = self.start([sys.executable, "-c", SINK, str(sink_port)])
        wait_port(sink_port)
        conf = self.path("stunnel.conf")
        open(conf, "w").write(f"""foreground = yes
pid =
debug = 4
[tls]
accept = 127.0.0.1:{st_port}
connect = 127.0.0.1:{sink_port}
cert = {self.data}/server.pem
key = {self.data}/keys/server.key
sslVersionMin = TLSv1.3
""")
        st = self.start(["stunnel4", conf],
                        stdout=subprocess.DEVNULL, stderr=open(self.path("stunnel.err"), "w"))
        wait_port(st_port)
        time.sleep(2)
        before = rss_kib(st.pid)
        r = swarm.ask(f"tls-hold {n} 127.0.0.1:{st_port}", 1800)
        time.sleep(self.a.settle)
        held = rss_kib(st.pid)
        swarm.ask("tls-close", 600)
        time.sleep(self.a.settle)
        after = rss_kib(st.pid)
        self.stop(st)
        self.stop(sink)
        if r["failed"]:
            raise RuntimeError(f"stunnel: {int(r['failed'])} of {n} TLS connections failed (see swarm.err)")
        self.results["stunnel"] = dict(n=n, before=before, held=held, after=after)
        print(f"stunnel: {n} idle TLS connections; RSS {before} -> {held} -> {after} KiB", file=sys.stderr)

    def s_server_cpu(self, swarm, m):
        port = free_port()
        srv = self.start(["openssl", "s_server", "-quiet", "-accept", f"127.0.0.1:{port}", "-tls1_3",
                          "-cert", f"{self.data}/server.pem", "-key", f"{self.data}/keys/server.key"],
                         stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_port(port)
        time.sleep(0.5)
        c0 = cpu_s(srv.pid)
        r = swarm.ask(f"tls {m} 127.0.0.1:{port}", 1800)
        c1 = cpu_s(srv.pid)
        self.stop(srv)
        if r["failed"]:
            raise RuntimeError(f"s_server: {int(r['failed'])} of {m} handshakes failed")
        return (c1 - c0) / m

    def establishment_cpu(self, swarm, label):
        m = self.a.establish
        base1 = self.s_server_cpu(swarm, m)
        c0 = cpu_s(self.gw.pid)
        r = swarm.ask(f"connect {m}", 1800)
        c1 = cpu_s(self.gw.pid)
        s = swarm.ask("stop", 1800)
        c2 = cpu_s(self.gw.pid)
        base2 = self.s_server_cpu(swarm, m)
        if r["failed"]:
            raise RuntimeError(f"{int(r['failed'])} of {m} establishments failed")
        gw = (c1 - c0) / m
        base = (base1 + base2) / 2
        self.results.setdefault("cpu", []).append(dict(label=label, gw=gw, end=(c2 - c1) / s["stopped"],
                                                       base1=base1, base2=base2, ratio=gw / base,
                                                       rate=m / r["seconds"]))
        print(f"{label}: gateway {gw * 1e3:.2f} ms CPU per establishment ({m / r['seconds']:.0f}/s), "
              f"{(c2 - c1) / s['stopped'] * 1e3:.2f} ms per end with receipt; s_server {base1 * 1e3:.2f} / "
              f"{base2 * 1e3:.2f} ms per handshake; ratio {gw / base:.2f}x", file=sys.stderr)

    def churn(self, swarm, total):
        done = 0
        step = 10000
        while done < total:
            k = min(step, total - done)
            r = swarm.ask(f"churn {k}", 3600)
            done += int(r["churned"])
            if r["failed"]:
                raise RuntimeError(f"churn: {int(r['failed'])} failed")
            print(f"churn: {done} sessions created and ended ({k / r['seconds']:.0f}/s)", file=sys.stderr)

    def restart_resume(self, swarm):
        n = self.a.tunnels
        r = swarm.ask(f"connect {n}", 1800)
        if r["failed"]:
            raise RuntimeError(f"{int(r['failed'])} of {n} tunnels failed to establish")
        time.sleep(self.a.settle)
        t_stop = time.monotonic()
        self.stop(self.gw, signal.SIGTERM, 120)
        stopped = time.monotonic() - t_stop
        self.start_gateway()
        ready = self.gw_ready
        res = swarm.ask("resumed", 600)
        last = res["last_back"]
        span = last - ready if last > ready else float("nan")
        self.results["resume"] = dict(n=n, resumed=res["resumed"], new=res["new"], gaveup=res["gaveup"],
                                      up=res["up"], span=span, stop_s=stopped,
                                      since_loss=last - res["first_loss"])
        print(f"restart: gateway stopped in {stopped:.1f} s, listened again {self.gw_start_s:.1f} s after its start; "
              f"{int(res['resumed'])} resumed, {int(res['new'])} new "
              f"sessions, {int(res['gaveup'])} gave up; the last back {span:.1f} s after the new gateway listened "
              f"({last - res['first_loss']:.1f} s after the first loss)", file=sys.stderr)
        swarm.ask("stop", 1800)

    def run(self):
        self.setup()
        self.start_gateway()
        swarm = Swarm(self.a.bin + "/tests/bench/tunnel_swarm", self.path("template.toml"), self.path("machines.txt"),
                      self.a.sources, self.a.parallel, open(self.path("swarm.err"), "w"))
        try:
            self.establishment_cpu(swarm, "start (0 sessions ended)")
            self.idle_tunnels(swarm)
            self.stunnel_idle(swarm)
            if self.a.sessions > 0:
                self.churn(swarm, self.a.sessions)
                self.establishment_cpu(swarm, f"after {self.a.sessions + self.a.tunnels + self.a.establish} sessions")
            self.restart_resume(swarm)
        finally:
            swarm.quit()
            if self.gw:
                self.stop(self.gw)
        self.report()

    def report(self):
        i, s = self.results["idle"], self.results["stunnel"]
        per = (i["held"] - i["before"]) / i["n"]
        st_per = (s["held"] - s["before"]) / s["n"]
        kept = (i["after"] - i["before"]) / max(1, i["held"] - i["before"])
        print()
        print("## Idle tunnels")
        print(f"rsgate:  {i['n']} idle tunnels, RSS {i['before']} -> {i['held']} KiB: {per:.1f} KiB per tunnel; "
              f"after they ended: {i['after']} KiB ({kept * 100:.0f}% of the growth kept)")
        print(f"stunnel: {s['n']} idle TLS connections, RSS {s['before']} -> {s['held']} KiB: {st_per:.1f} KiB per "
              f"connection; after they closed: {s['after']} KiB")
        print(f"rsgate / stunnel per connection: {per / st_per:.2f}x")
        print("## CPU per establishment (TLS 1.3 + CHAP + key, journaled) vs openssl s_server full handshake")
        for c in self.results.get("cpu", []):
            print(f"{c['label']}: gateway {c['gw'] * 1e3:.2f} ms, s_server {c['base1'] * 1e3:.2f} / "
                  f"{c['base2'] * 1e3:.2f} ms: {c['ratio']:.2f}x ({c['rate']:.0f} establishments/s; "
                  f"an end with its receipt {c['end'] * 1e3:.2f} ms)")
        r = self.results.get("resume")
        if r:
            print("## Resume after a restart")
            print(f"{int(r['resumed'])} of {r['n']} sessions resumed, {int(r['new'])} new, {int(r['gaveup'])} gave up; "
                  f"{r['resumed'] / r['span']:.0f} resumes/s over {r['span']:.1f} s from the new gateway's listen")
        print("## Targets")
        verdict = lambda ok: "met" if ok else "NOT met"
        print(f"idle tunnels <= 32 KiB each at {i['n']}: {per:.1f} KiB: {verdict(per <= 32 and i['n'] >= 10000)}")
        print(f"memory returned after close (<= 25% of the growth kept): {kept * 100:.0f}%: {verdict(kept <= 0.25)}")
        cpus = self.results.get("cpu", [])
        worst = max(c["ratio"] for c in cpus)
        print(f"establishment CPU <= 1.5x s_server at every point: worst {worst:.2f}x: {verdict(worst <= 1.5)}")
        if len(cpus) > 1:
            # The gateway's own CPU for the same work, first and last: the baseline's figures
            # move between measurements by more than what is asked here.
            growth = cpus[-1]["gw"] / cpus[0]["gw"]
            print(f"flat: the gateway's CPU per establishment, last / first {growth:.2f} (<= 1.2): "
                  f"{verdict(growth <= 1.2)}")
        if r:
            print(f"no agent gave up or lost its session: {verdict(r['gaveup'] == 0 and r['new'] == 0 and r['resumed'] == r['n'])}")


SINK = r"""
import asyncio, sys
async def hold(reader, writer):
    try:
        while await reader.read(65536):
            pass
    finally:
        writer.close()
async def main():
    srv = await asyncio.start_server(hold, "127.0.0.1", int(sys.argv[1]), backlog=4096)
    async with srv:
        await srv.serve_forever()
asyncio.run(main())
"""


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin", default="build/release")
    ap.add_argument("--tunnels", type=int, default=10000, help="idle tunnels (and machines enrolled)")
    ap.add_argument("--establish", type=int, default=2000, help="establishments per CPU measurement")
    ap.add_argument("--sessions", type=int, default=100000, help="sessions created and ended between CPU measurements")
    ap.add_argument("--sources", type=int, default=4000, help="loopback source addresses")
    ap.add_argument("--parallel", type=int, default=64, help="establishments in flight")
    ap.add_argument("--settle", type=float, default=5, help="seconds before each memory reading")
    ap.add_argument("--keep", action="store_true", help="keep the work directory (logs, journal)")
    a = ap.parse_args()
    if a.establish > a.tunnels:
        ap.error("--establish must not exceed --tunnels")
    b = Bench(a)
    try:
        b.run()
    except Exception:
        for name in ("gw.err", "swarm.err", "stunnel.err"):
            try:
                tail = open(b.path(name)).read()[-2000:]
            except OSError:
                continue
            print(f"--- {name} (end) ---\n{tail}", file=sys.stderr)
        raise
    finally:
        if a.keep:
            print(f"kept {b.work}", file=sys.stderr)
        else:
            b.cleanup()


if __name__ == "__main__":
    main()
