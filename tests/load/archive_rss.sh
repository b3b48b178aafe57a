#!/usr/bin/env bash
# Server RSS against archive volume: one release server (sled, [storage] sled_cache_mib = 4,
# the tenant t.test with the archive on or off), `heliograph-load chat` with 20 pairs at
# 3,000 messages/s for SECONDS, then a minute idle; every 10 s one line "t EPOCH rss KiB
# db KiB" (VmRSS and the size of the database directory).
#
#   tests/load/archive_rss.sh true|false [SECONDS]      (default 240)
#   SOAK_BIN_DIR=DIR tests/load/archive_rss.sh ...      binaries from DIR, no build
set -euo pipefail
MAM="$1"
LOAD_SECONDS="${2:-240}"
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/heliograph-target}"
cd "$REPO_ROOT"
[[ -n "${SOAK_BIN_DIR:-}" ]] || cargo build --release -q -p heliograph -p heliograph-load
R="${SOAK_BIN_DIR:-$CARGO_TARGET_DIR/release}"
W="$(mktemp -d "${TMPDIR:-/tmp}/heliograph-archive-rss.XXXXXX")"
# shellcheck source=tests/load/bench_server.sh
source "$REPO_ROOT/tests/load/bench_server.sh"
bench_config "$W" t.test "$MAM"
printf '\n[storage]\nsled_cache_mib = 4\n' >> "$W/heliograph.toml"
trap 'kill "${SAMPLER:-}" 2>/dev/null || true; bench_stop' EXIT
bench_start "$W"
echo "server pid $BENCH_PID, archive $MAM, work dir $W"
(
    while kill -0 "$BENCH_PID" 2>/dev/null; do
        echo "t $(date +%s) rss $(awk '/VmRSS/ {print $2}' "/proc/$BENCH_PID/status") db $(du -sk "$W/data/db" | cut -f1)"
        sleep 10
    done
) &
SAMPLER=$!
"$R/heliograph-load" chat --ready-file "$W/ready.json" --domain t.test -p 20 --rate 3000 \
    -t "$LOAD_SECONDS" | grep -v '^{'
sleep 60
