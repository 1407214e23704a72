#!/usr/bin/env python3
"""Runs the echo matrix for bench/run.sh (which builds everything first).

Every run starts a fresh server pinned to core 0 and the load generator pinned
to core 1. Servers are interleaved within each round (A B C, A B C, ...) so that
slow drift on the machine (thermal, another process) spreads over all of them.
Standard library only, so a clean machine needs nothing but python3.

Environment (set by run.sh): BENCH_ROUNDS, BENCH_SECONDS, BENCH_WARMUP,
BENCH_IDLE_CONNS, QUICK, SERVERS (comma list to restrict), TOWER_WS_BIN, UWS_BIN,
QUIET_WAIT (seconds to wait for an idle machine before starting, default 0),
NOISE_LIMIT (share of the machine other processes may use during a run before
it is repeated, default 0.05) and NOISE_RETRIES (default 2; 0 with QUICK).
"""

import json
import os
import re
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import report

BENCH = Path(__file__).resolve().parent
RELEASE = BENCH / "target" / "release"
LOGS = BENCH / "target" / "logs"

KIB, MIB = 1024, 1024 * 1024

# (label, conns, size, inflight)
MATRIX = [
    ("1 x 20 B", 1, 20, 1),
    ("100 x 20 B", 100, 20, 1),
    ("100 x 1 KiB", 100, KIB, 1),
    ("10 x 16 KiB", 10, 16 * KIB, 1),
    ("200 x 16 KiB", 200, 16 * KIB, 1),
    ("500 x 16 KiB", 500, 16 * KIB, 1),
    ("1 x 1 MiB", 1, MIB, 1),
    ("10 x 64 KiB", 10, 64 * KIB, 1),
    ("100 x 20 B x 16 in flight", 100, 20, 16),
]
QUICK_MATRIX = [MATRIX[0], MATRIX[2], MATRIX[6], MATRIX[8]]

# JSON-like text, permessage-deflate offered by the client.
DEFLATE_MATRIX = [
    ("deflate 10 x 2 KiB JSON", 10, 2 * KIB, 1),
    ("deflate 10 x 32 KiB JSON", 10, 32 * KIB, 1),
]
QUICK_DEFLATE_MATRIX = DEFLATE_MATRIX[:1]

# WebSockets over HTTP/2 (RFC 8441 extended CONNECT, clear-text prior knowledge):
# (label, conns, size, inflight, WebSockets per HTTP/2 connection).
H2_MATRIX = [
    ("h2 100 x 20 B, one connection", 100, 20, 1, 100),
    ("h2 100 x 1 KiB, one connection", 100, KIB, 1, 100),
    ("h2 10 x 64 KiB, one connection", 10, 64 * KIB, 1, 10),
    ("h2 100 x 20 B, connection each", 100, 20, 1, 1),
    ("h2 100 x 1 KiB, connection each", 100, KIB, 1, 1),
    ("h2 10 x 64 KiB, connection each", 10, 64 * KIB, 1, 1),
]
QUICK_H2_MATRIX = [H2_MATRIX[1], H2_MATRIX[4]]
# Idle memory per HTTP/2 WebSocket: this many streams share each connection.
IDLE_H2_STREAMS = 100


def servers():
    """name -> argv template ({addr} is substituted). tower-ws may be missing."""
    tower = os.environ.get("TOWER_WS_BIN", "")
    # bench/uws/echo.cpp, built by bench/uws/build.sh (needs g++).
    uws = os.environ.get("UWS_BIN", "")
    node = ["node", str(BENCH / "node" / "echo.js"), "{addr}"]
    all_ = {
        "tower-ws": [tower, "{addr}", "--no-deflate"] if tower else None,
        "floor": [str(RELEASE / "floor_echo"), "{addr}"],
        # Only in the idle rows: a task per connection holding its socket
        # and nothing more, reading into a buffer per thread.
        "floor (idle)": [str(RELEASE / "floor_idle"), "{addr}"],
        "uWebSockets": [uws, "{addr}"] if uws else None,
        "tokio-tungstenite": [str(RELEASE / "tungstenite_echo"), "{addr}"],
        "axum": [str(RELEASE / "axum_echo"), "{addr}"],
        # The axum peer with its import switched to tower_ws::axum.
        "axum (tower-ws)": [str(RELEASE / "axum_tower_ws_echo"), "{addr}"],
        "fastwebsockets": [str(RELEASE / "fastwebsockets_echo"), "{addr}"],
        "tokio-websockets": [str(RELEASE / "tokio_websockets_echo"), "{addr}"],
        "node-ws": node,
        # Only in the deflate rows: the same example with compression on.
        "tower-ws (deflate)": [tower, "{addr}"] if tower else None,
        # uWebSockets' two compressors: one deflate stream per event loop,
        # reset per message, or one per connection with context takeover.
        "uWebSockets (shared)": [uws, "{addr}", "--compression", "shared"] if uws else None,
        "uWebSockets (dedicated)": [uws, "{addr}", "--compression", "dedicated"] if uws else None,
    }
    wanted = [s for s in os.environ.get("SERVERS", "").split(",") if s]
    return {k: v for k, v in all_.items() if not wanted or k in wanted}


ECHO_SERVERS = ["tower-ws", "floor", "uWebSockets", "tokio-tungstenite", "axum", "axum (tower-ws)", "fastwebsockets",
                "tokio-websockets"]
DEFLATE_SERVERS = ["tower-ws (deflate)", "uWebSockets (shared)", "uWebSockets (dedicated)", "node-ws",
                   "tokio-tungstenite"]
IDLE_SERVERS = ["tower-ws", "floor", "floor (idle)", "uWebSockets", "tokio-tungstenite", "axum", "axum (tower-ws)", "fastwebsockets",
                "tokio-websockets", "node-ws"]
# Idle again with permessage-deflate negotiated: compression state per connection.
# Row name -> server.
IDLE_DEFLATE_SERVERS = {"tower-ws (deflate)": "tower-ws (deflate)", "node-ws (deflate)": "node-ws",
                        "uWebSockets (dedicated)": "uWebSockets (dedicated)"}
# Idle again after one 20-byte echo on every connection (report.IDLE_AFTER_ECHO).
IDLE_AFTER_ECHO_SERVERS = ["tower-ws", "floor", "floor (idle)", "uWebSockets", "fastwebsockets", "tokio-websockets"]
# axum 0.8 is the other Rust server with RFC 8441 WebSockets.
H2_SERVERS = ["tower-ws", "axum"]


def cpu_busy(interval=1.0):
    """Fraction of all cores busy over `interval`, from /proc/stat."""
    def sample():
        f = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        idle = f[3] + f[4]  # idle + iowait
        return sum(f) - idle, sum(f)
    b0, t0 = sample()
    time.sleep(interval)
    b1, t1 = sample()
    return (b1 - b0) / max(t1 - t0, 1)


def wait_quiet(max_wait):
    """Other work on the machine skews everything: wait (bounded) until it has been
    idle for three samples in a row, so a pause between someone's builds is not
    mistaken for quiet."""
    deadline = time.time() + max_wait
    streak, said = 0, 0.0
    while True:
        busy = cpu_busy()
        streak = streak + 1 if busy < 0.10 else 0
        if streak >= (3 if max_wait > 0 else 1) or time.time() >= deadline:
            break
        if busy >= 0.10 and time.time() - said > 120:
            print(f"machine {busy:.0%} busy; waiting for it to settle", file=sys.stderr)
            said = time.time()
        time.sleep(5)
    if busy >= 0.10:
        print(f"WARNING: machine {busy:.0%} busy before the run; numbers will be noisy",
              file=sys.stderr)
    return busy


def others_cpu_ticks(ours):
    """CPU ticks used so far by every process except `ours` and kernel threads,
    children included (utime + stime + cutime + cstime): the difference of two
    calls is what everyone else on the machine used in between, even processes
    that exited meanwhile (their time moves into their parent's cutime)."""
    total = 0
    for d in Path("/proc").iterdir():
        if not d.name.isdigit() or int(d.name) in ours:
            continue
        try:
            stat = (d / "stat").read_text()
        except OSError:
            continue
        f = stat[stat.rfind(")") + 2:].split()
        if f[1] == "2" or d.name == "2":  # ppid 2: a kernel thread
            continue
        total += sum(int(x) for x in f[11:15])
    return total


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """A server process pinned to core 0, up once it prints its ws:// URL."""

    def __init__(self, name, argv):
        self.name = name
        addr = f"127.0.0.1:{free_port()}"
        LOGS.mkdir(parents=True, exist_ok=True)
        self.log = open(LOGS / f"{re.sub(r'[^a-z0-9]+', '_', name.lower())}.log", "ab")
        argv = ["taskset", "-c", "0"] + [a.replace("{addr}", addr) for a in argv]
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=self.log)
        self.addr = self._wait_listening()

    def _wait_listening(self):
        # The first stdout line carries ws://HOST:PORT.
        ready, _, _ = select.select([self.proc.stdout], [], [], 20)
        line = self.proc.stdout.readline().decode(errors="replace") if ready else ""
        # Keep draining stdout: a server that logs per connection must never
        # block on a full pipe in the middle of a run.
        threading.Thread(target=self._drain, daemon=True).start()
        m = re.search(r"ws://([^/\s]+)", line)
        if not m:
            self.stop()
            raise RuntimeError(f"{self.name} did not start (stdout: {line!r}); see {LOGS}")
        return m.group(1)

    def _drain(self):
        try:
            for line in self.proc.stdout:
                self.log.write(line)
        except (ValueError, OSError):  # log closed by stop() first
            pass

    @property
    def pid(self):
        # taskset execs the server, so the pid is the server's own.
        return self.proc.pid

    def rss_kib(self):
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        raise RuntimeError("no VmRSS")

    def alive(self):
        return self.proc.poll() is None

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=3)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


def load(addr, conns, size, inflight, secs, warmup, pid, deflate=False, h2=None):
    argv = ["taskset", "-c", "1", str(RELEASE / "load"), "--addr", addr,
            "--conns", str(conns), "--size", str(size), "--inflight", str(inflight),
            "--seconds", str(secs), "--warmup", str(warmup), "--pid", str(pid)]
    if deflate:
        argv.append("--deflate")
    if h2:
        argv += ["--h2", str(h2)]
    p = subprocess.run(argv, capture_output=True, text=True, timeout=secs + warmup + 120)
    if p.returncode == 3:
        print(f"    ECHO MISMATCH: {p.stderr.strip()[-400:]}", file=sys.stderr)
        return {"failed": "echo mismatch", "stderr": p.stderr[-2000:]}
    if p.returncode != 0 or not p.stdout.strip():
        return {"failed": f"load exited {p.returncode}", "stderr": p.stderr[-2000:]}
    result = json.loads(p.stdout.strip().splitlines()[-1])
    if p.stderr.strip():
        result["stderr"] = p.stderr[-2000:]
    return result


def run_echo(name, argv, row, cfg, deflate=False):
    """One measurement; repeated (up to NOISE_RETRIES times) when other processes
    took more than NOISE_LIMIT of the machine meanwhile, since on a shared
    machine that, not the server, decides the number."""
    for attempt in range(cfg["noise_retries"] + 1):
        r = run_echo_once(name, argv, row, cfg, deflate)
        r["attempts"] = attempt + 1
        if "failed" in r or r["foreign_cpu"] <= cfg["noise_limit"]:
            break
        # Retries help with a passing build, not a machine that stays busy: they
        # are capped so a busy machine cannot stretch the run without bound.
        if cfg["retry_budget"] <= 0:
            break
        cfg["retry_budget"] -= 1
    return r


def run_echo_once(name, argv, row, cfg, deflate):
    label, conns, size, inflight = row[:4]
    h2 = row[4] if len(row) > 4 else None
    try:
        srv = Server(name, argv)
    except RuntimeError as e:
        return {"failed": str(e)}
    try:
        ours = {os.getpid(), srv.pid}
        t0, others0 = time.time(), others_cpu_ticks(ours)
        r = load(srv.addr, conns, size, inflight, cfg["seconds"], cfg["warmup"], srv.pid, deflate, h2)
        wall = time.time() - t0
        # Share of both cores (100 ticks/s each) that other processes used.
        r["foreign_cpu"] = round((others_cpu_ticks(ours) - others0) / (wall * 100 * 2), 3)
        if not srv.alive():
            r["failed"] = f"server exited with {srv.proc.returncode}"
        return r
    finally:
        srv.stop()


def run_idle(name, argv, conns, deflate=False, h2=None, echo_once=False):
    """RSS growth per idle, upgraded connection (per WebSocket stream with `h2`;
    after one 20-byte message echoed on each with `echo_once`)."""
    try:
        srv = Server(name, argv)
    except RuntimeError as e:
        return {"failed": str(e)}
    holder = None
    try:
        time.sleep(0.3)
        before = srv.rss_kib()
        holder = subprocess.Popen(
            ["taskset", "-c", "1", str(RELEASE / "load"), "--addr", srv.addr, "--idle",
             "--conns", str(conns), "--seconds", "120"] + (["--deflate"] if deflate else [])
            + (["--echo-once", "--size", "20"] if echo_once else [])
            + (["--h2", str(h2)] if h2 else []),
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        line = holder.stdout.readline()  # printed once every handshake is done
        if not line.strip():
            return {"failed": f"idle load: {holder.stderr.read()[-500:]}"}
        opened = json.loads(line)
        time.sleep(1.0)  # let lazily allocated per-connection state settle
        after = srv.rss_kib()
        n = opened.get("conns", 0)
        return {"conns": n, "errors": opened.get("errors"), "rss_before_kib": before,
                "negotiated_deflate": opened.get("negotiated_deflate"),
                "rss_after_kib": after,
                "bytes_per_conn": (after - before) * 1024 / n if n else None}
    finally:
        if holder:
            holder.kill()
            holder.wait()
        srv.stop()


def main():
    # Stopped from outside: unwind so the running server and load are ended too.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    quick = os.environ.get("QUICK") == "1"
    cfg = {
        "quick": quick,
        "rounds": int(os.environ.get("BENCH_ROUNDS") or (1 if quick else 3)),
        "seconds": float(os.environ.get("BENCH_SECONDS") or (1 if quick else 5)),
        "warmup": float(os.environ.get("BENCH_WARMUP") or (0.3 if quick else 1)),
        "idle_conns": int(os.environ.get("BENCH_IDLE_CONNS") or (1000 if quick else 10000)),
        "noise_limit": float(os.environ.get("NOISE_LIMIT") or 0.05),
        "noise_retries": int(os.environ.get("NOISE_RETRIES") or (0 if quick else 2)),
    }
    busy_before = wait_quiet(float(os.environ.get("QUIET_WAIT") or 0))
    srvs = servers()
    missing = [k for k, v in srvs.items() if v is None]
    for k in missing:
        print(f"warning: {k} is not built; its cells stay empty", file=sys.stderr)
    avail = {k: v for k, v in srvs.items() if v is not None}
    matrix = QUICK_MATRIX if quick else MATRIX
    dmatrix = QUICK_DEFLATE_MATRIX if quick else DEFLATE_MATRIX
    h2matrix = QUICK_H2_MATRIX if quick else H2_MATRIX
    plan = [(row, s, False) for row in matrix for s in ECHO_SERVERS if s in avail]
    plan += [(row, s, True) for row in dmatrix for s in DEFLATE_SERVERS if s in avail]
    plan += [(row, s, False) for row in h2matrix for s in H2_SERVERS if s in avail]
    cfg["retry_budget"] = max(3, len(plan) * cfg["rounds"] // 10)
    per_run = cfg["seconds"] + cfg["warmup"] + 0.5
    print(f"{len(plan)} runs x {cfg['rounds']} rounds, ~{len(plan) * cfg['rounds'] * per_run / 60:.1f} min"
          f" + idle memory ({cfg['idle_conns']} conns)", file=sys.stderr)

    runs = []
    for rnd in range(cfg["rounds"]):
        for row, name, deflate in plan:
            r = run_echo(name, avail[name], row, cfg, deflate)
            r.update(round=rnd, server=name, row=row[0])
            runs.append(r)
            shown = r.get("failed") or (f"{r['msgs_per_sec']:>10.0f} msg/s  p99 {r['p99_us']} us"
                                        f"  others {r['foreign_cpu']:.0%}"
                                        + (f" (try {r['attempts']})" if r["attempts"] > 1 else ""))
            print(f"  [{rnd + 1}/{cfg['rounds']}] {row[0]:<28} {name:<20} {shown}", file=sys.stderr)

    idle = {}
    idle_plan = [(s, s, False) for s in IDLE_SERVERS]
    idle_plan += [(key, s, True) for key, s in IDLE_DEFLATE_SERVERS.items()]
    idle_plan = [(key, name, deflate, None, False) for key, name, deflate in idle_plan]
    idle_plan += [(f"{s} after 1 echo", s, False, None, True) for s in IDLE_AFTER_ECHO_SERVERS]
    idle_plan += [(f"{s} (h2)", s, False, IDLE_H2_STREAMS, False) for s in H2_SERVERS]
    for key, name, deflate, h2, echo_once in idle_plan:
        if name in avail:
            idle[key] = run_idle(name, avail[name], cfg["idle_conns"], deflate, h2, echo_once)
            i = idle[key]
            shown = i.get("failed") or f"{i['bytes_per_conn'] or 0:.0f} B/conn ({i['conns']} conns)"
            print(f"  idle {key:<20} {shown}", file=sys.stderr)

    machine = report.machine_info()
    machine["busy_before"] = busy_before
    machine["busy_after"] = cpu_busy()
    data = {"config": cfg, "machine": machine, "missing": missing,
            "matrix": [r[0] for r in matrix], "deflate_matrix": [r[0] for r in dmatrix],
            "h2_matrix": [r[0] for r in h2matrix],
            "runs": runs, "idle": idle}
    report.write_all(data, quick)


if __name__ == "__main__":
    main()
