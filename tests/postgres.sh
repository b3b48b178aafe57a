#!/usr/bin/env bash
# A private PostgreSQL cluster for a test run: never the system's.
#
#   tests/postgres.sh start DIR [PORT]  initdb into DIR/data (as the unprivileged user
#                                        `postgres` when run as root: PostgreSQL refuses
#                                        root), start it listening only on a Unix socket in
#                                        DIR (PORT, default 5432, only names the socket),
#                                        wait until it accepts connections, and print its
#                                        connection string. Idempotent: a cluster already
#                                        running in DIR is left as it is.
#   tests/postgres.sh stop DIR          stop it by its PID (SIGINT: fast shutdown) and wait
#                                        until that process is gone
#   tests/postgres.sh kill DIR          the same with SIGQUIT (immediate shutdown: a crash,
#                                        recovered at the next start) — fault tests
#   tests/postgres.sh restart DIR       start it again after stop or kill
#   tests/postgres.sh url DIR           print the connection string
#   tests/postgres.sh start-tls DIR PORT  like start, but on 127.0.0.1:PORT (TCP) with TLS
#                                        required, its certificate (for 127.0.0.1 and
#                                        localhost) signed by a CA made for it, DIR/ca.crt
#
# Uses the newest /usr/lib/postgresql/*/bin (Debian's `postgresql` package).
set -euo pipefail

cmd=${1:?start|stop|kill|restart|url}
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

url() {
    if [[ -f "$dir/server.crt" ]]; then
        echo "host=127.0.0.1 port=$(cat "$dir/port") user=postgres dbname=postgres"
    else
        echo "host=$dir port=$(cat "$dir/port") user=postgres dbname=postgres"
    fi
}

# Where and how the server listens: a Unix socket in DIR only, or with a certificate,
# loopback TCP with TLS required (hostssl lines only: plain TCP connections are refused).
listen_options() {
    if [[ -f "$dir/server.crt" ]]; then
        echo "-k $dir -c listen_addresses=127.0.0.1 -c ssl=on -c ssl_cert_file=$dir/server.crt -c ssl_key_file=$dir/server.key -c hba_file=$dir/tls_hba.conf"
    else
        echo "-k $dir -c listen_addresses=''"
    fi
}

# The postmaster's PID while it runs (the first line of postmaster.pid), else nothing.
running_pid() {
    local pid
    pid=$(head -1 "$dir/data/postmaster.pid" 2>/dev/null) || return 0
    [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null && echo "$pid"
    return 0
}

pg_start() {
    [[ -n "$(running_pid)" ]] && return 0
    as_owner "$bin/pg_ctl" -D "$dir/data" -l "$dir/log" -w -t 60 \
        -o "$(listen_options) -p $(cat "$dir/port") -c max_connections=400 -c shared_buffers=64MB -c max_wal_size=128MB -c min_wal_size=32MB" \
        start >/dev/null
}

# stop_by_pid SIGNAL: signals the postmaster and waits (60 s at most) for it to exit.
stop_by_pid() {
    local pid
    pid=$(running_pid)
    [[ -z "$pid" ]] && return 0
    kill "-$1" "$pid"
    for _ in $(seq 600); do
        kill -0 "$pid" 2>/dev/null || return 0
        sleep 0.1
    done
    echo "postgres.sh: PostgreSQL (PID $pid) did not stop" >&2
    return 1
}

case "$cmd" in
    start | start-tls)
        port=${3:-5432}
        mkdir -p "$dir"
        [[ -f "$dir/port" ]] || echo "$port" >"$dir/port"
        if [[ $cmd == start-tls && ! -f "$dir/server.crt" ]]; then
            # A CA of the test's own (DIR/ca.crt) and a server certificate it signs.
            openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=heliograph-test-ca \
                -keyout "$dir/ca.key" -out "$dir/ca.crt" 2>/dev/null
            openssl req -newkey rsa:2048 -nodes -subj /CN=localhost \
                -keyout "$dir/server.key" -out "$dir/server.csr" 2>/dev/null
            printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\n' >"$dir/server.ext"
            openssl x509 -req -in "$dir/server.csr" -CA "$dir/ca.crt" -CAkey "$dir/ca.key" \
                -CAcreateserial -days 2 -extfile "$dir/server.ext" -out "$dir/server.crt" 2>/dev/null
            chmod 600 "$dir/server.key"
            printf 'local all all trust\nhostssl all all 127.0.0.1/32 trust\n' >"$dir/tls_hba.conf"
        fi
        if [[ $(id -u) -eq 0 ]]; then
            # The server runs as `postgres`: it needs to reach and write DIR.
            chown -R postgres "$dir"
            chmod 755 "$dir"
        fi
        if [[ ! -f "$dir/data/PG_VERSION" ]]; then
            as_owner "$bin/initdb" -D "$dir/data" -U postgres --auth=trust -E UTF8 \
                --locale=C >"$dir/initdb.log" 2>&1
        fi
        pg_start
        url
        ;;
    restart)
        pg_start
        ;;
    stop)
        stop_by_pid INT
        ;;
    kill)
        stop_by_pid QUIT
        ;;
    url)
        url
        ;;
    *)
        echo "postgres.sh: unknown command $cmd" >&2
        exit 2
        ;;
esac
