#!/usr/bin/env bash
# Times the video-call example's README on this machine, step by step, from a fresh
# `git clone` to two browser tabs in a call (the person's reading and typing not counted):
#   tests/browser/video-call-clone-to-call.sh REPO_URL_OR_PATH BRANCH [CARGO_TARGET_DIR]
# CARGO_TARGET_DIR: default a new empty one next to the clone (a cold build, as on a
# new machine); pass an existing one to time a build with dependencies already compiled.
# The server and the browser run in a loopback-only network namespace (unshare -n, as
# root), so the README's fixed ports (5222, 5280, 5281) collide with nothing.
set -euo pipefail
src="$1"; branch="$2"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
work="$(mktemp -d /tmp/heliograph-clone.XXXXXX)"
export CARGO_TARGET_DIR="${3:-$work/target}"
t() { date +%s.%N; }
t0=$(t)
git clone -q --branch "$branch" "$src" "$work/heliograph"
t1=$(t)
cd "$work/heliograph"
nice -n 5 cargo build --release -q -p heliograph
t2=$(t)
# The README's commands, the server in the background, in one network namespace.
unshare -n bash -c '
  set -euo pipefail
  ip link set lo up
  cargo run --release -q -p heliograph -- serve --config examples/video-call/heliograph.toml >"'"$work"'/server.log" 2>&1 &
  server=$!
  until curl -sf http://localhost:5280/ >/dev/null; do sleep 0.1; done
  cargo run --release -q -p heliograph -- user add alice@localhost --password alice --config examples/video-call/heliograph.toml
  cargo run --release -q -p heliograph -- user add bob@localhost --password bob --config examples/video-call/heliograph.toml
  node "'"$here"'/video-call-first-call.mjs" http://localhost:5280
  kill "$server"; wait "$server" || true
'
t3=$(t)
printf 'clone %.1f s, build %.1f s, start + users + two tabs to a call %.1f s, total %.1f s (CARGO_TARGET_DIR=%s)\n' \
  "$(echo "$t1 - $t0" | bc)" "$(echo "$t2 - $t1" | bc)" "$(echo "$t3 - $t2" | bc)" "$(echo "$t3 - $t0" | bc)" "$CARGO_TARGET_DIR"
rm -rf "$work/heliograph" "$work/server.log"
[[ -z "${3:-}" ]] && rm -rf "$work/target"
rmdir "$work" 2>/dev/null || true
