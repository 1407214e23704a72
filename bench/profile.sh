#!/usr/bin/env bash
# Profiles one server under one echo or fan-out row and prints its top symbols.
# The server runs on core 0, the load generator on core 1, as in the matrices.
#
#   bash bench/profile.sh echo SERVER [load args]     # e.g. echo tower-ws --conns 100 --size 1024
#   bash bench/profile.sh fanout SERVER [fanout args] # e.g. fanout tower-ws --subscribers 1000 --size 20
#   TOOL=callgrind bash bench/profile.sh fanout floor --subscribers 1000 --size 20
#
# SERVER: echo: tower-ws, floor, uWebSockets; fanout: tower-ws, tower-ws-room,
# uWebSockets, floor. Extra arguments go to the load generator (see the top of
# bench/src/bin/load.rs or fanout.rs); it runs PROFILE_SECONDS (5, whole
# seconds) after 1 s warm-up.
# TOOL=perf (default): `perf record -e cpu-clock -g` on the running server
# (a software clock: this VM has no hardware counters), then `perf report`.
# TOOL=callgrind: the server runs under valgrind (instructions counted
# exactly, ~50x slower, so compare shares, not rates), then callgrind_annotate.
# TOP (40) lines are printed; the full data stays in bench/target/profile/.
# Build first: bash bench/run.sh or bench/fanout.sh (QUICK=1 is enough).
set -euo pipefail
BENCH=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
MODE=${1:?usage: profile.sh echo|fanout SERVER [load args]}
NAME=${2:?usage: profile.sh echo|fanout SERVER [load args]}
shift 2
TOOL=${TOOL:-perf} SECONDS_RUN=${PROFILE_SECONDS:-5} TOP=${TOP:-40}
OUT=$BENCH/target/profile
mkdir -p "$OUT"
REL=$BENCH/target/release
case "$MODE/$NAME" in
  echo/tower-ws) server=("$BENCH/target/tower-ws/release/examples/echo" --no-deflate) ;;
  echo/floor) server=("$REL/floor_echo") ;;
  echo/uWebSockets) server=("$BENCH/target/uws/uws_echo") ;;
  fanout/tower-ws) server=("$BENCH/target/tower-ws/release/examples/broadcast") ;;
  fanout/tower-ws-room) server=("$BENCH/target/tower-ws/release/examples/broadcast" --room) ;;
  fanout/uWebSockets) server=("$BENCH/target/uws/uws_pubsub") ;;
  fanout/floor) server=("$REL/floor_fanout") ;;
  *) echo "profile.sh: no server $NAME for $MODE" >&2; exit 2 ;;
esac
load=("$REL/load")
[[ $MODE == fanout ]] && load=("$REL/fanout")
for bin in "${server[0]}" "${load[0]}"; do
  [[ -x $bin ]] || { echo "profile.sh: $bin is not built (run bench/run.sh or bench/fanout.sh)" >&2; exit 1; }
done
if [[ $TOOL == perf ]] && ! command -v perf >/dev/null; then
  apt-get install -y -qq linux-perf >/dev/null
elif [[ $TOOL == callgrind ]] && ! command -v valgrind >/dev/null; then
  apt-get install -y -qq valgrind >/dev/null
fi
ulimit -n "$(ulimit -Hn)"

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
addr=127.0.0.1:$port
wrap=()
[[ $TOOL == callgrind ]] && wrap=(valgrind --tool=callgrind --callgrind-out-file="$OUT/callgrind.out")
taskset -c 0 "${wrap[@]}" "${server[@]:0:1}" "$addr" "${server[@]:1}" >/dev/null &
pid=$!
trap 'kill "$pid" 2>/dev/null || true' EXIT
for _ in $(seq 400); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.05; done

if [[ $TOOL == perf ]]; then
  # Recording starts after the warm-up: connections are open, the row is steady.
  taskset -c 1 "${load[@]}" --addr "$addr" --pid "$pid" --seconds "$SECONDS_RUN" --warmup 1 "$@" &
  loadpid=$!
  sleep 1.5
  perf record -e cpu-clock -F 2999 -g -p "$pid" -o "$OUT/perf.data" -- sleep "$((SECONDS_RUN - 1))" 2>/dev/null
  wait "$loadpid"
  perf report -i "$OUT/perf.data" --stdio --no-children --sort symbol 2>/dev/null |
    grep -E '^ +[0-9.]+%' | sed -E 's/[[:space:]]+-[[:space:]]+-[[:space:]]*$//' | head -"$TOP"
else
  taskset -c 1 "${load[@]}" --addr "$addr" --pid "$pid" --seconds "$SECONDS_RUN" --warmup 1 "$@"
  kill "$pid"; wait "$pid" 2>/dev/null || true
  # Shorter lines: no registry prefix, no binary path.
  callgrind_annotate "$OUT/callgrind.out" 2>/dev/null | grep -E '^ *[0-9,]+ \(' |
    sed -E 's#[^ ]*/registry/src/[^/]+/##; s# \[[^]]*\]$##' | head -"$TOP"
fi
