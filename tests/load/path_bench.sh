#!/usr/bin/env bash
# The message path of two server binaries, alternating: server CPU per delivered 1:1
# message (chat, PAIRS pairs, window 8) and per MUC delivery (50 rooms x 20 occupants,
# one sender per room at MUC_RATE messages/s), each run against a fresh release server
# whose one tenant has the archive off (the archive has its own benchmark,
# mam_bench.sh). One load generator (the one next to B) drives both.
#
#   tests/load/path_bench.sh A B [ROUNDS] [SECONDS] [PAIRS] [MUC_RATE]
#       A, B: `heliograph` binaries, or directories holding one
#       (defaults: 3 rounds, 5 s, 100 pairs, 20000 msg/s)
#
# Prints every run's JSON line, then the medians per binary and B/A.
set -euo pipefail
bin() { if [[ -d "$1" ]]; then echo "$1/heliograph"; else echo "$1"; fi; }
A="$(bin "${1:?binary or directory A}")"
B="$(bin "${2:?binary or directory B}")"
ROUNDS="${3:-3}"
SECS="${4:-5}"
PAIRS="${5:-100}"
MUC_RATE="${6:-20000}"
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
LOAD="$(dirname "$B")/heliograph-load"
[[ -x "$LOAD" ]] || { echo "no heliograph-load next to $B" >&2; exit 1; }
WORK="$(mktemp -d)"
# shellcheck source=tests/load/bench_server.sh
source "$REPO_ROOT/tests/load/bench_server.sh"
trap 'bench_stop; rm -rf "$WORK"' EXIT

# One measurement ($2: chat or muc) against a fresh server of binary $1.
run() {
    local dir="$WORK/$RANDOM$RANDOM" label="$3"
    bench_config "$dir" t.test false
    R="$(dirname "$1")" bench_start "$dir"
    local ready=(--ready-file "$dir/ready.json" --domain t.test)
    if [[ "$2" == chat ]]; then
        "$LOAD" chat "${ready[@]}" --pairs "$PAIRS" --window 8 -t 2 --transport plain >/dev/null
        "$LOAD" chat "${ready[@]}" --pairs "$PAIRS" --window 8 -t "$SECS" --transport plain
    else
        "$LOAD" muc "${ready[@]}" --rooms 50 --occupants 20 --senders 1 --rate "$MUC_RATE" \
            -t "$SECS"
    fi | grep '^{' | tail -n 1 | sed "s/^{/{\"binary\":\"$label\",/" | tee -a "$WORK/results.jsonl"
    bench_stop
}

for round in $(seq "$ROUNDS"); do
    for kind in chat muc; do
        run "$A" "$kind" A
        run "$B" "$kind" B
    done
done

python3 - "$WORK/results.jsonl" <<'PY'
import json, statistics, sys
runs = [json.loads(l) for l in open(sys.argv[1])]
def med(binary, measurement, key):
    return statistics.median(r[key] for r in runs
                             if r["binary"] == binary and r["measurement"] == measurement)
for measurement, key, unit in [("chat", "cpu_us_per_msg", "µs per message"),
                               ("chat", "delivered_per_s", "messages/s"),
                               ("muc", "cpu_us_per_delivery", "µs per delivery"),
                               ("muc", "deliveries_per_s", "deliveries/s")]:
    a, b = med("A", measurement, key), med("B", measurement, key)
    print(f"{measurement} {unit}: A {a:.3f}, B {b:.3f}, B/A {b / a:.3f}")
print("lost:", sum(r.get("lost", 0) for r in runs))
PY
