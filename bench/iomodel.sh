#!/usr/bin/env bash
# I/O model: what io_uring would buy an echo server on this machine's
# kernel, against tokio's epoll reactor, measured with the least WebSocket
# work either can do.
#
#   floor           src/bin/floor_echo.rs: tokio (epoll), one read and one
#                   write per batch
#   floor (io_uring) src/bin/floor_uring.rs: the same framing on one
#                   io_uring: multishot receives into a ring of provided
#                   buffers shared by all connections (each chunk copied into
#                   the connection's buffer), sends submitted in batches,
#                   DEFER_TASKRUN
#   uWebSockets     bench/uws/echo.cpp (its own epoll loop)
#   tower-ws        examples/echo --no-deflate (tokio)
#
# Rows: 100 connections × 20 B and × 1 KiB (one message in flight each),
# 100 × 20 B with 16 in flight, 10 × 64 KiB. Servers on core 0, the load
# generator on core 1, interleaved per round; medians of server CPU µs per
# message and of messages/s.
#
#   bash bench/iomodel.sh      # ~5 min (ROUNDS=5: ~8) -> bench/results/iomodel.{jsonl,md} and
#                              # the I/O model section of BENCHMARKS.md
#   ROUNDS=1 SECONDS_PER_RUN=2 bash bench/iomodel.sh
#
# Knobs: ROUNDS (3), SECONDS_PER_RUN (4), WARMUP (1). Needs a kernel with
# io_uring enabled (6.1 or later; /proc/sys/kernel/io_uring_disabled 0).
set -euo pipefail
BENCH=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(dirname "$BENCH")
ROUNDS=${ROUNDS:-3} SECONDS_PER_RUN=${SECONDS_PER_RUN:-4} WARMUP=${WARMUP:-1}
OUT=$BENCH/results
mkdir -p "$OUT"

echo "== building the floors, the load generator, tower-ws examples/echo and uWebSockets" >&2
cargo build --release -q --bin load --bin floor_echo --bin floor_uring --manifest-path "$BENCH/Cargo.toml"
CARGO_PROFILE_RELEASE_DEBUG=line-tables-only cargo build --release -q --example echo \
  --manifest-path "$ROOT/Cargo.toml" --target-dir "$BENCH/target/tower-ws"
bash "$BENCH/uws/build.sh" >&2
REL=$BENCH/target/release

declare -A SERVER=(
  [floor]="$REL/floor_echo"
  [floor (io_uring)]="$REL/floor_uring"
  [uWebSockets]="$BENCH/target/uws/uws_echo"
  [tower-ws]="$BENCH/target/tower-ws/release/examples/echo --no-deflate"
)
ORDER=("floor" "floor (io_uring)" "uWebSockets" "tower-ws")
ROWS=("100 20 1" "100 1024 1" "100 20 16" "10 65536 1")

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

JSONL=$OUT/iomodel.jsonl
: >"$JSONL"
for round in $(seq "$ROUNDS"); do
  for row in "${ROWS[@]}"; do
    read -r conns size inflight <<<"$row"
    for name in "${ORDER[@]}"; do
      echo "== round $round/$ROUNDS: $conns × $size B, $inflight in flight: $name" >&2
      port=$(free_port)
      # shellcheck disable=SC2086 # the server's arguments split on purpose
      set -- ${SERVER[$name]}
      taskset -c 0 "$1" "127.0.0.1:$port" "${@:2}" >/dev/null &
      pid=$!
      for _ in $(seq 400); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.05; done
      line=$(taskset -c 1 "$REL/load" --addr "127.0.0.1:$port" --conns "$conns" --size "$size" \
        --inflight "$inflight" --seconds "$SECONDS_PER_RUN" --warmup "$WARMUP" --pid "$pid" || true)
      # TERM: a background job of a script ignores SIGINT.
      kill "$pid" 2>/dev/null || true
      wait "$pid" 2>/dev/null || true
      python3 -c 'import json, sys; r = json.loads(sys.argv[1]); r["server"] = sys.argv[2]; print(json.dumps(r))' \
        "$line" "$name" | tee -a "$JSONL"
    done
  done
done

python3 - "$JSONL" "$OUT/iomodel.md" "$ROOT/BENCHMARKS.md" "$ROUNDS" "$SECONDS_PER_RUN" "$(uname -r)" "$BENCH" <<'PY'
import json, statistics, sys
sys.path.insert(0, sys.argv[-1])
from sections import replace_section
jsonl, md_out, benchmarks, rounds, secs, kernel, _bench = sys.argv[1:]
rows = [json.loads(l) for l in open(jsonl) if l.strip()]
order = ["floor", "floor (io_uring)", "uWebSockets", "tower-ws"]
groups = {}
for r in rows:
    key = (r["conns"], r["size"], r["inflight"])
    groups.setdefault(key, {}).setdefault(r["server"], []).append(r)
def med(rs, k):
    v = [r[k] for r in rs if r.get(k) is not None]
    return statistics.median(v) if v else None
def size_name(b):
    return f"{b // 1024} KiB" if b >= 1024 else f"{b} B"
lines = [
    "<!-- iomodel:start -->",
    "## I/O model: epoll against io_uring",
    "",
    f"`bash bench/iomodel.sh` (medians of {rounds} rounds, {secs} s each, kernel {kernel}). "
    "The two floors do the same least WebSocket work (unmask and re-frame a read batch in place, one write); "
    "`floor` does its I/O through tokio's epoll reactor, `floor (io_uring)` through one io_uring with "
    "multishot receives into a ring of provided buffers shared by every connection, sends submitted in "
    "batches and `DEFER_TASKRUN` (bench/src/bin/floor_uring.rs). The difference between the two is what "
    "moving tower-ws from tokio's reactor to io_uring could buy at most; uWebSockets and tower-ws are "
    "beside them. The io_uring floor copies each received chunk (64 KiB buffers) out of the shared ring "
    "into the connection's own buffer, where the epoll floor reads into it directly: that copy, not the "
    "I/O model, is most of its cost on the 64 KiB row. Server CPU µs per message (lower is better), "
    "then messages/s.",
    "",
    "| row | " + " | ".join(order) + " | io_uring ÷ epoll (CPU) |",
    "|---|" + "---|" * (len(order) + 1),
]
for (conns, size, inflight), by in sorted(groups.items(), key=lambda kv: (kv[0][2], kv[0][1])):
    name = f"{conns} × {size_name(size)}" + (f", {inflight} in flight" if inflight > 1 else "")
    cells = []
    for s in order:
        rs = by.get(s, [])
        cpu, rate = med(rs, "server_cpu_us_per_msg"), med(rs, "msgs_per_sec")
        cells.append(f"{cpu:.2f} ({rate / 1e3:,.0f}k/s)" if cpu and rate else "–")
    epoll, uring = med(by.get("floor", []), "server_cpu_us_per_msg"), med(by.get("floor (io_uring)", []), "server_cpu_us_per_msg")
    ratio = f"{uring / epoll:.2f}" if epoll and uring else "–"
    lines.append(f"| {name} | " + " | ".join(cells) + f" | {ratio} |")
errors = sum(r.get("errors") or 0 for r in rows)
lines += ["", f"Echo errors over all runs: {errors}.", "<!-- iomodel:end -->"]
section = "\n".join(lines) + "\n"
replace_section(benchmarks, md_out, "iomodel", section)
print(section)
PY
