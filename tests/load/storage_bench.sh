#!/usr/bin/env bash
# sled vs PostgreSQL in the same run, the database on the same machine (a private cluster
# started here with tests/postgres.sh, stopped by PID at the end): logins per second with
# server and database CPU per login, 1:1 messages per second with half the recipients
# offline, and the offline pop when they log in. Rounds alternate sled, PostgreSQL, ...
# each on a fresh server, data dir and database, and the summary prints medians with the
# PostgreSQL/sled ratio.
#
#   tests/load/storage_bench.sh [ROUNDS]        (default 2)
#
# Environment: LOGINS (default 3000), PAIRS (offline scenario senders, default 100),
# MESSAGES (per sender and recipient, default 50), OUT (JSON lines; default a temp file).
# The storage calls themselves (credentials read, roster fetch, offline push and pop, a
# page of 50 of a 100,000-message room log) are timed by the criterion bench:
#   HELIOGRAPH_TEST_POSTGRES_URL=... cargo bench -p heliograph-storage-postgres --bench storage
set -euo pipefail
ROUNDS="${1:-2}"
LOGINS="${LOGINS:-3000}"
PAIRS="${PAIRS:-100}"
MESSAGES="${MESSAGES:-50}"
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/heliograph-target}"
cd "$REPO_ROOT"
cargo build --release -q -p heliograph -p heliograph-load
R="$CARGO_TARGET_DIR/release"
OUT="${OUT:-$(mktemp -t heliograph-storage-bench.XXXXXX.jsonl)}"
: >"$OUT"

PG="$(mktemp -d "${TMPDIR:-/tmp}/heliograph-pg-bench.XXXXXX")"
chmod 755 "$PG"
trap 'tests/postgres.sh stop "$PG/pg" || true; rm -rf "$PG"' EXIT
ADMIN_URL="$(tests/postgres.sh start "$PG/pg" 5432)"
PG_PID="$(head -1 "$PG/pg/data/postmaster.pid")"

DB=0
# run LABEL ARGS...: one heliograph-load command on sled or on PostgreSQL (a fresh
# database each time; --db-pid adds PostgreSQL's CPU, its backends included, over the
# same window as the server's). Its JSON line goes to $OUT tagged with the label.
run() {
    local label=$1
    shift
    local storage=()
    if [[ $label == postgres ]]; then
        DB=$((DB + 1))
        local name="bench_$$_$DB"
        psql -X -q -d "$ADMIN_URL" -c "CREATE DATABASE $name"
        storage=(--storage-url "host=$PG/pg port=5432 user=postgres dbname=$name" --db-pid "$PG_PID")
    fi
    local json
    json="$(mktemp)"
    "$R/heliograph-load" --json "$json" "$@" "${storage[@]}"
    python3 -c 'import json,sys; j=json.loads(open(sys.argv[1]).read().splitlines()[-1]); j["storage"]=sys.argv[2]; print(json.dumps(j))' \
        "$json" "$label" >>"$OUT"
    rm -f "$json"
}

for round in $(seq "$ROUNDS"); do
    for label in sled postgres; do
        echo "== round $round: $label"
        run "$label" connect -n "$LOGINS" --transport plain --mech plain --segment 0
        run "$label" offline -p "$PAIRS" -m "$MESSAGES"
    done
done

python3 - "$OUT" <<'EOF'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
def med(storage, measurement, f):
    vals = [f(r) for r in rows if r["storage"] == storage and r["measurement"] == measurement]
    return statistics.median(vals) if vals else float("nan"), vals
figures = [
    ("logins/s (PLAIN, plain TCP)", "connect", lambda r: r["logins_per_s"]),
    ("login p99 ms", "connect", lambda r: r["login_p99_ms"]),
    ("server CPU ms per login", "connect", lambda r: r["server_cpu_ms_per_login"]),
    ("database CPU ms per login", "connect", lambda r: r.get("db_cpu_ms_per_login", 0.0)),
    ("1:1 msg/s, half the recipients offline", "offline", lambda r: r["msgs_per_s"]),
    ("server CPU µs per message", "offline", lambda r: r["cpu_us_per_msg"]),
    ("database CPU µs per message", "offline", lambda r: r.get("db_cpu_us_per_msg", 0.0)),
    ("offline pop: stored messages/s at login", "offline", lambda r: r["popped_msgs_per_s"]),
    ("offline pop: login to last message p50 ms", "offline", lambda r: r["pop_p50_ms"]),
    ("offline pop: login to last message p99 ms", "offline", lambda r: r["pop_p99_ms"]),
    ("offline pop: server CPU ms per login", "offline", lambda r: r["cpu_ms_per_pop_login"]),
    ("offline pop: database CPU ms per login", "offline", lambda r: r.get("db_cpu_ms_per_pop_login", 0.0)),
]
print(f"{'figure':45} {'sled':>10} {'postgres':>10} {'pg/sled':>8}")
for name, m, f in figures:
    a, av = med("sled", m, f)
    b, bv = med("postgres", m, f)
    ratio = b / a if a else float("nan")
    print(f"{name:45} {a:10.3f} {b:10.3f} {ratio:8.2f}   sled={[round(x, 3) for x in av]} pg={[round(x, 3) for x in bv]}")
EOF
echo "JSON lines: $OUT"
