#!/usr/bin/env bash
# MUC joins and broadcasts with and without a room-policy plugin, in the same run against
# the same release server: R rooms × O occupants, K senders per room, RATE messages/s.
#
#   tests/load/muc_policy_bench.sh [ROOMS] [OCCUPANTS] [RATE] [SECONDS]   (default 50 20 1000 10)
#
# The built-in tenant (localhost) has no room policy. Tenant `policed` (domain
# policed.test) runs plugins/meeting-policy ([tenants.policed.plugins.rooms] in the
# generated config): room names must match `load-room*`, at most O occupants, bodies
# of at most 2000 bytes, a word list to redact. Every room creation, join and groupchat
# message on policed.test is a plugin call (fresh instance, fuel and deadline as in
# production); the plugin's own call figures are printed at the end.
set -euo pipefail
ROOMS="${1:-50}"
OCC="${2:-20}"
RATE="${3:-1000}"
SECS="${4:-10}"
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/heliograph-target}"
cd "$REPO_ROOT"
cargo build --release -q -p heliograph -p heliograph-load
cargo build --release -q --target wasm32-wasip2 --manifest-path plugins/Cargo.toml \
    --target-dir "$CARGO_TARGET_DIR/plugins"
R="$CARGO_TARGET_DIR/release"
WASM="$CARGO_TARGET_DIR/plugins/wasm32-wasip2/release/meeting_policy.wasm"
WORK="$(mktemp -d)"
# shellcheck source=tests/load/bench_server.sh
source "$REPO_ROOT/tests/load/bench_server.sh"
trap 'bench_stop; rm -rf "$WORK"' EXIT

bench_base_config "$WORK"
cat >> "$WORK/heliograph.toml" <<TOML
[c2s]
ping_interval = 0
session_queue = 1024

[tenants.policed]
domains = ["policed.test"]
room_policy = { plugin = "rooms" }

[tenants.policed.plugins.rooms]
path = "$WASM"

[tenants.policed.plugins.rooms.config]
room_patterns = ["load-room*"]
max_participants = $OCC
max_message_bytes = 2000
redact_words = ["confidential", "secret"]
TOML
bench_start "$WORK"

run() {
    echo "=== $1: $ROOMS rooms × $OCC occupants, 1 sender per room, $RATE msg/s for $SECS s"
    "$R/heliograph-load" muc --ready-file "$WORK/ready.json" --domain "$2" \
        --rooms "$ROOMS" --occupants "$OCC" --senders 1 --rate "$RATE" -t "$SECS"
}
run "no room policy (localhost)" localhost
run "meeting-policy plugin (policed.test)" policed.test
ADMIN="$(python3 -c 'import json,sys; print([l["address"] for l in json.load(open(sys.argv[1]))["listeners"] if l["kind"]=="admin"][0])' "$WORK/ready.json")"
curl -s -H "Authorization: Bearer $(cat "$WORK/data/admin.token")" \
    "http://$ADMIN/api/v1/tenants/policed/plugins" \
    | python3 -c 'import json,sys; s=json.load(sys.stdin)["plugins"][0]["stats"]; print("plugin calls", s["calls"], "p50", s["p50_us"], "us p99", s["p99_us"], "us failed", s["failed"])'
