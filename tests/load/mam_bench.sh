#!/usr/bin/env bash
# What the message archive costs the 1:1 message rate: the same chat, in the same run
# against the same release server, on a tenant that archives every message (archived.test,
# the default) and on one with the archive switched off (plain.test, features.mam =
# false), alternating, twice each. Plain TCP with PLAIN, window 8 per sender.
#
#   tests/load/mam_bench.sh [PAIRS] [SECONDS]      (default 100 10)
set -euo pipefail
PAIRS="${1:-100}"
SECS="${2:-10}"
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/heliograph-target}"
cd "$REPO_ROOT"
cargo build --release -q -p heliograph -p heliograph-load
R="$CARGO_TARGET_DIR/release"
WORK="$(mktemp -d)"
trap 'kill "$PID" 2>/dev/null || true; wait "$PID" 2>/dev/null || true; rm -rf "$WORK"' EXIT

cat > "$WORK/heliograph.toml" <<TOML
[general]
hosts = ["localhost"]
data_dir = "$WORK/data"
log_level = "warn"

[[listen.c2s]]
address = "127.0.0.1:0"
require_tls = false
allow_plain_without_tls = true
idle_timeout = 86400

[[listen.c2s]]
address = "127.0.0.1:0"
tls = "direct"

[listen.admin]
address = "127.0.0.1:0"

[c2s]
ping_interval = 0

[tenants.archived]
domains = ["archived.test"]

[tenants.plain]
domains = ["plain.test"]

[tenants.plain.features]
mam = false
TOML

"$R/heliograph" serve --config "$WORK/heliograph.toml" --ready-file "$WORK/ready.json" \
    2> "$WORK/server.log" &
PID=$!
for _ in $(seq 300); do [[ -f "$WORK/ready.json" ]] && break; sleep 0.1; done
[[ -f "$WORK/ready.json" ]] || { cat "$WORK/server.log"; exit 1; }

for round in 1 2; do
    for domain in archived.test plain.test; do
        echo "=== round $round: $domain"
        "$R/heliograph-load" chat --ready-file "$WORK/ready.json" --domain "$domain" \
            --pairs "$PAIRS" --window 8 -t "$SECS" --transport plain
    done
done
