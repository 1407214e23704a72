#!/usr/bin/env bash
# Validates the harness itself against the Node `ws` reference echo server and
# client (~60 s):
#  1. positive: cases 1-8,10 on ws -> no FAILED case (ws is known to pass Autobahn)
#  2. negative control: ws with skipUTF8Validation -> exactly the cases that
#     expect close code 1007 (invalid UTF-8) FAIL, all valid-UTF-8 cases pass
#  3. and 4.: the same two checks for the fuzzing server (client cases) with the
#     ws client
# Usage: tests/autobahn/selftest.sh
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
OUT="$HERE/report/selftest"
rm -rf "$OUT"; mkdir -p "$OUT"

echo "== positive: ws reference, cases 1-8,10"
"$HERE/run.sh" --reference ws --exclude '9.*,12.*,13.*' --report-dir "$OUT" --agent ws-positive | tail -3

echo "== negative control: ws without UTF-8 validation, cases 6.*"
set +e
"$HERE/run.sh" --reference ws --spawn-arg=--skip-utf8-validation --cases '6.*' --report-dir "$OUT" \
  --agent ws-no-utf8 > "$OUT/negative.log" 2>&1
rc=$?
set -e
tail -2 "$OUT/negative.log"
[ "$rc" = 1 ] || { echo "selftest: negative control should exit 1, got $rc"; exit 1; }

check_negative() {
"$HERE/.venv/bin/python" - "$1" <<'EOF'
import json, sys
d = json.load(open(sys.argv[1]))["results"]
failed = {k for k, r in d.items() if r["verdict"] == "FAILED"}
invalid = {k for k, r in d.items() if 1007 in (r["expectedClose"] or {}).get("closeCode", [])}
print("negative control: %d FAILED, %d cases expect 1007" % (len(failed), len(invalid)))
if failed != invalid or not invalid:
    print("selftest FAILED: unexpected=%s missing=%s" % (sorted(failed - invalid), sorted(invalid - failed)))
    sys.exit(1)
print("selftest OK")
EOF
}
check_negative "$OUT/ws-no-utf8.json"

echo "== client cases, positive: ws client, cases 1-8,10"
"$HERE/run_client.sh" --reference ws --exclude '9.*,12.*,13.*' --report-dir "$OUT" | tail -3

echo "== client cases, negative control: ws client without UTF-8 validation, cases 6.*"
set +e
"$HERE/run_client.sh" --client "node $HERE/reference/client_ws.js --agent ws-client-no-utf8 --skip-utf8-validation" \
  --cases '6.*' --report-dir "$OUT" > "$OUT/negative-client.log" 2>&1
rc=$?
set -e
tail -2 "$OUT/negative-client.log"
[ "$rc" = 1 ] || { echo "selftest: client negative control should exit 1, got $rc"; exit 1; }
check_negative "$OUT/ws-client-no-utf8.json"
