#!/usr/bin/env bash
# Roster size against login cost and memory (issue 26, point 4): users with ROSTER
# contacts each (default 10 and 1000), every contact online, log in and send initial
# presence, which goes to every contact and probes each of them.
#
# For each roster size, on a fresh release server (bench_server.sh's config, archive off):
#   1. 1,000 contact accounts (load0 ..) and USERS measured accounts (rost0 ..) are created
#      through the admin API; the server is stopped and its storage exported;
#   2. the dump gets ROSTER items per measured user (contacts load<(7i + j) mod 1000>,
#      subscription both, and the user in each contact's roster the same way) and is
#      imported into a fresh data directory (`heliograph storage import`);
#   3. the server starts on it, the 1,000 contacts log in and stay online, then the
#      measured users log in (`heliograph-load connect --user-prefix rost`): logins/s,
#      p99 and server CPU per login (with its presence broadcast and probes), and the RSS
#      each measured session adds while they stay online (read 10 s after the last login).
#
#   tests/load/roster_bench.sh [USERS] [ROSTER...]      (default 200 10 1000)
#   BENCH_BIN_DIR=DIR tests/load/roster_bench.sh ...    DIR/heliograph and DIR/heliograph-load
#   SLED_CACHE_MIB=16 tests/load/roster_bench.sh ...     sled's page cache (default: the
#       server's, 1 GiB, which fills with the rosters read at login and shows in the RSS)
set -euo pipefail
USERS="${1:-200}"
shift || true
SIZES=("$@")
[[ ${#SIZES[@]} -gt 0 ]] || SIZES=(10 1000)
CONTACTS=1000
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/heliograph-target}"
cd "$REPO_ROOT"
[[ -n "${BENCH_BIN_DIR:-}" ]] || cargo build --release -q -p heliograph -p heliograph-load
R="${BENCH_BIN_DIR:-$CARGO_TARGET_DIR/release}"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/heliograph-roster.XXXXXX")"
# shellcheck source=tests/load/bench_server.sh
source "$REPO_ROOT/tests/load/bench_server.sh"
BENCH_HOLDERS=()
trap 'kill "${BENCH_HOLDERS[@]}" 2>/dev/null || true; bench_stop' EXIT
DOMAIN=roster.test
rss() { awk '/VmRSS/ {print $2}' "/proc/$BENCH_PID/status"; }

for size in "${SIZES[@]}"; do
    echo "=== rosters of $size contacts"
    DIR="$WORK/r$size"
    bench_config "$DIR" "$DOMAIN" false
    if [[ -n "${SLED_CACHE_MIB:-}" ]]; then
        printf '\n[storage]\nsled_cache_mib = %s\n' "$SLED_CACHE_MIB" >> "$DIR/heliograph.toml"
    fi
    bench_start "$DIR"
    # The accounts (created by the load tool's provisioning, logged in once).
    "$R/heliograph-load" connect --ready-file "$DIR/ready.json" --domain "$DOMAIN" \
        -n "$CONTACTS" --concurrency 32 | grep "^connect"
    "$R/heliograph-load" connect --ready-file "$DIR/ready.json" --domain "$DOMAIN" \
        --user-prefix rost -n "$USERS" --concurrency 32 | grep "^connect"
    bench_stop
    "$R/heliograph" --config "$DIR/heliograph.toml" storage export -o "$DIR/accounts.jsonl"
    python3 - "$DIR/accounts.jsonl" "$DIR/dump.jsonl" "$DOMAIN" "$USERS" "$size" "$CONTACTS" <<'PY'
import json, sys
src, dst, domain, users, size, contacts = sys.argv[1], sys.argv[2], sys.argv[3], *map(int, sys.argv[4:])
def item(local, jid):
    return {"kind": "roster_item", "domain": domain, "local": local,
            "item": {"jid": jid, "name": None, "subscription": "Both", "ask": False,
                     "pending_in": False, "pending_in_stanza": None, "approved": False,
                     "groups": ["bench"]}}
lines = open(src).read().splitlines()
end = json.loads(lines.pop())  # the trailer: {"end": {"records": N, ...}}
assert "end" in end, end
with open(dst, "w") as out:
    out.writelines(l + "\n" for l in lines)
    for i in range(users):
        for j in range(size):
            c = f"load{(7 * i + j) % contacts}"
            out.write(json.dumps(item(f"rost{i}", f"{c}@{domain}")) + "\n")
            out.write(json.dumps(item(c, f"rost{i}@{domain}")) + "\n")
    end["end"]["records"] += 2 * users * size
    out.write(json.dumps(end) + "\n")
PY
    mv "$DIR/data" "$DIR/data.accounts"
    "$R/heliograph" --config "$DIR/heliograph.toml" storage import "$DIR/dump.jsonl"
    rm -f "$DIR/ready.json"
    bench_start "$DIR"
    TARGET=(--ready-file "$DIR/ready.json" --domain "$DOMAIN" --concurrency 32)
    bench_hold "$DIR/contacts" "${TARGET[@]}" --user-prefix load -n "$CONTACTS"
    rss0="$(rss)"
    bench_hold "$DIR/users" "${TARGET[@]}" --user-prefix rost -n "$USERS"
    # The presence broadcasts and probe answers of the last logins have been read by then.
    sleep 10
    rss1="$(rss)"
    grep "^connect" "$DIR/users.txt"
    echo "rss $rss0 -> $rss1 KiB" | tee "$DIR/rss.txt"
    kill "${BENCH_HOLDERS[@]}" 2>/dev/null || true
    wait "${BENCH_HOLDERS[@]}" 2>/dev/null || true
    BENCH_HOLDERS=()
    bench_stop
done

echo "=== summary ($USERS users logging in, each with its contacts online)"
python3 - "$WORK" "${SIZES[@]}" <<'PY'
import json, sys
work, sizes = sys.argv[1], sys.argv[2:]
for size in sizes:
    d = f"{work}/r{size}"
    c = [json.loads(l) for l in open(f"{d}/users.jsonl") if l.strip()][-1]
    rss0, rss1 = (int(x) for x in open(f"{d}/rss.txt").read().split()[1:4:2])
    print(f"roster {size:>5}: {c['logins_per_s']:.0f} logins/s, {c['server_cpu_ms_per_login']:.3f} ms "
          f"server CPU per login, p50 {c['login_p50_ms']:.1f} ms, p99 {c['login_p99_ms']:.1f} ms, "
          f"{(rss1 - rss0) / c['ok']:.1f} KiB RSS per session, {c['failed']} failed")
PY
