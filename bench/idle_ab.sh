#!/usr/bin/env bash
# Idle memory, A/B: RSS per connection of echo servers holding N idle
# WebSockets after one 20-byte echo each, the servers interleaved round by
# round (this VM moves the figure by about ±100 B between runs, so compare
# builds within one run, not across runs).
#
#   bash bench/idle_ab.sh old=/tmp/echo-old new=/tmp/echo-new
#   ROUNDS=3 CONNS=10000 bash bench/idle_ab.sh a=... b=... floor=bench/target/release/floor_idle
#
# Each NAME=BINARY is started as `BINARY ADDR --no-deflate` on core 0
# (examples/echo takes the flag; the bench servers ignore it); the load tool
# (bench/target/release/load, built by bench/run.sh) runs on core 1.
# Build each tower-ws binary with its own target directory: cargo reuses one
# target directory's artifacts across checkouts of the same package.
set -euo pipefail
BENCH=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
LOAD=$BENCH/target/release/load
ROUNDS=${ROUNDS:-2} CONNS=${CONNS:-10000}
[[ -x $LOAD ]] || { echo "idle_ab.sh: $LOAD is not built (cargo build --release in bench/)" >&2; exit 1; }
[[ $# -gt 0 ]] || { echo "usage: bash bench/idle_ab.sh NAME=BINARY..." >&2; exit 2; }
ulimit -n $((CONNS + 1000))

# Nothing left running if the script is stopped halfway.
trap 'kill $(jobs -p) 2>/dev/null || true' EXIT

rss_kib() { awk '/VmRSS/{print $2}' "/proc/$1/status"; }

for round in $(seq "$ROUNDS"); do
  for spec in "$@"; do
    name=${spec%%=*} bin=${spec#*=}
    port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    taskset -c 0 "$bin" "127.0.0.1:$port" --no-deflate >/dev/null 2>&1 &
    server=$!
    for _ in $(seq 400); do
      (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
      sleep 0.05
    done
    sleep 0.3
    before=$(rss_kib "$server")
    # The load tool prints one line once every connection is open and has
    # echoed once, then holds them until it is killed.
    coproc LOADGEN { exec taskset -c 1 "$LOAD" --addr "127.0.0.1:$port" --idle --conns "$CONNS" \
      --seconds 600 --echo-once --size 20; }
    read -r line <&"${LOADGEN[0]}"
    sleep 1
    after=$(rss_kib "$server")
    kill "$LOADGEN_PID" 2>/dev/null || true
    kill "$server"
    wait "$server" 2>/dev/null || true
    echo "round $round  $name  $(((after - before) * 1024 / CONNS)) B/connection  ($line)"
  done
done
