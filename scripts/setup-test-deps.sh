#!/usr/bin/env bash
# Installs the dependencies of the interop test suites (tests/python, tests/node),
# Chromium for tests/browser and redis-server/redis-cli for the backplane tests.
# Idempotent: safe to run repeatedly. Needs Rust, Python 3, Node/npm and (as root) apt.
#
#   bash scripts/setup-test-deps.sh
#   .venv/bin/pytest tests/python
#   node --test tests/node/
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"
REQS="$ROOT/tests/python/requirements.txt"
NODE_DIR="$ROOT/tests/node"

say()  { printf '==> %s\n' "$*"; }
die()  { printf 'setup-test-deps: ERROR: %s\n' "$*" >&2; exit 1; }
trap 'die "command failed (line $LINENO): $BASH_COMMAND"' ERR

command -v python3 >/dev/null || die "python3 not found; install Python 3 first"
command -v node    >/dev/null || die "node not found; install Node.js (>= 18) first"
command -v npm     >/dev/null || die "npm not found; install npm first"
[ -f "$REQS" ] || die "missing $REQS"
[ -f "$NODE_DIR/package-lock.json" ] || die "missing $NODE_DIR/package-lock.json"

apt_updated=0
apt_install() {
    [ "$(id -u)" = 0 ] || die "need root to apt-get install $*"
    if [ "$apt_updated" = 0 ]; then
        say "apt-get update"
        apt-get update -q || die "apt-get update failed"
        apt_updated=1
    fi
    say "apt-get install -y $*"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@" || die "apt-get install $* failed"
}

# --- Python virtualenv -------------------------------------------------------
if [ ! -x "$VENV/bin/python" ]; then
    say "creating virtualenv $VENV"
    if ! python3 -m venv "$VENV"; then
        rm -rf "$VENV"
        say "python3 -m venv failed; installing python3-venv from apt"
        apt_install python3-venv
        python3 -m venv "$VENV" || die "cannot create virtualenv at $VENV"
    fi
else
    say "virtualenv $VENV exists"
fi
say "pip install -r tests/python/requirements.txt"
"$VENV/bin/python" -m pip install --disable-pip-version-check -q -r "$REQS" \
    || die "pip install failed (is PyPI reachable?)"
"$VENV/bin/python" -c 'import websockets, pytest; print("    websockets", websockets.__version__, "/ pytest", pytest.__version__)'

# --- Node packages -----------------------------------------------------------
say "npm ci in tests/node"
(cd "$NODE_DIR" && npm ci --no-audit --no-fund --loglevel=error) \
    || die "npm ci failed in $NODE_DIR (is the npm registry reachable?)"
node -e 'console.log("    ws", require(process.argv[1] + "/node_modules/ws/package.json").version)' "$NODE_DIR"

if [ -f "$ROOT/tests/browser/package-lock.json" ]; then
    say "npm ci in tests/browser"
    (cd "$ROOT/tests/browser" && npm ci --no-audit --no-fund --loglevel=error) \
        || die "npm ci failed in tests/browser (is the npm registry reachable?)"
fi

# --- Chromium (for browser tests driven by playwright-core) -------------------
if [ -x /usr/bin/chromium ]; then
    say "chromium present: /usr/bin/chromium"
else
    apt_install chromium
    [ -x /usr/bin/chromium ] || die "chromium installed but /usr/bin/chromium is missing"
fi

# Chromium's first start on a machine builds its font cache and profile
# defaults; doing it here, once, keeps the browser tests' launches quick.
started=$(date +%s)
timeout 180 /usr/bin/chromium --headless --no-sandbox --disable-gpu --no-first-run \
    --disable-background-networking --disable-component-update --disable-sync \
    --user-data-dir="$(mktemp -d)" --dump-dom about:blank >/dev/null 2>&1 \
    || say "warning: chromium did not start headless (the browser tests will say why)"
say "chromium warmed up in $(($(date +%s) - started)) s"

# --- Redis (the backplane tests start their own redis-server processes) ------
if command -v redis-server >/dev/null && command -v redis-cli >/dev/null; then
    say "redis present: $(redis-server --version | cut -d' ' -f3)"
else
    apt_install redis-server redis-tools
    command -v redis-server >/dev/null || die "redis-server installed but not on PATH"
fi

# --- openssl CLI (tests/node and tests/browser make throwaway TLS certificates) --
if command -v openssl >/dev/null; then
    say "openssl present: $(command -v openssl)"
else
    apt_install openssl
fi

# --- g++ and zlib headers (bench/uws/build.sh compiles the uWebSockets servers) --
if command -v g++ >/dev/null && [ -e /usr/include/zlib.h ]; then
    say "g++ and zlib.h present"
else
    apt_install g++ zlib1g-dev
fi

say "done. Run: $VENV/bin/pytest tests/python && node --test tests/node/"
