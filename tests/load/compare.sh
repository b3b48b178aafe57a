#!/usr/bin/env bash
# Measures two `heliograph` binaries in the same run, interleaved (A, B, A, B, ...), with
# the same load generator, and prints each figure with the ratio B/A: server CPU per
# delivered 1:1 message (window mode), server CPU per PLAIN login, KiB per idle session
# (plain TCP and TLS). A regression shows as a ratio above 1.
#
#   tests/load/compare.sh OLD_BIN NEW_BIN [ROUNDS]
#
# Environment: LOAD (the heliograph-load binary; default: next to NEW_BIN), SESSIONS
# (idle sessions for the memory figure, default 10000), LOGINS (default 3000), PAIRS
# (default 100), DURATION (chat seconds, default 10), OUT (JSON lines, default a temp file).
set -euo pipefail

A=${1:?old heliograph binary}
B=${2:?new heliograph binary}
ROUNDS=${3:-2}
LOAD=${LOAD:-$(dirname "$B")/heliograph-load}
SESSIONS=${SESSIONS:-10000}
LOGINS=${LOGINS:-3000}
PAIRS=${PAIRS:-100}
DURATION=${DURATION:-10}
OUT=${OUT:-$(mktemp -t heliograph-compare.XXXXXX.jsonl)}
: >"$OUT"

run() { # label binary
    local label=$1 bin=$2
    "$LOAD" --json "$OUT.$label" chat --server-bin "$bin" -p "$PAIRS" --window 8 -t "$DURATION" >/dev/null
    "$LOAD" --json "$OUT.$label" connect --server-bin "$bin" -n "$LOGINS" --transport plain --mech plain >/dev/null
    "$LOAD" --json "$OUT.$label" memory --server-bin "$bin" -n "$SESSIONS" --transports plain,tls >/dev/null
}

for round in $(seq "$ROUNDS"); do
    echo "round $round: A"
    run A "$A"
    echo "round $round: B"
    run B "$B"
done

python3 - "$OUT.A" "$OUT.B" <<'EOF'
import json, statistics, sys

def figures(path):
    out = {}
    for line in open(path):
        j = json.loads(line)
        m = j.get("measurement")
        if m == "chat" and j.get("against") == "server":
            out.setdefault("CPU µs per delivered message (window 8)", []).append(j["cpu_us_per_msg"])
        elif m == "connect":
            out.setdefault("CPU ms per PLAIN login", []).append(j["server_cpu_ms_per_login"])
        elif m == "memory":
            out.setdefault(f"KiB per idle session ({j['transport']})", []).append(j["kib_per_session"])
    return out

a, b = figures(sys.argv[1]), figures(sys.argv[2])
print(f"{'figure':45} {'A (median)':>12} {'B (median)':>12} {'B/A':>7}")
for k in a:
    ma, mb = statistics.median(a[k]), statistics.median(b.get(k, [float('nan')]))
    print(f"{k:45} {ma:12.3f} {mb:12.3f} {mb / ma:7.3f}   A={a[k]} B={b.get(k)}")
EOF
cat "$OUT.A" "$OUT.B" >"$OUT"
echo "JSON lines: $OUT"
