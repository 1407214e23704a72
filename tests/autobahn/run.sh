#!/usr/bin/env bash
# Run the Autobahn|Testsuite fuzzingclient cases against a WebSocket echo server.
#
#   tests/autobahn/run.sh ws://127.0.0.1:9001                 # server already running
#   tests/autobahn/run.sh --spawn target/release/examples/echo  # start it (adds 127.0.0.1:0)
#   tests/autobahn/run.sh --spawn target/release/examples/echo --spawn-arg=--no-deflate --exclude '12.*,13.*'
#   tests/autobahn/run.sh --reference websockets|ws [...]      # validate harness on a reference server
#   tests/autobahn/run.sh --cases '1.*,2.*' --exclude '9.*' ws://...
#
# Everything else is passed to harness/fuzzingclient.py (see --help).
# The venv lives in tests/autobahn/.venv (override with AUTOBAHN_VENV); it is
# (re)created from requirements.txt when that file changes.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/venv.sh"

args=()
while [ $# -gt 0 ]; do
  case "$1" in
    --reference)
      ref="$2"; shift 2
      case "$ref" in
        websockets) args+=(--spawn "$VENV/bin/python $HERE/reference/echo_websockets.py" --agent websockets-reference) ;;
        ws)
          node_reference
          args+=(--spawn "node $HERE/reference/echo_ws.js" --agent node-ws-reference) ;;
        *) echo "unknown reference server '$ref' (websockets|ws)" >&2; exit 2 ;;
      esac ;;
    *) args+=("$1"); shift ;;
  esac
done

exec nice -n "${AUTOBAHN_NICE:-10}" "$VENV/bin/python" "$HERE/harness/fuzzingclient.py" "${args[@]}"
