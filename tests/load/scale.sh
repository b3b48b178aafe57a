#!/usr/bin/env bash
# Scale on one machine (issue 26, point 4): per-unit costs as the number of online
# sessions grows towards the process's limit of open files. One release server
# (bench_server.sh's config: archive off, default PBKDF2 iterations). The population grows
# in steps to each of POPULATIONS (default 1000 5000 10000 18000); at each step:
#
#   1. the sessions that take it there log in (PLAIN over plain TCP, resource bound,
#      initial presence) with `heliograph-load connect --hold`, in 2 processes, and stay
#      online until the end: logins/s, p99 and server CPU per login with that many online;
#   2. with them online, `heliograph-load chat` runs 100 pairs (accounts of their own) at a
#      fixed RATE messages/s for SECONDS: server CPU per message, p50/p99, losses;
#   3. the server's RSS: KiB per session added in the step.
#
#   tests/load/scale.sh [RATE] [SECONDS] [POPULATIONS...]   (default 20000 8 1000 5000 10000 18000)
#   BENCH_BIN_DIR=DIR tests/load/scale.sh ...               DIR/heliograph and DIR/heliograph-load
#
# Prints one summary line per step at the end; WORK keeps every output.
set -euo pipefail
RATE="${1:-20000}"
SECS="${2:-8}"
shift 2 2>/dev/null || shift $#
POPULATIONS=("$@")
[[ ${#POPULATIONS[@]} -gt 0 ]] || POPULATIONS=(1000 5000 10000 18000)
PAIRS=100
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/heliograph-target}"
cd "$REPO_ROOT"
[[ -n "${BENCH_BIN_DIR:-}" ]] || cargo build --release -q -p heliograph -p heliograph-load
R="${BENCH_BIN_DIR:-$CARGO_TARGET_DIR/release}"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/heliograph-scale.XXXXXX")"
# shellcheck source=tests/load/bench_server.sh
source "$REPO_ROOT/tests/load/bench_server.sh"
BENCH_HOLDERS=()
trap 'kill "${BENCH_HOLDERS[@]}" 2>/dev/null || true; bench_stop' EXIT
bench_config "$WORK" scale.test false
bench_start "$WORK"
TARGET=(--ready-file "$WORK/ready.json" --domain scale.test)
echo "server pid $BENCH_PID, work dir $WORK"

rss() { awk '/VmRSS/ {print $2}' "/proc/$BENCH_PID/status"; }

online=0
for n in "${POPULATIONS[@]}"; do
    add=$((n - online))
    (( add > 0 )) || { echo "populations must grow: $n after $online"; exit 1; }
    echo "=== $online -> $n sessions online"
    rss0="$(rss)"
    bench_hold "$WORK/connect-$n" "${TARGET[@]}" --user-prefix "step${n}_" -n "$add" \
        --procs 2 --concurrency 64
    grep "^connect" "$WORK/connect-$n.txt"
    online=$n
    rss1="$(rss)"
    echo "rss $rss0 -> $rss1 KiB" | tee "$WORK/rss-$n.txt"
    "$R/heliograph-load" --json "$WORK/chat-$n.jsonl" chat "${TARGET[@]}" --user-prefix chat \
        --pairs "$PAIRS" --rate "$RATE" -t "$SECS" | grep -v '^{'
done

echo "=== summary (server CPU per message at ${RATE} msg/s, per login, RSS per online session)"
python3 - "$WORK" "${POPULATIONS[@]}" <<'PY'
import json, sys
work, pops = sys.argv[1], [int(p) for p in sys.argv[2:]]
last = lambda path: [json.loads(l) for l in open(path) if l.strip()][-1]
before = 0
for n in pops:
    c, m = last(f"{work}/connect-{n}.jsonl"), last(f"{work}/chat-{n}.jsonl")
    rss0, rss1 = (int(x) for x in open(f"{work}/rss-{n}.txt").read().split()[1:4:2])
    print(f"{n:>6} online: +{n - before} logins {c['logins_per_s']:.0f}/s, "
          f"{c['server_cpu_ms_per_login']:.3f} ms CPU each, p99 {c['login_p99_ms']:.1f} ms, "
          f"{(rss1 - rss0) / (n - before):.2f} KiB RSS each; chat {m['delivered_per_s']:.0f} msg/s, "
          f"{m['cpu_us_per_msg']:.3f} µs CPU/msg, p50 {m['p50_ms']} ms, p99 {m['p99_ms']} ms, "
          f"lost {m['lost']}")
    before = n
PY
