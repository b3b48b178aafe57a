#!/usr/bin/env bash
# What the message archive costs the 1:1 message rate: the same chat against a fresh
# release server whose one tenant archives every message (features.mam = true, the
# default) and against a fresh one whose tenant does not (features.mam = false),
# alternating, ROUNDS times each; after each archive-on run, checks that the archive
# holds two copies of every message sent. A fresh server per run: sled's background flushing of
# the archive's writes would otherwise be counted against the run that follows.
# Plain TCP with PLAIN, window 8 per sender.
#
#   tests/load/mam_bench.sh [PAIRS] [SECONDS] [ROUNDS]      (default 100 10 2)
#   BENCH_BIN_DIR=DIR tests/load/mam_bench.sh ...            DIR/heliograph and
#                                                            DIR/heliograph-load, no build
set -euo pipefail
PAIRS="${1:-100}"
SECS="${2:-10}"
ROUNDS="${3:-2}"
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/heliograph-target}"
cd "$REPO_ROOT"
[[ -n "${BENCH_BIN_DIR:-}" ]] || cargo build --release -q -p heliograph -p heliograph-load
R="${BENCH_BIN_DIR:-$CARGO_TARGET_DIR/release}"
WORK="$(mktemp -d)"
# shellcheck source=tests/load/bench_server.sh
source "$REPO_ROOT/tests/load/bench_server.sh"
trap 'bench_stop; rm -rf "$WORK"' EXIT

# Runs the chat against a fresh server with the archive on ($1 = true) or off. With the
# archive on, once the server has stopped, its archive must hold both copies (the
# sender's and the recipient's) of every message sent: none left queued, none lost.
run() {
    local dir="$WORK/$RANDOM$RANDOM"
    bench_config "$dir" t.test "$1"
    bench_start "$dir"
    "$R/heliograph-load" chat --ready-file "$dir/ready.json" --domain t.test \
        --pairs "$PAIRS" --window 8 -t "$SECS" --transport plain | tee -a "$WORK/results.txt"
    bench_stop
    if [[ "$1" == true ]]; then
        python3 - "$dir/data/db/archive.sqlite3" "$WORK/results.txt" <<'PY'
import json, sqlite3, sys
sent = [json.loads(l) for l in open(sys.argv[2]) if l.startswith("{")][-1]["sent"]
rows = sqlite3.connect(sys.argv[1]).execute("SELECT count(*) FROM archive_messages").fetchone()[0]
print(f"archived {rows} copies of {sent} messages sent")
if rows != 2 * sent:
    sys.exit(f"the archive holds {rows} copies, not {2 * sent}: messages were not archived")
PY
    fi
}

for round in $(seq "$ROUNDS"); do
    for mam in true false; do
        echo "=== round $round: archive $([[ $mam == true ]] && echo on || echo off)"
        run "$mam"
    done
done

# Medians over the rounds (the archive-on runs come first in each round).
python3 - "$WORK/results.txt" <<'PY'
import json, statistics, sys
runs = [json.loads(l) for l in open(sys.argv[1]) if l.startswith("{")]
on, off = runs[0::2], runs[1::2]
med = lambda rs, k: statistics.median(r[k] for r in rs)
print(f"median: archive on {med(on, 'delivered_per_s'):.0f} msg/s, {med(on, 'cpu_us_per_msg'):.2f} µs "
      f"per message; off {med(off, 'delivered_per_s'):.0f} msg/s, {med(off, 'cpu_us_per_msg'):.2f} µs; "
      f"rate {(med(on, 'delivered_per_s') / med(off, 'delivered_per_s') - 1) * 100:+.0f}%; "
      f"lost {sum(r['lost'] for r in runs)}")
PY
