#!/usr/bin/env bash
# Heliograph's one test entry point: installs what it needs (idempotently),
# then runs formatting, lints, Rust tests, plugin builds and the interop suite.
# Exits non-zero on the first failure. Runs from any cwd; CI runs it through
# .ci/run from a fresh clone with no stdin.
#
#   tests/run.sh                  everything (the default; what CI runs)
#   tests/run.sh --skip-lint      no rustfmt / clippy
#   tests/run.sh --only-interop   build the server, run only the pytest and browser suites
#   tests/run.sh -- ARGS...       extra arguments for pytest (e.g. -k blocking -x)
#
# Environment:
#   CARGO_TARGET_DIR   default ~/.cache/heliograph-target (kept between runs, outside the clone)
#   HELIOGRAPH_CACHE   default ~/.cache/heliograph (Python venvs)
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO_ROOT"

SKIP_LINT=0
ONLY_INTEROP=0
PYTEST_EXTRA=()
while [[ $# -gt 0 ]]; do
    case "$1" in
        --skip-lint) SKIP_LINT=1 ;;
        --only-interop) ONLY_INTEROP=1 ;;
        --) shift; PYTEST_EXTRA=("$@"); break ;;
        -h|--help) sed -n '2,14p' "$0"; exit 0 ;;
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
STEP_START=$SECONDS
CURRENT_STEP=""

step() {
    if [[ -n "$CURRENT_STEP" ]]; then
        echo "--- done: $CURRENT_STEP ($((SECONDS - STEP_START))s)"
    fi
    CURRENT_STEP="$1"
    STEP_START=$SECONDS
    echo
    echo "=================================================================="
    echo "=== $1"
    echo "=================================================================="
}

on_exit() {
    local code=$?
    echo
    if [[ $code -eq 0 ]]; then
        echo "--- done: $CURRENT_STEP ($((SECONDS - STEP_START))s)"
        echo "=== tests/run.sh: all steps passed in $((SECONDS - RUN_START))s"
    else
        echo "=== tests/run.sh: FAILED in step '${CURRENT_STEP:-setup}' (exit $code) after $((SECONDS - RUN_START))s" >&2
    fi
}
trap on_exit EXIT

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

# Sets VENV to a virtualenv holding tests/interop/requirements.txt. The venv's
# name carries a hash of the requirements (and the Python version), so a change
# to either makes a new one; a marker file records a completed install.
ensure_python_venv() {
    local req="$REPO_ROOT/tests/interop/requirements.txt"
    local python="${PYTHON:-python3}"
    local key
    key="$( (cat "$req"; "$python" --version 2>&1) | sha256sum | cut -c1-16)"
    VENV="$HELIOGRAPH_CACHE/venv-$key"
    if [[ -f "$VENV/.installed" ]]; then
        echo "venv up to date: $VENV"
        return 0
    fi
    rm -rf "$VENV"
    "$python" -m venv "$VENV"
    "$VENV/bin/python" -m pip install -q --disable-pip-version-check -r "$req"
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

# --- steps --------------------------------------------------------------------

step "setup: toolchain, Python venv, system packages"
ensure_rust_tools
ensure_python_venv
ensure_apt_packages chromium   # headless browser for tests/browser (never downloaded by npm)
ensure_apt_packages haproxy    # real load balancer in front of c2s (host/tests/edge.rs)
export HELIOGRAPH_REQUIRE_HAPROXY=1   # so the HAProxy test fails instead of skipping
echo "CARGO_TARGET_DIR=$CARGO_TARGET_DIR"
ensure_browser_packages
cargo --version
"$VENV/bin/python" --version
node --version
/usr/bin/chromium --version 2>/dev/null || true

if [[ $ONLY_INTEROP -eq 0 ]]; then
    if [[ $SKIP_LINT -eq 0 ]]; then
        step "cargo fmt --check"
        cargo fmt --all -- --check

        step "cargo clippy"
        cargo clippy --workspace --all-targets -- -D warnings

        step "guest code: fmt and clippy (sdk/, plugins/)"
        cargo fmt --manifest-path sdk/Cargo.toml -- --check
        cargo fmt --manifest-path plugins/Cargo.toml --all -- --check
        cargo clippy --manifest-path plugins/Cargo.toml --workspace --release \
            --target wasm32-wasip2 --target-dir "$PLUGIN_TARGET_DIR" -- -D warnings
    fi

    # Plugins and the SDK are their own workspace (the root one excludes them), built for
    # wasm32-wasip2 before the Rust tests, which load the .wasm files from here (the
    # tests run the same build, a no-op then, so they also work on their own).
    step "plugin builds (wasm32-wasip2, release)"
    cargo build --release --target wasm32-wasip2 --manifest-path plugins/Cargo.toml \
        --target-dir "$PLUGIN_TARGET_DIR"
    ls -l "$PLUGIN_TARGET_DIR"/wasm32-wasip2/release/*.wasm

    step "cargo test"
    cargo test --workspace

    step "SDK and plugin unit tests (native, with the SDK's fake host)"
    cargo test --manifest-path sdk/Cargo.toml
    cargo test --manifest-path plugins/Cargo.toml -p allowlist -p meeting-policy -p echo-bot -p call-router
fi

step "build heliograph"
cargo build -p heliograph
export HELIOGRAPH_BIN="$CARGO_TARGET_DIR/debug/heliograph"
test -x "$HELIOGRAPH_BIN"

step "interop tests (pytest + slixmpp)"
# (pytest.ini there sets the per-test timeouts and keeps .pytest_cache out of the clone.)
"$VENV/bin/python" -m pytest "$REPO_ROOT/tests/interop" -q "${PYTEST_EXTRA[@]}"

step "browser tests (headless Chromium: Strophe.js over BOSH, @xmpp/client over WebSocket)"
(cd "$REPO_ROOT/tests/browser" && node --test --test-concurrency=1 test/*.test.js)
