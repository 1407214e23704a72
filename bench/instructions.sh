#!/usr/bin/env bash
# Instructions per echoed message in an echo server's process (user space),
# counted exactly by callgrind over a measured window: the deterministic
# figure for A/B comparisons of the per-message code path on a noisy VM,
# where CPU time per message moves by ±10% between runs.
#
#   bash bench/instructions.sh [SERVER...]          # default: tower-ws floor uWebSockets
#   CONNS=100 SIZE=20 INFLIGHT=16 bash bench/instructions.sh tower-ws
#   bash bench/instructions.sh /path/to/another/echo/binary   # e.g. an older build
#
# SERVER: tower-ws (examples/echo --no-deflate), floor, uWebSockets, or the
# path of an echo server binary taking the listen address as its first
# argument. The server runs under valgrind (~50x slower) on core 0 and the
# load generator on core 1; counters are dumped when the load's measured
# window starts and when it ends, and the second dump's total is divided by
# the messages echoed in the window. Handshakes and start-up are excluded.
# Knobs: CONNS (100), SIZE (20), INFLIGHT (1), SECONDS_RUN (6).
# Build first: bash bench/run.sh (QUICK=1 is enough). Needs valgrind (Debian).
set -euo pipefail
BENCH=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
CONNS=${CONNS:-100} SIZE=${SIZE:-20} INFLIGHT=${INFLIGHT:-1} SECONDS_RUN=${SECONDS_RUN:-6}
OUT=$BENCH/target/instructions
mkdir -p "$OUT"
command -v valgrind >/dev/null || apt-get install -y -qq valgrind >/dev/null
LOAD=$BENCH/target/release/load
[[ -x $LOAD ]] || { echo "instructions.sh: $LOAD is not built (run bench/run.sh)" >&2; exit 1; }
[[ $# -gt 0 ]] || set -- tower-ws floor uWebSockets

for name in "$@"; do
  case $name in
    tower-ws) server=("$BENCH/target/tower-ws/release/examples/echo" --no-deflate) ;;
    floor) server=("$BENCH/target/release/floor_echo") ;;
    uWebSockets) server=("$BENCH/target/uws/uws_echo") ;;
    *) server=("$name") ;;
  esac
  [[ -x ${server[0]} ]] || { echo "instructions.sh: ${server[0]} is not built" >&2; exit 1; }
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  tag=$(basename "${server[0]}")
  rm -f "$OUT/$tag.out"*
  # Uncompressed names and positions: each dump stands alone.
  taskset -c 0 valgrind --tool=callgrind --compress-strings=no --compress-pos=no \
    --callgrind-out-file="$OUT/$tag.out" "${server[0]}" "127.0.0.1:$port" "${server[@]:1}" \
    >/dev/null 2>&1 &
  pid=$!
  for _ in $(seq 600); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.1; done
  sleep 1
  warmup=2
  taskset -c 1 "$LOAD" --addr "127.0.0.1:$port" --seconds "$SECONDS_RUN" --warmup "$warmup" \
    --conns "$CONNS" --size "$SIZE" --inflight "$INFLIGHT" >"$OUT/$tag.json" &
  loadpid=$!
  # The window opens after the warm-up: dump (and so zero) the counters then.
  sleep "$warmup"
  callgrind_control -d "$pid" >/dev/null 2>&1
  wait "$loadpid"
  callgrind_control -d "$pid" >/dev/null 2>&1
  kill "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  python3 - "$name" "$OUT/$tag.json" "$OUT/$tag.out.2" <<'PY'
import json, re, sys
name, load, dump = sys.argv[1:]
msgs = json.load(open(load))["msgs"]
total = int(re.search(r"^summary: (\d+)", open(dump).read(), re.M).group(1))
print(f"{name}: {total / msgs:,.0f} instructions per message "
      f"({total:,} over {msgs:,} messages; {sys.argv[2].rsplit('/', 1)[0]}/*.out.2 for callgrind_annotate)")
PY
done
