#!/usr/bin/env bash
# Fan-out benchmark: one publisher, N subscribers, every message broadcast to
# every client (bench/src/bin/fanout.rs drives it), against:
#   tower-ws         examples/broadcast.rs, Clients::broadcast (Hub)
#   tower-ws (room)  the same with --room: every client in one room, Clients::to
#   uWebSockets      bench/uws/pubsub.cpp: subscribe + App::publish
#   node-ws          bench/node/broadcast.js: a loop over wss.clients
#   floor            bench/src/bin/floor_fanout.rs: one frame, one send per socket
#   tower-ws (2 nodes via Redis)  two broadcast.rs processes joined through a
#                    local redis-server (1,000 subscribers, closed loop, no
#                    compression only), with Redis PUBLISH calls per broadcast
# With compression (permessage-deflate): tower-ws --deflate, uWebSockets with
# SHARED_COMPRESSOR and DEDICATED_COMPRESSOR, node-ws perMessageDeflate, floor
# --deflate. Each its library's defaults otherwise (tower-ws and ws leave
# messages under 128 B / 1 KiB uncompressed; uWebSockets compresses all).
#
# Closed loop: the next message goes out when every subscriber has the
# previous one. Open loop: a fixed rate, the same for every server, chosen as
# deliveries per second (OPEN_RATE, OPEN_RATE_DEFLATE; a quarter at 16 KiB)
# divided by the subscribers, at least 2 broadcasts/s, for latency under load. Servers run on core 0 (both of them in
# the two-node row), the load generator and redis-server on core 1: with
# 10,000 subscribers the load generator's core is often the busier one (see
# load_cpu_util); server CPU per delivery is the figure to compare then.
#
#   bash bench/fanout.sh            # full matrix (~65 min) -> bench/results/fanout.json, fanout.md,
#                                   # fanout.svg and the fan-out section of BENCHMARKS.md
#   QUICK=1 bash bench/fanout.sh    # 1 s runs, one round (~12 min) -> bench/results/fanout-quick.*
#   SUBSCRIBERS="1000" SIZES="20" LOOPS=closed COMPRESSION=off SERVERS="tower-ws,floor" \
#     ROUNDS=3 SECONDS_PER_RUN=5 WARMUP=1 bash bench/fanout.sh
#
# Knobs (environment): SUBSCRIBERS ("1000 10000"), SIZES ("20 1024 16384"),
# LOOPS ("closed open"), COMPRESSION ("off on"), SERVERS (comma list of the
# names above, default all), ROUNDS (3; QUICK 1), SECONDS_PER_RUN (5; QUICK 1),
# WARMUP (1; QUICK 0.5), OPEN_RATE (deliveries/s, 50000; 16 KiB: a quarter),
# OPEN_RATE_DEFLATE (10000), INFLIGHT (closed loop: broadcasts unfinished at
# once, 1), OUT.
# Needs cargo, python3, taskset, node/npm, g++ (bench/uws/build.sh installs it)
# and redis-server / redis-cli for the two-node row (Debian redis-server,
# redis-tools; the row is skipped without them).
set -euo pipefail
BENCH=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(dirname "$BENCH")
QUICK=${QUICK:-0}
SUBSCRIBERS=${SUBSCRIBERS:-1000 10000}
SIZES=${SIZES:-20 1024 16384}
LOOPS=${LOOPS:-closed open}
COMPRESSION=${COMPRESSION:-off on}
SERVERS=${SERVERS:-}
if [[ $QUICK == 1 ]]; then
  ROUNDS=${ROUNDS:-1} RUN_SECONDS=${SECONDS_PER_RUN:-1} WARMUP=${WARMUP:-0.5}
  OUT=${OUT:-$BENCH/results/fanout-quick.json}
else
  ROUNDS=${ROUNDS:-3} RUN_SECONDS=${SECONDS_PER_RUN:-5} WARMUP=${WARMUP:-1}
  OUT=${OUT:-$BENCH/results/fanout.json}
fi
INFLIGHT=${INFLIGHT:-1}
OPEN_RATE=${OPEN_RATE:-50000}
OPEN_RATE_DEFLATE=${OPEN_RATE_DEFLATE:-10000}

for tool in cargo taskset python3 node npm; do
  command -v "$tool" >/dev/null || { echo "fanout.sh: $tool is required" >&2; exit 1; }
done
echo "== building the fan-out load generator, floor and tower-ws examples/broadcast" >&2
cargo build --release --manifest-path "$BENCH/Cargo.toml" --bin fanout --bin floor_fanout
CARGO_PROFILE_RELEASE_DEBUG=line-tables-only cargo build --release --example broadcast \
  --manifest-path "$ROOT/Cargo.toml" --target-dir "$BENCH/target/tower-ws"
bash "$BENCH/uws/build.sh"
(cd "$BENCH/node" && npm ci --no-audit --no-fund --loglevel=error)
LOAD="$BENCH/target/release/fanout"
TOWER="$BENCH/target/tower-ws/release/examples/broadcast"
UWS="$BENCH/target/uws/uws_pubsub"
FLOOR="$BENCH/target/release/floor_fanout"
NODE=(node "$BENCH/node/broadcast.js")
redis=1
command -v redis-server >/dev/null && command -v redis-cli >/dev/null || redis=0

# 10,000 subscribers: as many descriptors in the load generator and the server.
ulimit -Hn 65536 2>/dev/null || true
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
for n in $SUBSCRIBERS; do
  if (($(ulimit -n) < n + 100)); then
    echo "fanout.sh: fd limit $(ulimit -n) is too low for $n subscribers" >&2; exit 1
  fi
done

pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null && { wait "$p" 2>/dev/null || true; }; done; pids=(); }
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# Starts a server on core 0 (argv with {addr} for the address); sets $addr, $pid.
start_server() {
  local port; port=$(free_port)
  addr="127.0.0.1:$port"
  taskset -c 0 "${@//\{addr\}/$addr}" >/dev/null &
  pid=$!; pids+=("$pid")
  for _ in $(seq 200); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && return; sleep 0.05; done
  echo "fanout.sh: $1 on $port did not start" >&2; return 1
}

# The command line of a server, by name and compression (off/on).
server_argv() {
  case "$1/$2" in
    "tower-ws/off") echo "$TOWER {addr}" ;;
    "tower-ws (room)/off") echo "$TOWER {addr} --room" ;;
    "tower-ws/on") echo "$TOWER {addr} --deflate" ;;
    "uWebSockets/off") echo "$UWS {addr}" ;;
    "uWebSockets (shared)/on") echo "$UWS {addr} --compression shared" ;;
    "uWebSockets (dedicated)/on") echo "$UWS {addr} --compression dedicated" ;;
    "node-ws/off") echo "${NODE[*]} {addr}" ;;
    "node-ws/on") echo "${NODE[*]} {addr} --deflate" ;;
    "floor/off") echo "$FLOOR {addr}" ;;
    "floor/on") echo "$FLOOR {addr} --deflate" ;;
  esac
}
PLAIN=("tower-ws" "tower-ws (room)" "uWebSockets" "node-ws" "floor")
DEFLATE=("tower-ws" "uWebSockets (shared)" "uWebSockets (dedicated)" "node-ws" "floor")
wanted() { [[ -z $SERVERS || ",$SERVERS," == *",$1,"* ]]; }

publish_calls() { redis-cli -p "$1" INFO commandstats | sed -n 's/^cmdstat_publish:calls=\([0-9]*\),.*/\1/p' | tr -d '\r' | grep . || echo 0; }

# Adds the run's description to the load generator's JSON line and keeps it.
keep() {
  local line=$1 server=$2 extra=${3:-}
  echo "${line%\}},\"server\":\"$server\",\"round\":$round,\"loadavg_before\":$loadavg$extra}" | tee -a "$OUT"
}

# One run of the load generator: subscribers, size, loop, compression, addresses and pids.
load() {
  local subs=$1 size=$2 loop=$3 compression=$4; shift 4
  local args=(--subscribers "$subs" --size "$size" --seconds "$RUN_SECONDS" --warmup "$WARMUP"
    --inflight "$INFLIGHT")
  ((subs > 5000)) && args+=(--sources 4)
  [[ $compression == on ]] && args+=(--deflate)
  if [[ $loop == open ]]; then
    local per_sec=$OPEN_RATE
    [[ $compression == on ]] && per_sec=$OPEN_RATE_DEFLATE
    ((size >= 16384)) && per_sec=$((per_sec / 4))
    # At least 2 broadcasts/s, so a 10,000-subscriber run has some to time.
    args+=(--rate "$(python3 -c "print(max($per_sec / $subs, 2))")")
  fi
  local line
  line=$(taskset -c 1 "$LOAD" "${args[@]}" "$@") || true
  echo "${line:-{\"error\":\"the load generator failed\"\}}"
}

mkdir -p "$(dirname "$OUT")"
: >"$OUT"
start=$(date +%s)
for round in $(seq "$ROUNDS"); do
  for subs in $SUBSCRIBERS; do
    for size in $SIZES; do
      for loop in $LOOPS; do
        for compression in $COMPRESSION; do
          names=("${PLAIN[@]}")
          [[ $compression == on ]] && names=("${DEFLATE[@]}")
          for name in "${names[@]}"; do
            wanted "$name" || continue
            echo "== round $round: $subs x $size B, $loop loop, compression $compression: $name" >&2
            loadavg=$(cut -d' ' -f1 /proc/loadavg)
            read -ra argv <<<"$(server_argv "$name" "$compression")"
            if start_server "${argv[@]}"; then
              keep "$(load "$subs" "$size" "$loop" "$compression" --addr "$addr" --pid "$pid")" "$name"
            fi
            cleanup
          done
          name="tower-ws (2 nodes via Redis)"
          if ((redis)) && wanted "$name" && [[ $subs == 1000 && $loop == closed && $compression == off ]]; then
            echo "== round $round: $subs x $size B: $name" >&2
            loadavg=$(cut -d' ' -f1 /proc/loadavg)
            rport=$(free_port)
            taskset -c 1 redis-server --port "$rport" --bind 127.0.0.1 --save '' --appendonly no >/dev/null &
            pids+=("$!")
            for _ in $(seq 100); do [[ $(redis-cli -p "$rport" PING 2>/dev/null) == PONG ]] && break; sleep 0.05; done
            start_server "$TOWER" "{addr}" --redis "redis://127.0.0.1:$rport"; a=$addr a_pid=$pid
            start_server "$TOWER" "{addr}" --redis "redis://127.0.0.1:$rport"; b=$addr b_pid=$pid
            before=$(publish_calls "$rport")
            line=$(load "$subs" "$size" closed off --addr "$a" --addr "$b" --pid "$a_pid" --pid "$b_pid")
            after=$(publish_calls "$rport")
            total=$(sed -n 's/.*"published_total":\([0-9]*\).*/\1/p' <<<"$line")
            per=$(python3 -c "print(f'{($after - $before) / max(${total:-0}, 1):.3f}')")
            keep "$line" "$name" ",\"redis_publish_per_broadcast\":$per"
            cleanup
          fi
        done
      done
    done
  done
done
echo "== wrote $OUT in $(($(date +%s) - start)) s" >&2
python3 "$BENCH/fanout_report.py" "$OUT"
