# Shared by tests/load/*_bench.sh (sourced, not run): a release server on loopback with one
# tenant, for benchmarks that start their own.
#
#   bench_base_config DIR         writes DIR/heliograph.toml with the listeners only (plain
#                                 c2s allowing PLAIN, direct-TLS c2s, HTTP, component and
#                                 admin, all on ephemeral loopback ports); data under
#                                 DIR/data; the caller appends its [c2s] and tenants
#   bench_config DIR DOMAIN MAM   the same with one tenant DOMAIN (archive on if MAM is true)
#   bench_start DIR               starts "$R/heliograph" with it, waits for DIR/ready.json,
#                                 sets BENCH_PID
#   bench_stop                    stops it (SIGTERM, then waits)
#   bench_hold OUT ARGS...        `heliograph-load connect ARGS... --hold` in the background
#                                 (OUT.txt, measurements in OUT.jsonl), its pid added to
#                                 BENCH_HOLDERS; returns once its sessions are all online

bench_base_config() {
    local dir="$1"
    mkdir -p "$dir"
    cat > "$dir/heliograph.toml" <<TOML
[general]
hosts = ["localhost"]
data_dir = "$dir/data"
log_level = "warn"

[[listen.c2s]]
address = "127.0.0.1:0"
require_tls = false
allow_plain_without_tls = true
negotiation_timeout = 120
idle_timeout = 86400

[[listen.c2s]]
address = "127.0.0.1:0"
tls = "direct"

# Every listener on an ephemeral loopback port (the defaults would bind
# 0.0.0.0:5280 and 127.0.0.1:5347).
[[listen.http]]
address = "127.0.0.1:0"

[[listen.component]]
address = "127.0.0.1:0"

[listen.admin]
address = "127.0.0.1:0"

TOML
}

bench_config() {
    local dir="$1" domain="$2" mam="$3"
    bench_base_config "$dir"
    cat >> "$dir/heliograph.toml" <<TOML
[c2s]
ping_interval = 0

[tenants.bench]
domains = ["$domain"]

[tenants.bench.features]
mam = $mam
TOML
}

bench_start() {
    local dir="$1"
    "$R/heliograph" serve --config "$dir/heliograph.toml" --ready-file "$dir/ready.json" \
        2> "$dir/server.log" &
    BENCH_PID=$!
    for _ in $(seq 300); do [[ -f "$dir/ready.json" ]] && return 0; sleep 0.1; done
    cat "$dir/server.log"
    return 1
}

bench_stop() {
    if [[ -n "${BENCH_PID:-}" ]]; then
        kill "$BENCH_PID" 2>/dev/null || true
        wait "$BENCH_PID" 2>/dev/null || true
        BENCH_PID=""
    fi
}

bench_hold() {
    local out="$1"
    shift
    "$R/heliograph-load" --json "$out.jsonl" connect "$@" --hold 36000 > "$out.txt" 2>&1 &
    BENCH_HOLDERS+=($!)
    local deadline=$((SECONDS + 900))
    until grep -q "^holding" "$out.txt"; do
        if ! kill -0 "${BENCH_HOLDERS[-1]}" 2>/dev/null || (( SECONDS > deadline )); then
            cat "$out.txt"
            echo "the sessions of $out never all came online"
            return 1
        fi
        sleep 1
    done
}
