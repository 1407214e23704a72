#!/usr/bin/env bash
# Soak test: the echo example (with permessage-deflate) under a few thousand
# connections that come and go for MINUTES minutes (default 2).
#
#   scripts/soak.sh [MINUTES] [extra soak.py options, e.g. --connections 500]
#
# Builds target/release/examples/echo, starts it on a free loopback port,
# runs tools/soak/soak.py (Python asyncio + the `websockets` client from
# .venv, created by scripts/setup-test-deps.sh) against it, and prints a
# table of throughput, verified messages, server RSS and open fds every few
# seconds. Fails if a message is lost or corrupted, a connection fails
# unexpectedly, or the server's RSS or fds grow past their bounds after the
# warm-up. Loopback only; stops by itself after MINUTES (+ a short drain).
set -euo pipefail

MINUTES="${1:-2}"
shift || true
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"

PY="$ROOT/.venv/bin/python"
if ! "$PY" -c 'import websockets' 2>/dev/null; then
    bash scripts/setup-test-deps.sh >&2
fi

cargo build --release --example echo >&2

# Room for the client's and the server's sockets.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

LOG="$(mktemp)"
target/release/examples/echo 127.0.0.1:0 >"$LOG" 2>&1 &
SERVER_PID=$!
cleanup() {
    kill "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
    rm -f "$LOG"
}
trap cleanup EXIT

URL=""
for _ in $(seq 50); do
    URL="$(sed -n 's/^tower-ws echo server listening on \(ws:\/\/[^ ]*\)$/\1/p' "$LOG" | head -1)"
    [ -n "$URL" ] && break
    sleep 0.1
done
if [ -z "$URL" ]; then
    echo "soak.sh: the echo server did not start:" >&2
    cat "$LOG" >&2
    exit 1
fi
echo "soak.sh: echo server pid $SERVER_PID at $URL, ${MINUTES} min of load" >&2

DURATION=$(awk "BEGIN { print $MINUTES * 60 }")
"$PY" tools/soak/soak.py --url "$URL/" --server-pid "$SERVER_PID" \
    --duration "$DURATION" "$@"
