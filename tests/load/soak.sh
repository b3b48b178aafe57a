#!/usr/bin/env bash
# Soak test: mixed load against one release server for MINUTES (default 30) with random
# disconnects, then a drain; fails on a lost message, RSS growth (end > 1.10 x minute 5,
# for runs of 10 minutes or more), a dead server or a panic in its log.
#
#   tests/load/soak.sh [MINUTES]         (default 30)
#   SOAK_ARGS="--pairs 20 --seed 7" tests/load/soak.sh 5     more options for `soak`
#   SOAK_NO_PLUGIN=1 tests/load/soak.sh 5                     without the plugin tenant's logins
#   SOAK_MAM=false tests/load/soak.sh 5                       localhost's archive off (on by default)
#   SOAK_SLED_CACHE_MIB=4 tests/load/soak.sh 30               sled's page cache (default: the
#                                                             server's own, 1024)
#   SOAK_BIN_DIR=DIR tests/load/soak.sh 15      DIR/heliograph and DIR/heliograph-load as they
#                                               are (no build): two builds side by side
#
# The server (config written below, loopback and ephemeral ports only) has the default
# tenant localhost (MUC at conference.localhost, BOSH on the plain-HTTP listener, stream
# management with a 20 s resume timeout) and the tenant plug (plug.test) whose logins go
# through the Wasm authenticator plugins/allowlist. The server runs with its defaults
# otherwise, sled's page cache included: the archive, the one store that grows for as long
# as a run lasts, is in SQLite with a bounded cache (until it was in sled, runs set the
# cache to 4 MiB, since a 1 GiB one filled with the archive; see tests/load/README.md,
# "Soak" and "The memory criterion"). `heliograph-load soak` drives it (see
# tests/load/src/soak.rs); the server's stderr is kept in WORK/server.log and grepped for
# "panicked". WORK (printed at the end) keeps the log, config and output.
set -euo pipefail
MINUTES="${1:-30}"
RESUME_TIMEOUT=20
PLUGIN_USERS=10
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/heliograph-target}"
cd "$REPO_ROOT"
[[ -n "${SOAK_BIN_DIR:-}" ]] || cargo build --release -q -p heliograph -p heliograph-load
cargo build --release -q --target wasm32-wasip2 --manifest-path plugins/Cargo.toml \
    --target-dir "$CARGO_TARGET_DIR/plugins" -p allowlist
R="${SOAK_BIN_DIR:-$CARGO_TARGET_DIR/release}"
WASM="$CARGO_TARGET_DIR/plugins/wasm32-wasip2/release/allowlist.wasm"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/heliograph-soak.XXXXXX")"
# shellcheck source=tests/load/bench_server.sh
source "$REPO_ROOT/tests/load/bench_server.sh"
trap 'bench_stop' EXIT

python3 - "$WORK" "$WASM" "$RESUME_TIMEOUT" "$PLUGIN_USERS" "${SOAK_MAM:-true}" \
    "${SOAK_SLED_CACHE_MIB:-1024}" > "$WORK/heliograph.toml" <<'PY'
import hashlib, sys
work, wasm, resume, users = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
mam, cache = sys.argv[5], int(sys.argv[6])
def h(salt, pw):
    return f"sha256${salt}${hashlib.sha256((salt + pw).encode()).hexdigest()}"
print(f'''[general]
hosts = ["localhost"]
data_dir = "{work}/data"
log_level = "warn"

[storage]
sled_cache_mib = {cache}

[[listen.c2s]]
address = "127.0.0.1:0"
tls = "starttls"
require_tls = false
allow_plain_without_tls = true

[[listen.c2s]]
address = "127.0.0.1:0"
tls = "direct"

[[listen.http]]
address = "127.0.0.1:0"
allow_insecure_loopback = true
max_sessions_per_address = 0

[[listen.component]]
address = "127.0.0.1:0"

[listen.admin]
address = "127.0.0.1:0"

[c2s]
resume_timeout = {resume}

[tenants.default.features]
mam = {mam}

[tenants.plug]
domains = ["plug.test"]
auth = {{ method = "plugin", plugin = "auth" }}

[tenants.plug.plugins.auth]
path = "{wasm}"

[tenants.plug.plugins.auth.config.users]''')
for i in range(users):
    print(f'soakp{i} = "{h(f"soakp{i}", "load-password")}"')
PY

bench_start "$WORK"
echo "server pid $BENCH_PID, work dir $WORK, soak for $MINUTES min"
rc=0
PLUGIN_ARGS=(--plugin-domain plug.test --plugin-users "$PLUGIN_USERS")
[[ -n "${SOAK_NO_PLUGIN:-}" ]] && PLUGIN_ARGS=()
# shellcheck disable=SC2086
"$R/heliograph-load" soak --ready-file "$WORK/ready.json" --domain localhost \
    --resume-timeout "$RESUME_TIMEOUT" "${PLUGIN_ARGS[@]}" \
    -t "$((MINUTES * 60))" ${SOAK_ARGS:-} \
    | tee "$WORK/soak.txt" || rc=$?
alive=yes
kill -0 "$BENCH_PID" 2>/dev/null || alive=no
bench_stop
panics="$(grep -c panicked "$WORK/server.log" || true)"
echo "=== soak figures ($MINUTES min)"
grep -v '^{' "$WORK/soak.txt" | grep -v '^soak: ' || true
echo "server alive at the end: $alive; panics in the server log: $panics"
echo "database on disk: $(du -sh "$WORK/data/db" | cut -f1)"
echo "work dir: $WORK"
if [[ "$rc" -ne 0 || "$panics" -ne 0 || "$alive" != yes ]]; then
    echo "SOAK FAILED"
    exit 1
fi
echo "SOAK PASSED"
