#!/usr/bin/env bash
# Soak test: the ops example (memory budget, keepalive, hub feed, /metrics)
# under 10,000 connections that come and go for MINUTES minutes (default 10):
# talkers whose echoes and broadcast feed are checked byte for byte, slow
# readers and dead readers.
#
#   scripts/soak.sh [MINUTES] [extra soak.py options, e.g. --connections 2000]
#
# Builds target/release/examples/ops, starts it on a free loopback port, runs
# tools/soak/soak.py (plain asyncio, from .venv) against it, which samples the
# server's RSS, open fds and counters every second into $SOAK_OUT/soak.csv
# and plots them into $SOAK_OUT/soak.png (matplotlib, installed into .venv
# here if missing). Fails if a message is lost or corrupted, a talker is
# closed unexpectedly, or the server's RSS or fds grow after the warm-up.
# Loopback only; stops by itself after MINUTES (+ a short drain).
set -euo pipefail

MINUTES="${1:-10}"
shift || true
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
OUT="${SOAK_OUT:-target/soak}"

PY="$ROOT/.venv/bin/python"
if [ ! -x "$PY" ]; then
    bash scripts/setup-test-deps.sh >&2
fi
if ! "$PY" -c 'import matplotlib' 2>/dev/null; then
    "$PY" -m pip install --disable-pip-version-check -q matplotlib >&2
fi

cargo build --release --example ops >&2

# Room for the client's and the server's sockets.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

LOG="$(mktemp)"
target/release/examples/ops 127.0.0.1:0 --feed-interval-ms 1000 --feed-size 1024 \
    --ping-secs 15 --queue 128 --overflow close --budget-mib 512 --max-connections 20000 \
    >"$LOG" 2>&1 &
SERVER_PID=$!
cleanup() {
    kill "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
    rm -f "$LOG"
}
trap cleanup EXIT

ADDR=""
for _ in $(seq 50); do
    ADDR="$(sed -n 's/^tower-ws ops server on http:\/\/\([^/]*\)\/.*$/\1/p' "$LOG" | head -1)"
    [ -n "$ADDR" ] && break
    sleep 0.1
done
if [ -z "$ADDR" ]; then
    echo "soak.sh: the ops server did not start:" >&2
    cat "$LOG" >&2
    exit 1
fi
echo "soak.sh: ops server pid $SERVER_PID at $ADDR, ${MINUTES} min of load, output in $OUT" >&2

DURATION=$(awk "BEGIN { print $MINUTES * 60 }")
"$PY" tools/soak/soak.py --addr "$ADDR" --server-pid "$SERVER_PID" \
    --duration "$DURATION" --out "$OUT" "$@"
