#!/usr/bin/env bash
# Client rows: each WebSocket client library as the load generator against the
# floor echo server (bench/src/bin/floor_echo.rs), the server pinned to core 0
# and the client to core 1, rounds interleaved. Prints a Markdown table of the
# medians and writes bench/results/client.json.
#
#   bash bench/client.sh                  # 3 rounds x 5 s per cell (~3 min)
#   QUICK=1 bash bench/client.sh          # 1 round x 1 s (smoke test, ~20 s)
#   ROUNDS=5 SECONDS=10 CLIENTS=tower-ws,fastwebsockets bash bench/client.sh
#
# The figure to compare is client CPU per message (this process's utime+stime
# over the measured window / messages echoed): it includes each library's
# framing, masking (a fresh key per frame and the XOR) and I/O. The masking
# cost alone is in `cargo bench --bench micro -- client` at the repository root.
RUN_SECONDS=${SECONDS:-0}
set -euo pipefail
BENCH=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cargo build --release --manifest-path "$BENCH/Cargo.toml" --bin client_load --bin floor_echo >&2
export BENCH ROUNDS=${ROUNDS:-} QUICK=${QUICK:-0} CLIENTS=${CLIENTS:-}
if ((RUN_SECONDS > 0)); then export BENCH_SECONDS=$RUN_SECONDS; fi
exec python3 - <<'PY'
import json, os, re, statistics, subprocess, sys, time
bench = os.environ["BENCH"]
rel = os.path.join(bench, "target", "release")
quick = os.environ.get("QUICK") == "1"
rounds = int(os.environ.get("ROUNDS") or (1 if quick else 3))
secs = float(os.environ.get("BENCH_SECONDS") or (1 if quick else 5))
warmup = 0.3 if quick else 1.0
clients = [c for c in (os.environ.get("CLIENTS") or "tower-ws,tokio-tungstenite,fastwebsockets").split(",") if c]
rows = [("100 x 20 B", 100, 20), ("100 x 1 KiB", 100, 1024), ("10 x 64 KiB", 10, 65536)]
runs = []
for rnd in range(rounds):
    for label, conns, size in rows:
        for c in clients:
            srv = subprocess.Popen(["taskset", "-c", "0", os.path.join(rel, "floor_echo"), "127.0.0.1:0"],
                                   stdout=subprocess.PIPE, text=True)
            addr = re.search(r"ws://(\S+)", srv.stdout.readline()).group(1)
            p = subprocess.run(["taskset", "-c", "1", os.path.join(rel, "client_load"), "--client", c,
                                "--addr", addr, "--conns", str(conns), "--size", str(size),
                                "--seconds", str(secs), "--warmup", str(warmup), "--pid", str(srv.pid)],
                               capture_output=True, text=True, timeout=secs + 120)
            srv.kill(); srv.wait()
            if p.returncode != 0:
                print(f"  {label} {c}: failed ({p.returncode}) {p.stderr[-300:]}", file=sys.stderr)
                continue
            r = json.loads(p.stdout.strip().splitlines()[-1])
            r.update(row=label, round=rnd)
            runs.append(r)
            print(f"  [{rnd + 1}/{rounds}] {label:<12} {c:<18} {r['msgs_per_sec']:>9.0f} msg/s "
                  f"client {r['client_cpu_us_per_msg']} us/msg", file=sys.stderr)
out = os.path.join(bench, "results", "client-quick.json" if quick else "client.json")
with open(out, "w") as f:
    json.dump({"rounds": rounds, "seconds": secs, "runs": runs,
               "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}, f, indent=1)
print("| row | client | msgs/s | client CPU us/msg | floor server CPU us/msg |")
print("|---|---|---:|---:|---:|")
for label, _, _ in rows:
    for c in clients:
        rs = [r for r in runs if r["row"] == label and r["client"] == c and not r["errors"]]
        if not rs:
            print(f"| {label} | {c} | failed | | |")
            continue
        med = lambda k: statistics.median(r[k] for r in rs if r[k] is not None)
        print(f"| {label} | {c} | {med('msgs_per_sec'):.0f} | {med('client_cpu_us_per_msg'):.2f} "
              f"| {med('server_cpu_us_per_msg'):.2f} |")
print(f"\n{rounds} round(s) of {secs:g} s; results in {out}", file=sys.stderr)
PY
