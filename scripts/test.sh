#!/usr/bin/env bash
# Runs every test of tower-ws on a machine that has only Rust, Python 3, Node
# and apt: installs what the tests need, then runs, in order,
#   1. formatting, clippy (-D warnings) and rustdoc (-D warnings),
#   2. the Rust tests (unit, integration over real TCP, doc tests) and the
#      core without default features,
#   3. interop with real clients we do not write: Python `websockets`,
#      Node `ws`, headless Chromium,
#   4. the Autobahn|Testsuite cases against the echo example,
#   5. a short, bounded fuzzing run of every cargo-fuzz target,
#   6. a build of the benchmarks (they are run by bench/run.sh, not here).
# Each step prints a banner; the first failure stops the run.
#
#   bash scripts/test.sh
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

step() { printf '\n==== %s ====\n' "$*"; }

step "installing test dependencies (Python venv, npm packages, chromium)"
bash scripts/setup-test-deps.sh

step "cargo fmt --check"
cargo fmt --check

step "cargo clippy --all-targets -- -D warnings"
cargo clippy --all-targets -- -D warnings

step "cargo doc (warnings are errors)"
RUSTDOCFLAGS="-D warnings" cargo doc --no-deps

step "the sans-I/O core builds without default features"
cargo build --no-default-features

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

step "interop: Node ws client"
node --test tests/node/*.test.js

step "browser: the demo page in headless Chromium (two pages chat, deflate, server close)"
node --test tests/browser/*.test.mjs

step "Autobahn|Testsuite fuzzingclient cases against examples/echo.rs"
bash tests/autobahn/run.sh --spawn target/release/examples/echo

step "fuzzing: every target for ${FUZZ_SECONDS:-30} s (cargo-fuzz, seeds in fuzz/corpus)"
bash scripts/fuzz.sh "${FUZZ_SECONDS:-30}"

step "benchmarks build (cargo bench --no-run, bench/ harness)"
cargo bench --no-run
cargo build --release --manifest-path bench/Cargo.toml

step "all tests passed"
