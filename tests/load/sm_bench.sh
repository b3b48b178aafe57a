#!/usr/bin/env bash
# What stream management (XEP-0198) costs the 1:1 message path: the same chat, in the same
# run against the same release server, with and without stream management on every
# session, alternating, ROUNDS times each. Plain TCP with PLAIN, window 8 per sender, on a
# tenant with the archive off (so the archive's cost does not hide SM's). With --sm the
# load client answers the server's `<r/>` and asks for an ack itself every ACK_EVERY
# messages; the server asks as its `[c2s]` defaults say. Prints the medians and the ratio.
#
#   tests/load/sm_bench.sh [PAIRS] [SECONDS] [ROUNDS]     (default 100 10 5)
#   ACK_EVERY=10 (default)
set -euo pipefail
PAIRS="${1:-100}"
SECS="${2:-10}"
ROUNDS="${3:-5}"
ACK_EVERY="${ACK_EVERY:-10}"
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/heliograph-target}"
cd "$REPO_ROOT"
cargo build --release -q -p heliograph -p heliograph-load
R="$CARGO_TARGET_DIR/release"
WORK="$(mktemp -d)"
# shellcheck source=tests/load/bench_server.sh
source "$REPO_ROOT/tests/load/bench_server.sh"
trap 'bench_stop; rm -rf "$WORK"' EXIT
bench_config "$WORK" plain.test false
bench_start "$WORK"

for round in $(seq "$ROUNDS"); do
    for sm in "" "--sm"; do
        echo "=== round $round: ${sm:-without SM}"
        # shellcheck disable=SC2086
        "$R/heliograph-load" chat --ready-file "$WORK/ready.json" --domain plain.test \
            --pairs "$PAIRS" --window 8 -t "$SECS" --transport plain \
            $sm ${sm:+--ack-every "$ACK_EVERY"} | tee -a "$WORK/results.txt" || true
    done
done

# Medians over the rounds, and what stream management adds.
python3 - "$WORK/results.txt" <<'PY'
import json, statistics, sys
runs = [json.loads(l) for l in open(sys.argv[1]) if l.startswith("{")]
def med(sm, key):
    return statistics.median(r[key] for r in runs if r["sm"] == sm)
off, on = med(False, "cpu_us_per_msg"), med(True, "cpu_us_per_msg")
print(f"median server CPU per message: without SM {off:.3f} µs, with SM {on:.3f} µs "
      f"({(on / off - 1) * 100:+.1f}%); median rate {med(False, 'delivered_per_s'):.0f} vs "
      f"{med(True, 'delivered_per_s'):.0f} msg/s; lost {sum(r['lost'] for r in runs)}; "
      f"sessions closed {sum(r['errors'] for r in runs)} (a client that fell more than "
      f"[c2s] max_unacked stanzas behind is closed with policy-violation)")
PY
