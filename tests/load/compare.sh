#!/usr/bin/env bash
# Measures two `heliograph` binaries in the same run, interleaved (A, B, A, B, ...), each
# with a whole `heliograph-load report` (memory per idle session, PLAIN, SCRAM and JWT
# logins, 1:1 chat against the minimal relay, the sustained paced rate, MUC fan-out), and
# prints every figure's median per binary with the ratio B/A. A figure that got worse by
# more than 5% (higher where lower is better, or the other way) is marked `worse`.
#
#   tests/load/compare.sh OLD_BIN NEW_BIN [ROUNDS]    two binaries you built
#   tests/load/compare.sh --prev [ROUNDS]             the previous commit against this one:
#                                                     builds PREV (default HEAD~1) in a
#                                                     temporary worktree, then the checkout
#
# Environment: REPORT_ARGS (extra `report` options; default a shorter run than the full
# report: 5,000 idle sessions, 5 s chats), LOAD (the heliograph-load binary; default: next
# to NEW_BIN), OUT (directory for the report documents and logs; default a temp dir).
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
OUT=${OUT:-$(mktemp -d -t heliograph-compare.XXXXXX)}
mkdir -p "$OUT"

if [[ "${1:-}" == --prev ]]; then
    ROUNDS=${2:-2}
    export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/heliograph-target}"
    PREV=${PREV:-HEAD~1}
    TREE="$(mktemp -d -t heliograph-prev.XXXXXX)"
    git -C "$REPO_ROOT" worktree add --detach -q "$TREE" "$PREV"
    trap 'git -C "$REPO_ROOT" worktree remove --force "$TREE" 2>/dev/null || true' EXIT
    echo "building $PREV ($(git -C "$TREE" rev-parse --short HEAD)) in $TREE"
    (cd "$TREE" && cargo build --release -q -p heliograph)
    cp "$CARGO_TARGET_DIR/release/heliograph" "$OUT/heliograph-prev"
    echo "building the checkout ($(git -C "$REPO_ROOT" rev-parse --short HEAD))"
    (cd "$REPO_ROOT" && cargo build --release -q -p heliograph -p heliograph-load)
    cp "$CARGO_TARGET_DIR/release/heliograph" "$OUT/heliograph-head"
    A="$OUT/heliograph-prev"
    B="$OUT/heliograph-head"
    LOAD=${LOAD:-$CARGO_TARGET_DIR/release/heliograph-load}
else
    A=${1:?old heliograph binary (or --prev)}
    B=${2:?new heliograph binary}
    ROUNDS=${3:-2}
    LOAD=${LOAD:-$(dirname "$B")/heliograph-load}
fi
# shellcheck disable=SC2206
EXTRA=(${REPORT_ARGS:---sessions 5000 --scram-logins 1000 --token-logins 2000 --duration 5})

run() { # label binary round
    local doc="$OUT/$1-$3.json"
    "$LOAD" report --server-bin "$2" --out "$doc" "${EXTRA[@]}" >"$OUT/$1-$3.log" 2>&1 ||
        { tail -20 "$OUT/$1-$3.log"; return 1; }
}

for round in $(seq "$ROUNDS"); do
    echo "round $round: A ($A)"
    run A "$A" "$round"
    echo "round $round: B ($B)"
    run B "$B" "$round"
done
echo "documents and logs in $OUT"

python3 - "$OUT" "$ROUNDS" <<'EOF'
import json, math, statistics, sys

out, rounds = sys.argv[1], int(sys.argv[2])
docs = {side: [json.load(open(f"{out}/{side}-{r}.json")) for r in range(1, rounds + 1)]
        for side in "AB"}

def median(side, name):
    vals = [d["figures"][name]["value"] for d in docs[side]]
    vals = [v for v in vals if v is not None]
    return statistics.median(vals) if vals else None

names = list(docs["A"][0]["figures"])
worse = 0
print(f"{'figure':34} {'unit':>12} {'A':>12} {'B':>12} {'B/A':>7}  target")
for name in names:
    meta = docs["A"][0]["figures"][name]
    a, b = median("A", name), median("B", name)
    ratio = b / a if a not in (None, 0) and b is not None else math.nan
    flag = ""
    if not math.isnan(ratio):
        if (meta["better"] == "lower" and ratio > 1.05) or (meta["better"] == "higher" and ratio < 0.95):
            flag, worse = "worse", worse + 1
    fmt = lambda v: "n/a" if v is None else f"{v:.3f}"
    target = "" if meta["target"] is None else f"{'<=' if meta['better'] == 'lower' else '>='} {meta['target']}"
    print(f"{name:34} {meta['unit']:>12} {fmt(a):>12} {fmt(b):>12} {ratio:7.3f}  {target:10} {flag}")
print(f"{worse} figure(s) more than 5% worse in B")
EOF
