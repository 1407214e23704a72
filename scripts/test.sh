#!/usr/bin/env bash
# Runs every test of tower-ws on a machine that has only Rust, Python 3, Node
# and apt: installs what the tests need, then runs, in order,
#   1. formatting, clippy (-D warnings) and rustdoc (-D warnings),
#   2. the Rust tests (unit, integration over real TCP, several nodes through
#      redis-server processes they start, doc tests) and the core without
#      default features,
#   3. interop with real peers we do not write: Python `websockets` and Node
#      `ws` clients and servers (our client against theirs), Node's http2
#      (WebSockets over HTTP/2), headless Chromium; the axum drop-in programs
#      built against axum's `extract::ws` and against `tower_ws::axum`, same
#      tests for both,
#   4. the Autobahn|Testsuite cases against the echo example, and the client
#      cases against examples/autobahn_client.rs (our fuzzing server),
#   5. a short, bounded fuzzing run of every cargo-fuzz target,
#   6. a build of the benchmarks, uWebSockets servers included (they are run by
#      bench/run.sh and bench/fanout.sh, not here).
# Each step prints a banner; the first failure stops the run.
#
#   bash scripts/test.sh
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

START=$(date +%s)
# Each banner carries the minutes since the start and the free disk space, so a
# slow step or a full disk shows in the log at the step that caused it.
step() {
    local t=$(($(date +%s) - START)) free
    free=$(df -Ph . | awk 'NR == 2 { print $4 }')
    printf '\n==== [%02d:%02d, %s free] %s ====\n' $((t / 60)) $((t % 60)) "$free" "$*"
}

# Build artifacts take most of the disk a run needs: no incremental caches
# (nothing is rebuilt twice in one run) and line tables only as debug info
# (enough for backtraces) bring target/ from ~8 GiB to a fraction of it.
export CARGO_INCREMENTAL=0
export CARGO_PROFILE_DEV_DEBUG=line-tables-only
export CARGO_PROFILE_TEST_DEBUG=line-tables-only

step "installing test dependencies (Python venv, npm packages, chromium, redis-server)"
bash scripts/setup-test-deps.sh

step "cargo fmt --check"
cargo fmt --check

step "cargo clippy --all-targets -- -D warnings"
cargo clippy --all-targets -- -D warnings

step "cargo doc (warnings are errors)"
RUSTDOCFLAGS="-D warnings" cargo doc --no-deps --all-features

step "the sans-I/O core builds without default features; the library lints clean without tracing"
cargo build --no-default-features
# The tests always have tracing (a dev-dependency turns it on): lint the
# library without it too.
cargo clippy --lib --no-default-features --features server -- -D warnings

step "building the examples (release) for the interop tests"
cargo build --release --examples

step "cargo test (unit, integration over TCP, doc tests)"
cargo test

step "memory budget under overload: 5,000 never-readers + 500 x 16 MiB senders (release, ~45 s)"
# Room for 5,520 client sockets here and as many in the server it starts.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
cargo test --release --test overload -- --nocapture

step "soak: 60 s of 10,000 churning connections, broadcast, slow and dead readers (ops example)"
SOAK_OUT="${SOAK_OUT:-target/soak-ci}" bash scripts/soak.sh 1 --connections 10000

step "interop: Python websockets client"
.venv/bin/pytest -q tests/python

step "interop: Node ws client (HTTP/1.1, and HTTP/2 streams with Node's http2)"
node --test tests/node/*.test.js

step "browser: the demo page in headless Chromium (two pages chat, deflate, server close; over TLS + HTTP/2; two demo nodes through Redis)"
node --test tests/browser/*.test.mjs

step "axum drop-in: examples/axum_dropin on axum::extract::ws and on tower_ws::axum (clippy, cargo test, Node ws, Chromium)"
bash examples/axum_dropin/test.sh

step "Autobahn|Testsuite fuzzingclient cases against examples/echo.rs"
bash tests/autobahn/run.sh --spawn target/release/examples/echo

step "Autobahn|Testsuite client cases (fuzzingserver) against examples/autobahn_client.rs"
# ~6 min of CPU; AUTOBAHN_CLIENT_EXCLUDE='12.2.*,12.3.*,12.4.*,12.5.*' skips the
# payload variations of 12.1 (60 % of it) when the CI budget is tight.
bash tests/autobahn/run_client.sh ${AUTOBAHN_CLIENT_EXCLUDE:+--exclude "$AUTOBAHN_CLIENT_EXCLUDE"}

step "fuzzing: every target for ${FUZZ_SECONDS:-30} s (cargo-fuzz, seeds in fuzz/corpus)"
bash scripts/fuzz.sh "${FUZZ_SECONDS:-30}"

step "benchmarks build (cargo bench --no-run, bench/ harness)"
cargo bench --no-run
cargo build --release --manifest-path bench/Cargo.toml
bash bench/uws/build.sh  # the uWebSockets servers (g++ -O3 -flto, ~25 s)

step "all tests passed"
