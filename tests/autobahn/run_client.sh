#!/usr/bin/env bash
# Run the Autobahn|Testsuite client cases: our fuzzing server
# (harness/fuzzingserver.py) against a WebSocket client.
#
#   tests/autobahn/run_client.sh                        # examples/autobahn_client, every case, strict
#   tests/autobahn/run_client.sh --exclude '12.*,13.*'  # fewer cases (~10 s without 9, 12, 13)
#   tests/autobahn/run_client.sh --client 'CMD'         # another client, run as: CMD BASE_URL
#   tests/autobahn/run_client.sh --reference websockets|ws [...]   # validate the harness on a reference client
#
# Strict: a case that is NON-STRICT, UNIMPLEMENTED (permessage-deflate not
# negotiated) or FAILED makes the exit status 1; reference clients are run
# without --strict. Everything else goes to harness/fuzzingserver.py (--help).
# The report is tests/autobahn/report/clients/<agent>.json.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/venv.sh"
ROOT="$(cd "$HERE/../.." && pwd)"

client="${CARGO_TARGET_DIR:-$ROOT/target}/release/examples/autobahn_client"
strict=(--strict --fail-on-unimplemented)
args=()
while [ $# -gt 0 ]; do
  case "$1" in
    --client) client="$2"; shift 2 ;;
    --reference)
      strict=()
      case "$2" in
        websockets) client="$VENV/bin/python $HERE/reference/client_websockets.py --agent websockets-reference" ;;
        ws) node_reference; client="node $HERE/reference/client_ws.js --agent node-ws-reference" ;;
        *) echo "unknown reference client '$2' (websockets|ws)" >&2; exit 2 ;;
      esac
      shift 2 ;;
    *) args+=("$1"); shift ;;
  esac
done
if [ "$client" = "${CARGO_TARGET_DIR:-$ROOT/target}/release/examples/autobahn_client" ] && [ ! -x "$client" ]; then
  (cd "$ROOT" && cargo build --release --example autobahn_client)
fi

exec nice -n "${AUTOBAHN_NICE:-10}" "$VENV/bin/python" "$HERE/harness/fuzzingserver.py" \
  --listen 127.0.0.1:0 --spawn-client "$client" "${strict[@]}" "${args[@]}"
