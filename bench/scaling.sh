#!/usr/bin/env bash
# Scaling across cores: tower-ws's echo and fan-out servers on a tokio
# runtime with 1 worker thread (current-thread runtime) and with 2, on this
# 2-core machine.
#
#   echo    examples/echo --no-deflate --threads N; two `load` processes of
#           50 connections each, 16 messages in flight per connection
#           (pipelined: the server is the bottleneck, not the round trips).
#   fan-out examples/broadcast --room --threads N; two `fanout` processes,
#           each a publisher and 500 subscribers on a path of its own, so
#           two rooms fan out at once on one server and one hub (one
#           registry, one metrics block, one memory budget): if a broadcast
#           serialised all threads on one lock, two threads would deliver no
#           more than one.
#
# Placement: with 1 thread the server runs on core 0 and both load
# processes on core 1 (as in the other matrices); with 2 threads the server
# may use both cores and so may the load processes, which then compete with
# it: the load generators' CPU is reported beside the server's. Compare the
# server's CPU per message (its cost) and the rate (what the machine
# delivers with load and server sharing it).
#
#   bash bench/scaling.sh                 # ~4 min -> bench/results/scaling.{jsonl,md},
#                                         # and the scaling section of BENCHMARKS.md
#   ROUNDS=1 SECONDS_PER_RUN=3 bash bench/scaling.sh
#
# Knobs: ROUNDS (3), SECONDS_PER_RUN (5), WARMUP (1), SIZES ("20 1024"),
# THREADS ("1 2").
set -euo pipefail
BENCH=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(dirname "$BENCH")
ROUNDS=${ROUNDS:-3} SECONDS_PER_RUN=${SECONDS_PER_RUN:-5} WARMUP=${WARMUP:-1}
SIZES=${SIZES:-"20 1024"} THREADS=${THREADS:-"1 2"}
OUT=$BENCH/results
mkdir -p "$OUT"
ulimit -n "$(ulimit -Hn)"

echo "== building tower-ws examples (echo, broadcast) and the load generators" >&2
CARGO_PROFILE_RELEASE_DEBUG=line-tables-only cargo build --release -q --example echo \
  --example broadcast --manifest-path "$ROOT/Cargo.toml" --target-dir "$BENCH/target/tower-ws"
cargo build --release -q --bin load --bin fanout --manifest-path "$BENCH/Cargo.toml"
EX=$BENCH/target/tower-ws/release/examples
REL=$BENCH/target/release

# Per-thread CPU ticks of a process: "tid:ticks" for each thread that ran.
thread_ticks() {
  for stat in /proc/"$1"/task/*/stat; do
    awk '{ sub(/^.*\) /, ""); print FILENAME ":" $12 + $13 }' "$stat" 2>/dev/null
  done | sed -E 's#/proc/[0-9]+/task/([0-9]+)/stat#\1#'
}

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

wait_port() {
  for _ in $(seq 400); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.05; done
  echo "scaling.sh: nothing listens on port $1" >&2
  return 1
}

# run KIND THREADS SIZE: one measurement, one JSON line on stdout.
run() {
  local kind=$1 threads=$2 size=$3 port server_cores load_cores pid
  port=$(free_port)
  if [[ $threads == 1 ]]; then server_cores=0 load_cores=1; else server_cores=0,1 load_cores=0,1; fi
  if [[ $kind == echo ]]; then
    taskset -c "$server_cores" "$EX/echo" "127.0.0.1:$port" --no-deflate --threads "$threads" >/dev/null &
  else
    taskset -c "$server_cores" "$EX/broadcast" "127.0.0.1:$port" --room --threads "$threads" >/dev/null &
  fi
  pid=$!
  wait_port "$port"
  local a b loads=() t0 t1
  a=$(mktemp) b=$(mktemp)
  t0=$(thread_ticks "$pid")
  if [[ $kind == echo ]]; then
    for f in "$a" "$b"; do
      taskset -c "$load_cores" "$REL/load" --addr "127.0.0.1:$port" --conns 50 --size "$size" \
        --inflight 16 --seconds "$SECONDS_PER_RUN" --warmup "$WARMUP" --pid "$pid" >"$f" &
      loads+=($!)
    done
  else
    local path=/a
    for f in "$a" "$b"; do
      taskset -c "$load_cores" "$REL/fanout" --addr "127.0.0.1:$port" --path "$path" --subscribers 500 \
        --size "$size" --inflight 4 --seconds "$SECONDS_PER_RUN" --warmup "$WARMUP" --pid "$pid" >"$f" &
      loads+=($!)
      path=/b
    done
  fi
  wait "${loads[@]}" || true
  t1=$(thread_ticks "$pid")
  # TERM: a background job of a script ignores SIGINT.
  kill "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  python3 - "$kind" "$threads" "$size" "$t0" "$t1" "$a" "$b" <<'PY'
import json, sys
kind, threads, size, t0, t1, *files = sys.argv[1:]
def ticks(text):
    return {l.split(":")[0]: int(l.split(":")[1]) for l in text.split() if ":" in l}
before, after = ticks(t0), ticks(t1)
# Each thread's share of the server's CPU over the run, busiest first
# (threads under 1% left out: the signal and blocking-pool threads).
used = {t: after[t] - before.get(t, 0) for t in after}
total = sum(used.values()) or 1
split = sorted((round(v / total, 2) for v in used.values() if v / total >= 0.01), reverse=True)
runs = [json.loads(open(f).read().strip().splitlines()[-1]) for f in files]
rate_key = "msgs_per_sec" if kind == "echo" else "delivered_per_sec"
rate = sum(r.get(rate_key) or 0 for r in runs)
# Both generators sample the server over (nearly) the same window.
util = sum(r.get("server_cpu_util") or 0 for r in runs) / len(runs)
load = sum(r.get("load_cpu_util") or 0 for r in runs)
errors = sum(r.get("errors") or 0 for r in runs) + sum(r.get("lost") or 0 for r in runs)
print(json.dumps({"kind": kind, "threads": int(threads), "size": int(size), "rate": round(rate, 1),
                  "server_cpu_util": round(util, 2), "server_cpu_us_per_msg": round(util * 1e6 / rate, 3) if rate else None,
                  "load_cpu_util": round(load, 2), "thread_split": split, "errors": errors}))
PY
  rm -f "$a" "$b"
}

JSONL=$OUT/scaling.jsonl
: >"$JSONL"
for round in $(seq "$ROUNDS"); do
  for kind in echo fanout; do
    for size in $SIZES; do
      for threads in $THREADS; do
        echo "== round $round/$ROUNDS: $kind, $size B, $threads thread(s)" >&2
        run "$kind" "$threads" "$size" | tee -a "$JSONL"
      done
    done
  done
done

python3 - "$JSONL" "$OUT/scaling.md" "$ROOT/BENCHMARKS.md" "$ROUNDS" "$SECONDS_PER_RUN" "$BENCH" <<'PY'
import json, statistics, sys
sys.path.insert(0, sys.argv[-1])
from sections import replace_section
jsonl, md_out, benchmarks, rounds, secs, _bench = sys.argv[1:]
rows = [json.loads(l) for l in open(jsonl) if l.strip()]
groups = {}
for r in rows:
    groups.setdefault((r["kind"], r["size"]), {}).setdefault(r["threads"], []).append(r)
def med(rs, k):
    v = [r[k] for r in rs if r[k] is not None]
    return statistics.median(v) if v else None
lines = [
    "<!-- scaling:start -->",
    "## Scaling from 1 to 2 worker threads",
    "",
    f"`bash bench/scaling.sh` (medians of {rounds} rounds, {secs} s each). Echo: 2 × 50 connections, "
    "16 messages in flight each. Fan-out: two rooms on one server and one hub, each with its own "
    "publisher and 500 subscribers (`broadcast --room`, a path per room), 4 broadcasts in flight. "
    "With 1 thread the server has core 0 and the load generators core 1; with 2 threads the server "
    "may use both cores and the load generators compete with it there (their CPU is in the last column). "
    "The load generators need about one core to keep even one server thread busy, so on this machine the "
    "rate cannot double with the second thread. What the rows show: whether a second worker thread costs "
    "more per message (a lock that serialised the threads would show as more server CPU per message, and "
    "as a rate below the one-thread rate), and how the server's work spreads over its threads (the split "
    "column: each thread's share of the server's CPU).",
    "",
    "| row | threads | messages/s | scaling | server CPU (cores) | server CPU µs/message | split over the server's threads | load CPU (cores) |",
    "|---|---|---|---|---|---|---|---|",
]
for (kind, size), by in sorted(groups.items()):
    base = med(by.get(1, []), "rate")
    for t in sorted(by):
        rs = by[t]
        rate = med(rs, "rate")
        scale = f"{rate / base:.2f}×" if base and rate else "–"
        name = f"{'echo' if kind == 'echo' else 'fan-out (2 rooms)'} {size} B"
        splits = [r.get("thread_split") or [] for r in rs]
        split = " / ".join(f"{statistics.median(s[i] for s in splits if len(s) > i):.0%}"
                           for i in range(max(map(len, splits), default=0)))
        lines.append(f"| {name} | {t} | {rate:,.0f} | {scale} | {med(rs, 'server_cpu_util'):.2f} | "
                     f"{med(rs, 'server_cpu_us_per_msg'):.3f} | {split or '–'} | {med(rs, 'load_cpu_util'):.2f} |")
errors = sum(r["errors"] for r in rows)
lines += ["", f"Errors and lost deliveries over all runs: {errors}.", "<!-- scaling:end -->"]
section = "\n".join(lines) + "\n"
replace_section(benchmarks, md_out, "scaling", section, after="<!-- fanout:end -->\n")
print(section)
PY
