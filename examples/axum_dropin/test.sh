#!/usr/bin/env bash
# Proof that tower_ws::axum is a drop-in for axum::extract::ws: builds the
# programs in examples/axum_dropin/src twice from the same source (feature
# `upstream`: axum's module; default: tower-ws's; only the `use` lines
# differ), then runs the same tests against both builds:
#   - clippy on both builds;
#   - cargo test: the generic Sink/Stream handler fed by channels, and the
#     HTTP/2 extended CONNECT route with hyper's client;
#   - Node `ws` against echo, greet (State + Query + subprotocol) and upper;
#   - the chat with two pages in headless Chromium.
# Release profile, in the repository's target dir, so the dependencies built
# for the examples are reused. Needs tests/node and tests/browser installed
# (scripts/setup-test-deps.sh) and Chromium.
#
#   bash examples/axum_dropin/test.sh
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
TARGET=${CARGO_TARGET_DIR:-target}
OUT=$TARGET/axum-dropin
mkdir -p "$OUT"

for build in axum tower-ws; do
  features=()
  [[ $build == axum ]] && features=(--features upstream)
  echo "== axum drop-in, $build build"
  cargo clippy --release -p axum-dropin --all-targets "${features[@]}" -- -D warnings
  cargo test --release -p axum-dropin "${features[@]}"
  cp "$TARGET/release/axum-dropin" "$OUT/$build"
done

echo "== axum drop-in: Node ws and Chromium against both builds"
node --test examples/axum_dropin/tests/*.test.mjs
