#!/usr/bin/env bash
# A private PostgreSQL cluster for a test run: never the system's.
#
#   tests/postgres.sh start DIR PORT   initdb into DIR/data (as the unprivileged user
#                                       `postgres` when run as root: PostgreSQL refuses
#                                       root), start it listening only on a Unix socket in
#                                       DIR, wait until it accepts connections, and print
#                                       its connection string
#   tests/postgres.sh stop DIR         stop it (fast shutdown) by the PID in postmaster.pid
#   tests/postgres.sh kill DIR         stop it the hard way (immediate: a crash) — fault tests
#   tests/postgres.sh restart DIR      start it again after stop or kill
#
# Uses the newest /usr/lib/postgresql/*/bin (Debian's `postgresql` package).
set -euo pipefail

cmd=${1:?start|stop|kill|restart}
dir=${2:?directory}
bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
[[ -x "$bin/pg_ctl" ]] || { echo "postgres.sh: no PostgreSQL in /usr/lib/postgresql" >&2; exit 1; }

as_owner() {
    if [[ $(id -u) -eq 0 ]]; then
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

pg_ctl_start() {
    local port
    port=$(cat "$dir/port")
    as_owner "$bin/pg_ctl" -D "$dir/data" -l "$dir/log" -w -t 60 \
        -o "-k $dir -c listen_addresses='' -p $port -c max_connections=400 -c shared_buffers=64MB" \
        start >/dev/null
}

case "$cmd" in
    start)
        port=${3:?port}
        mkdir -p "$dir"
        [[ $(id -u) -eq 0 ]] && chown postgres "$dir"
        echo "$port" >"$dir/port"
        [[ $(id -u) -eq 0 ]] && chown postgres "$dir/port"
        if [[ ! -f "$dir/data/PG_VERSION" ]]; then
            as_owner "$bin/initdb" -D "$dir/data" -U postgres --auth=trust -E UTF8 \
                --locale=C >"$dir/initdb.log" 2>&1
        fi
        pg_ctl_start
        echo "host=$dir port=$port user=postgres dbname=postgres"
        ;;
    restart)
        pg_ctl_start
        ;;
    stop | kill)
        mode=fast
        [[ $cmd == kill ]] && mode=immediate
        if [[ -f "$dir/data/postmaster.pid" ]]; then
            as_owner "$bin/pg_ctl" -D "$dir/data" -m "$mode" -w -t 60 stop >/dev/null
        fi
        ;;
    *)
        echo "postgres.sh: unknown command $cmd" >&2
        exit 2
        ;;
esac
