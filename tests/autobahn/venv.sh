# Sourced by run.sh and run_client.sh: the harness venv in
# tests/autobahn/.venv (override with AUTOBAHN_VENV), (re)created from
# requirements.txt when that file changes, and the Node reference packages.
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
VENV="${AUTOBAHN_VENV:-$HERE/.venv}"
PY="${PYTHON:-python3}"

if [ ! -x "$VENV/bin/python" ] || ! cmp -s "$HERE/requirements.txt" "$VENV/.requirements.txt"; then
  echo "setting up $VENV" >&2
  "$PY" -m venv "$VENV"
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check -r "$HERE/requirements.txt"
  cp "$HERE/requirements.txt" "$VENV/.requirements.txt"
fi

node_reference() {
  if [ ! -d "$HERE/reference/node_modules/ws" ]; then
    (cd "$HERE/reference" && npm ci --no-audit --no-fund --silent)
  fi
}
