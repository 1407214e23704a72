#!/usr/bin/env bash
# Instructions per echoed message (or per delivered broadcast message) in a
# server's process (user space), counted exactly by callgrind over a
# measured window: the deterministic figure for A/B comparisons of the
# per-message code path on a noisy VM, where CPU time per message moves by
# ±10% between runs. The kernel's share (most of it, for small messages) is
# not in it: see bench/profile.sh for that.
#
#   bash bench/instructions.sh [SERVER...]          # default: tower-ws floor uWebSockets
#   CONNS=100 SIZE=20 INFLIGHT=16 bash bench/instructions.sh tower-ws
#   bash bench/instructions.sh /path/to/another/echo/binary   # e.g. an older build
#   MODE=fanout SUBSCRIBERS=1000 SIZE=1024 bash bench/instructions.sh   # per delivery
#
# SERVER: tower-ws (examples/echo --no-deflate; fan-out: examples/broadcast),
# floor, uWebSockets, or the path of a server binary taking the listen
# address as its first argument. The server runs under valgrind (~50x
# slower) on core 0 and the load generator on core 1; counters are dumped
# when the load's measured window starts and when it ends, and the second
# dump's total is divided by the messages echoed (delivered) in the window.
# Handshakes and start-up are excluded.
# Knobs: MODE (echo | fanout), CONNS (100), SIZE (20), INFLIGHT (1),
# SUBSCRIBERS (fan-out, 1000), SECONDS_RUN (6), CACHE_SIM (set: also
# simulated cache misses per message, first level and last level, data and
# instructions: a broadcast's user-space cost is mostly misses, one or two
# per cache line of each recipient's state).
# Build first: bash bench/run.sh or bench/fanout.sh (QUICK=1 is enough).
# Needs valgrind (Debian).
set -euo pipefail
BENCH=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
MODE=${MODE:-echo} CONNS=${CONNS:-100} SIZE=${SIZE:-20} INFLIGHT=${INFLIGHT:-1}
SUBSCRIBERS=${SUBSCRIBERS:-1000} SECONDS_RUN=${SECONDS_RUN:-6}
OUT=$BENCH/target/instructions
mkdir -p "$OUT"
command -v valgrind >/dev/null || apt-get install -y -qq valgrind >/dev/null
LOAD=$BENCH/target/release/load
[[ $MODE == fanout ]] && LOAD=$BENCH/target/release/fanout
[[ -x $LOAD ]] || { echo "instructions.sh: $LOAD is not built (run bench/run.sh)" >&2; exit 1; }
[[ $# -gt 0 ]] || set -- tower-ws floor uWebSockets

for name in "$@"; do
  case $MODE/$name in
    echo/tower-ws) server=("$BENCH/target/tower-ws/release/examples/echo" --no-deflate) ;;
    echo/floor) server=("$BENCH/target/release/floor_echo") ;;
    echo/uWebSockets) server=("$BENCH/target/uws/uws_echo") ;;
    fanout/tower-ws) server=("$BENCH/target/tower-ws/release/examples/broadcast") ;;
    fanout/floor) server=("$BENCH/target/release/floor_fanout") ;;
    fanout/uWebSockets) server=("$BENCH/target/uws/uws_pubsub") ;;
    *) server=("$name") ;;
  esac
  [[ -x ${server[0]} ]] || { echo "instructions.sh: ${server[0]} is not built" >&2; exit 1; }
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  tag=$(basename "${server[0]}")
  rm -f "$OUT/$tag.out"*
  # Uncompressed names and positions: each dump stands alone.
  taskset -c 0 valgrind --tool=callgrind --compress-strings=no --compress-pos=no ${CACHE_SIM:+--cache-sim=yes} \
    --callgrind-out-file="$OUT/$tag.out" "${server[0]}" "127.0.0.1:$port" "${server[@]:1}" \
    >/dev/null 2>&1 &
  pid=$!
  for _ in $(seq 600); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.1; done
  sleep 1
  if [[ $MODE == fanout ]]; then
    # The generator says when its window opens and closes (connecting a
    # thousand subscribers to a server under valgrind takes a while).
    taskset -c 1 "$LOAD" --addr "127.0.0.1:$port" --seconds "$SECONDS_RUN" --warmup 1 \
      --subscribers "$SUBSCRIBERS" --size "$SIZE" >"$OUT/$tag.json" 2>"$OUT/$tag.err" &
    loadpid=$!
    for edge in open closed; do
      until grep -q "window $edge" "$OUT/$tag.err" || ! kill -0 "$loadpid" 2>/dev/null; do sleep 0.02; done
      callgrind_control -d "$pid" >/dev/null 2>&1
    done
    wait "$loadpid"
  else
    warmup=2
    taskset -c 1 "$LOAD" --addr "127.0.0.1:$port" --seconds "$SECONDS_RUN" --warmup "$warmup" \
      --conns "$CONNS" --size "$SIZE" --inflight "$INFLIGHT" >"$OUT/$tag.json" &
    loadpid=$!
    # The window opens after the warm-up: dump (and so zero) the counters then.
    sleep "$warmup"
    callgrind_control -d "$pid" >/dev/null 2>&1
    wait "$loadpid"
    callgrind_control -d "$pid" >/dev/null 2>&1
  fi
  kill "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  python3 - "$name" "$OUT/$tag.json" "$OUT/$tag.out.2" <<'PY'
import json, re, sys
name, load, dump = sys.argv[1:]
row = json.load(open(load))
msgs = row["msgs"] if "msgs" in row else row["delivered"]
if row.get("stalls") or row.get("lost"):
    print(f"{name}: warning: {row.get('stalls')} stalls, {row.get('lost')} lost", file=sys.stderr)
text = open(dump).read()
events = re.search(r"^events: (.*)$", text, re.M).group(1).split()
summary = [int(v) for v in re.search(r"^summary: (.*)$", text, re.M).group(1).split()]
counts = dict(zip(events, summary))
total = counts["Ir"]
print(f"{name}: {total / msgs:,.0f} instructions per message "
      f"{'delivered' if 'delivered' in row else 'echoed'} "
      f"({total:,} over {msgs:,} messages; {sys.argv[2].rsplit('/', 1)[0]}/*.out.2 for callgrind_annotate)")
if "D1mr" in counts:
    per = lambda *keys: sum(counts.get(k, 0) for k in keys) / msgs
    print(f"  per message: first-level misses {per('I1mr', 'D1mr', 'D1mw'):.1f}, "
          f"last-level misses {per('ILmr', 'DLmr', 'DLmw'):.1f}")
PY
done
