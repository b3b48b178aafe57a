#!/usr/bin/env bash
# Login throughput through a tenant's authenticator plugin vs built-in password auth, in
# the same run against the same release server: PLAIN over direct TLS, N logins each.
#
#   tests/load/plugin_login_bench.sh [N] [CONCURRENCY]      (default 2000 32)
#   PLUGIN=python tests/load/plugin_login_bench.sh          the Python twin instead
#   PLUGIN=js tests/load/plugin_login_bench.sh              the JavaScript twin instead
#
# The plugin tenant `plug` (domain plug.test) runs plugins/allowlist with the load
# accounts in its config (PLUGIN=python: plugins/python/allowlist, built with the
# componentize-py of COMPONENTIZE_PY or the PATH, the same configuration) ([tenants.plug.plugins.auth] in the generated config file); the
# built-in tenant (localhost) verifies PLAIN against stored SCRAM-SHA-256 keys
# (PBKDF2 with [auth] scram_iterations, 4096 by default, as shipped).
set -euo pipefail
N="${1:-2000}"
CONC="${2:-32}"
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/heliograph-target}"
cd "$REPO_ROOT"
cargo build --release -q -p heliograph -p heliograph-load
cargo build --release -q --target wasm32-wasip2 --manifest-path plugins/Cargo.toml \
    --target-dir "$CARGO_TARGET_DIR/plugins"
R="$CARGO_TARGET_DIR/release"
WASM="$CARGO_TARGET_DIR/plugins/wasm32-wasip2/release/allowlist.wasm"
if [[ "${PLUGIN:-rust}" == python ]]; then
    plugins/python/build.sh "$CARGO_TARGET_DIR/plugins/python"
    WASM="$CARGO_TARGET_DIR/plugins/python/allowlist_py.wasm"
elif [[ "${PLUGIN:-rust}" == js ]]; then
    plugins/js/build.sh "$CARGO_TARGET_DIR/plugins/js"
    WASM="$CARGO_TARGET_DIR/plugins/js/allowlist_js.wasm"
fi
WORK="$(mktemp -d)"
# shellcheck source=tests/load/bench_server.sh
source "$REPO_ROOT/tests/load/bench_server.sh"
trap 'bench_stop; rm -rf "$WORK"' EXIT

bench_base_config "$WORK"
python3 - "$N" "$WASM" >> "$WORK/heliograph.toml" <<'PY'
import hashlib, sys
n, wasm = int(sys.argv[1]), sys.argv[2]
def h(salt, pw):
    return f"sha256${salt}${hashlib.sha256((salt + pw).encode()).hexdigest()}"
print(f'''[tenants.plug]
domains = ["plug.test"]
auth = {{ method = "plugin", plugin = "auth" }}

[tenants.plug.plugins.auth]
path = "{wasm}"

[tenants.plug.plugins.auth.config.users]''')
for i in range(n):
    print(f'load{i} = "{h(f"load{i}", "load-password")}"')
PY
bench_start "$WORK"

run() {
    echo "=== $1: $N logins, PLAIN over direct TLS, concurrency $CONC"
    "$R/heliograph-load" connect --ready-file "$WORK/ready.json" --domain "$2" \
        -n "$N" --concurrency "$CONC" --transport tls --mech plain --segment "$N"
}
run "built-in (localhost)" localhost
run "plugin (plug.test, $(basename "$WASM" .wasm))" plug.test
run "built-in again (localhost)" localhost
run "plugin again (plug.test)" plug.test
curl -s -H "Authorization: Bearer $(cat "$WORK/data/admin.token")" \
    "http://$(python3 -c 'import json,sys; print([l["address"] for l in json.load(open(sys.argv[1]))["listeners"] if l["kind"]=="admin"][0])' "$WORK/ready.json")/api/v1/tenants/plug/plugins" \
    | python3 -c 'import json,sys; s=json.load(sys.stdin)["plugins"][0]["stats"]; print("plugin calls", s["calls"], "p50", s["p50_us"], "us p99", s["p99_us"], "us failed", s["failed"])'
