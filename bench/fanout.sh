#!/usr/bin/env bash
# Fan-out benchmark: one publisher, SUBSCRIBERS (1,000) subscribers, through
# tower-ws's examples/broadcast.rs (every message broadcast to every client):
#   one-node      one server process, no backplane
#   two-nodes     two server processes joined through a local redis-server,
#                 subscribers split over both, the publisher on the first
# Servers run on core 0 (both of them in the two-node row: the same CPU
# budget), the load generator and redis-server on core 1.
#
#   bash bench/fanout.sh          # writes bench/results/fanout.json (one JSON line per row),
#                                 # bench/results/fanout.md and its section of BENCHMARKS.md
#   SUBSCRIBERS=1000 SIZE=64 SECONDS=5 WARMUP=1 ROUNDS=3 INFLIGHT=16 bash bench/fanout.sh
#
# Each line is the load generator's (bench/src/bin/fanout.rs) plus "row",
# "round" and, for two-nodes, "redis_publish_per_broadcast": Redis PUBLISH
# calls (INFO commandstats) per broadcast, 1.0 when a broadcast costs one
# Redis message whatever the number of recipients.
# Needs cargo, taskset and redis-server / redis-cli (Debian redis-server,
# redis-tools).
set -euo pipefail
BENCH=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(dirname "$BENCH")
SUBSCRIBERS=${SUBSCRIBERS:-1000}
SIZE=${SIZE:-64}
RUN_SECONDS=${SECONDS_PER_RUN:-5}
WARMUP=${WARMUP:-1}
ROUNDS=${ROUNDS:-1}
INFLIGHT=${INFLIGHT:-16}
OUT=${OUT:-$BENCH/results/fanout.json}

for tool in cargo taskset redis-server redis-cli; do
  command -v "$tool" >/dev/null || { echo "fanout.sh: $tool is required" >&2; exit 1; }
done
echo "== building the fan-out load generator and tower-ws examples/broadcast" >&2
cargo build --release --manifest-path "$BENCH/Cargo.toml" --bin fanout
cargo build --release --example broadcast --manifest-path "$ROOT/Cargo.toml" \
  --target-dir "$BENCH/target/tower-ws"
LOAD="$BENCH/target/release/fanout"
SERVER="$BENCH/target/tower-ws/release/examples/broadcast"
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; pids=(); }
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# Starts examples/broadcast on a free port (extra args passed on); sets $addr, $pid.
start_server() {
  local port; port=$(free_port)
  taskset -c 0 "$SERVER" "127.0.0.1:$port" "$@" >/dev/null &
  pid=$!; pids+=("$pid"); addr="127.0.0.1:$port"
  for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && return; sleep 0.05; done
  echo "fanout.sh: server on $port did not start" >&2; exit 1
}

publish_calls() { redis-cli -p "$1" INFO commandstats | sed -n 's/^cmdstat_publish:calls=\([0-9]*\),.*/\1/p' | tr -d '\r' | grep . || echo 0; }

mkdir -p "$(dirname "$OUT")"
: >"$OUT"
load_args=(--subscribers "$SUBSCRIBERS" --size "$SIZE" --seconds "$RUN_SECONDS" --warmup "$WARMUP" --inflight "$INFLIGHT")
loadavg=$(cut -d' ' -f1 /proc/loadavg)
for round in $(seq "$ROUNDS"); do
  echo "== round $round: one node" >&2
  start_server; one=$addr; one_pid=$pid
  line=$(taskset -c 1 "$LOAD" --addr "$one" --pid "$one_pid" "${load_args[@]}")
  echo "${line%\}},\"row\":\"one-node\",\"round\":$round,\"loadavg_before\":$loadavg}" | tee -a "$OUT"
  cleanup

  echo "== round $round: two nodes through Redis" >&2
  rport=$(free_port)
  taskset -c 1 redis-server --port "$rport" --bind 127.0.0.1 --save '' --appendonly no >/dev/null &
  pids+=("$!")
  for _ in $(seq 100); do [[ $(redis-cli -p "$rport" PING 2>/dev/null) == PONG ]] && break; sleep 0.05; done
  start_server --redis "redis://127.0.0.1:$rport"; a=$addr; a_pid=$pid
  start_server --redis "redis://127.0.0.1:$rport"; b=$addr; b_pid=$pid
  before=$(publish_calls "$rport")
  line=$(taskset -c 1 "$LOAD" --addr "$a" --addr "$b" --pid "$a_pid" --pid "$b_pid" "${load_args[@]}")
  after=$(publish_calls "$rport")
  total=$(sed -n 's/.*"published_total":\([0-9]*\).*/\1/p' <<<"$line")
  per=$(python3 -c "print(f'{($after - $before) / max($total, 1):.3f}')")
  echo "${line%\}},\"row\":\"two-nodes\",\"round\":$round,\"loadavg_before\":$loadavg,\"redis_publish_per_broadcast\":$per}" | tee -a "$OUT"
  cleanup
done
echo "== wrote $OUT" >&2
[[ $OUT == "$BENCH/results/fanout.json" ]] && python3 "$BENCH/fanout_report.py" "$OUT"
