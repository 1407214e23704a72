#!/usr/bin/env bash
# Side-by-side echo benchmark: tower-ws against peer servers and a floor.
#
#   bash bench/run.sh                        # full matrix -> BENCHMARKS.md, bench/results/echo.*
#   QUICK=1 bash bench/run.sh                # smoke test (1 round, 1 s runs) -> bench/results/quick.*
#   ROUNDS=5 SECONDS=10 bash bench/run.sh    # also: WARMUP, IDLE_CONNS, SERVERS=floor,axum,
#                                            # QUIET_WAIT=600 (wait for an idle machine)
#
# Needs cargo, node/npm, python3 and taskset (util-linux); g++ and zlib1g-dev for
# uWebSockets (bench/uws/build.sh installs them from Debian). Linux only (/proc).

# Bash's own $SECONDS counts up from the value it inherits, so read it first.
RUN_SECONDS=${SECONDS:-0}
set -euo pipefail

for tool in cargo node npm python3 taskset; do
  command -v "$tool" >/dev/null || { echo "run.sh: $tool is required" >&2; exit 1; }
done

BENCH=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(dirname "$BENCH")

echo "== building the load generator and peers" >&2
cargo build --release --manifest-path "$BENCH/Cargo.toml"

# tower-ws's example is built from the root crate into the bench target dir, so
# it never waits on (or disturbs) the root crate's own target dir. The matrix
# keeps its column even if it does not build yet.
echo "== building tower-ws examples/echo" >&2
TOWER_WS_BIN=""
# Line tables as in bench/Cargo.toml's profile (for perf; codegen is unchanged).
if CARGO_PROFILE_RELEASE_DEBUG=line-tables-only cargo build --release --example echo \
    --manifest-path "$ROOT/Cargo.toml" --target-dir "$BENCH/target/tower-ws"; then
  TOWER_WS_BIN="$BENCH/target/tower-ws/release/examples/echo"
else
  echo "warning: tower-ws examples/echo does not build; running the peers only" >&2
fi

# uWebSockets from the sources cargo fetches (bench/uws/build.sh; g++, zlib).
echo "== building the uWebSockets servers" >&2
UWS_BIN=""
if bash "$BENCH/uws/build.sh"; then
  UWS_BIN="$BENCH/target/uws/uws_echo"
else
  echo "warning: the uWebSockets servers do not build; running without them" >&2
fi

echo "== installing the node ws reference" >&2
(cd "$BENCH/node" && npm ci --no-audit --no-fund --loglevel=error)

# 10,000 idle connections need as many descriptors in the server and the client.
hard=$(ulimit -Hn)
[[ $hard == unlimited ]] && hard=1048576
ulimit -n "$hard"
IDLE_CONNS=${IDLE_CONNS:-}
if [[ -n $IDLE_CONNS || ${QUICK:-0} != 1 ]]; then
  want=$((${IDLE_CONNS:-10000} + 100))
  if (($(ulimit -n) < want)); then
    echo "warning: fd limit $(ulimit -n) < $want; lowering the idle test" >&2
    IDLE_CONNS=$(($(ulimit -n) - 100))
  fi
fi

if ((RUN_SECONDS > 0)); then export BENCH_SECONDS=$RUN_SECONDS; fi
export BENCH_ROUNDS=${ROUNDS:-} BENCH_WARMUP=${WARMUP:-} BENCH_IDLE_CONNS=$IDLE_CONNS
export TOWER_WS_BIN UWS_BIN QUICK=${QUICK:-0} SERVERS=${SERVERS:-} QUIET_WAIT=${QUIET_WAIT:-0}
exec python3 "$BENCH/harness.py"
