#!/usr/bin/env bash
# Login throughput with a JWT vs SCRAM-SHA-256 (and PLAIN with a password), in the same
# run against the same release server, direct TLS, N logins each.
#
#   tests/load/jwt_login_bench.sh [N] [CONCURRENCY]      (default 2000 32)
#
# Tenant `jwt` (domain jwt.test) has an HS256 key; heliograph-load mints one token per
# account before each run (`--mech jwt`: PLAIN with the JWT as password). The built-in
# tenant (localhost) verifies SCRAM-SHA-256 and PLAIN against stored keys (PBKDF2 with
# [auth] scram_iterations, 4096 as shipped; PLAIN repeats hit the verified-password cache,
# so its first round pays PBKDF2 and later rounds do not).
set -euo pipefail
N="${1:-2000}"
CONC="${2:-32}"
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/heliograph-target}"
cd "$REPO_ROOT"
cargo build --release -q -p heliograph -p heliograph-load
R="$CARGO_TARGET_DIR/release"
WORK="$(mktemp -d)"
SECRET="jwt-bench-secret-0123456789abcdef"
# shellcheck source=tests/load/bench_server.sh
source "$REPO_ROOT/tests/load/bench_server.sh"
trap 'bench_stop; rm -rf "$WORK"' EXIT

bench_base_config "$WORK"
cat >> "$WORK/heliograph.toml" <<TOML
[tenants.jwt]
domains = ["jwt.test"]

[tenants.jwt.jwt]
keys = [{ kid = "bench", alg = "HS256", secret = "$SECRET" }]
TOML
bench_start "$WORK"

run() {
    echo "=== $1: $N logins over direct TLS, concurrency $CONC"
    shift
    "$R/heliograph-load" connect --ready-file "$WORK/ready.json" -n "$N" \
        --concurrency "$CONC" --transport tls --segment "$N" "$@"
}
run "SCRAM-SHA-256 (localhost)" --domain localhost --mech scram-sha-256
run "JWT via PLAIN (jwt.test)" --domain jwt.test --mech jwt --jwt-secret "$SECRET" --jwt-kid bench
run "SCRAM-SHA-256 again (localhost)" --domain localhost --mech scram-sha-256
run "JWT via PLAIN again (jwt.test)" --domain jwt.test --mech jwt --jwt-secret "$SECRET" --jwt-kid bench
run "PLAIN password, cached after the first round (localhost)" --domain localhost --mech plain
