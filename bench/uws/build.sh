#!/usr/bin/env bash
# Builds our uWebSockets servers (echo.cpp, pubsub.cpp) into
# bench/target/uws/{uws_echo,uws_pubsub}, against the uWebSockets and
# uSockets sources vendored by the crate libuwebsockets-sys (fetched by cargo,
# pinned by sources/Cargo.lock). Installs g++ and zlib1g-dev from Debian when
# they are missing. Does nothing when the binaries are newer than their
# inputs. Prints the uWebSockets version line to bench/target/uws/VERSION.
#
#   bash bench/uws/build.sh
#
# Flags: g++ -O3 -flto -DLIBUS_NO_SSL (no -march=native: the Rust servers are
# built for the baseline x86-64 too).
set -euo pipefail
UWS=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
OUT=$UWS/../target/uws
mkdir -p "$OUT/obj"

if ! command -v g++ >/dev/null || ! [[ -e /usr/include/zlib.h ]]; then
  command -v apt-get >/dev/null || { echo "build.sh: needs g++ and zlib1g-dev" >&2; exit 1; }
  echo "== installing g++ and zlib1g-dev (Debian)" >&2
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq g++ zlib1g-dev >/dev/null
fi

# cargo metadata downloads the crate (and its build tools' manifests) and
# says where it unpacked it.
CRATE=$(cargo metadata --format-version 1 --locked --manifest-path "$UWS/sources/Cargo.toml" |
  python3 -c 'import json,sys; print(next(p["manifest_path"] for p in json.load(sys.stdin)["packages"] if p["name"] == "libuwebsockets-sys").rsplit("/", 1)[0])')
SRC=$CRATE/uWebSockets
[[ -f $SRC/src/App.h && -f $SRC/uSockets/src/libusockets.h ]] || { echo "build.sh: no uWebSockets sources in $CRATE" >&2; exit 1; }

# The sources carry no version number; the crate's and the HTTP server
# string's ("uWebSockets/20") are what there is.
crate_version=$(basename "$CRATE" | sed 's/^libuwebsockets-sys-//')
major=$(grep -o 'uWebSockets/[0-9][0-9]*' "$SRC/src/App.h" | head -1)
echo "$major (as vendored by libuwebsockets-sys $crate_version)" >"$OUT/VERSION.new"

up_to_date() {
  local bin
  for bin in "$OUT/uws_echo" "$OUT/uws_pubsub"; do
    [[ -x $bin ]] || return 1
    [[ -z $(find "$UWS" -newer "$bin" -type f \( -name '*.cpp' -o -name '*.h' -o -name build.sh -o -name Cargo.lock \)) ]] || return 1
  done
  cmp -s "$OUT/VERSION" "$OUT/VERSION.new"
}
if up_to_date; then
  rm "$OUT/VERSION.new"
  exit 0
fi
mv "$OUT/VERSION.new" "$OUT/VERSION"

echo "== building uWebSockets servers ($(cat "$OUT/VERSION"))" >&2
start=$(date +%s)
# -g: symbols for bench/profile.sh (no effect on the generated code).
FLAGS=(-O3 -flto=auto -g -DLIBUS_NO_SSL -I "$SRC/uSockets/src")
pids=() objs=()
for c in "$SRC"/uSockets/src/*.c "$SRC"/uSockets/src/eventing/epoll_kqueue.c; do
  objs+=("$OUT/obj/$(basename "$c" .c).o")
  gcc "${FLAGS[@]}" -c "$c" -o "${objs[-1]}" & pids+=($!)
done
for p in "${pids[@]}"; do wait "$p"; done # fails if one failed
pids=()
for server in echo pubsub; do
  g++ -std=c++20 "${FLAGS[@]}" -I "$SRC/src" "$UWS/$server.cpp" "${objs[@]}" -lz -o "$OUT/uws_$server" & pids+=($!)
done
for p in "${pids[@]}"; do wait "$p"; done
echo "== built $OUT/uws_echo and uws_pubsub in $(($(date +%s) - start)) s" >&2
