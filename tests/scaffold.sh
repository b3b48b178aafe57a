#!/usr/bin/env bash
# Generates a plugin project of every world and language with `heliograph plugin new`,
# then does what its README says, unchanged: the unit tests, the build, and
# `heliograph plugin test` with the generated calls.toml (whose every call has an
# `expect`, so a wrong decision fails). tests/run.sh runs it; it also runs alone:
#
#   tests/scaffold.sh [WORLD...]        default: authenticator room-policy component
#
# Environment: HELIOGRAPH_BIN (the server binary), COMPONENTIZE_PY and VENV (the pinned
# componentize-py and the Python that runs the unit tests; tests/run.sh sets them); the
# JavaScript projects are built with the componentize-js plugins/js/build.sh installs
# (the same pins as the generated package.json, so no project runs its own npm install),
# CARGO_TARGET_DIR (the Rust projects share <target>/scaffold/target: their dependencies
# are compiled once).
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TARGET="${CARGO_TARGET_DIR:-$HOME/.cache/heliograph-target}"
BIN="${HELIOGRAPH_BIN:-$TARGET/debug/heliograph}"
CPY="${COMPONENTIZE_PY:-componentize-py}"
PYTHON="${VENV:+$VENV/bin/python}"
PYTHON="${PYTHON:-python3}"
WORK="$TARGET/scaffold"
WORLDS=("$@")
[[ ${#WORLDS[@]} -gt 0 ]] || WORLDS=(authenticator room-policy component)

CJS="$("$REPO_ROOT/plugins/js/build.sh" --tools)"
rm -rf "$WORK/projects"
mkdir -p "$WORK/projects"
# The projects' unit tests and plugin test runs are quiet unless they fail.
export CARGO_TERM_QUIET=true

for world in "${WORLDS[@]}"; do
    for lang in rust python js; do
        name="my-${world}-${lang}"
        crate="${name//-/_}"
        dir="$WORK/projects/$name"
        echo "--- $name"
        # Rust: a path dependency on this checkout's SDK (not published from CI).
        "$BIN" plugin new "$name" --world "$world" --lang "$lang" \
            --dir "$WORK/projects" --sdk-path "$REPO_ROOT/sdk"
        if [[ $lang == rust ]]; then
            (cd "$dir" && CARGO_TARGET_DIR="$WORK/target" cargo test)
            (cd "$dir" && CARGO_TARGET_DIR="$WORK/target" cargo build --release --target wasm32-wasip2)
            wasm="$WORK/target/wasm32-wasip2/release/$crate.wasm"
        elif [[ $lang == js ]]; then
            (cd "$dir" && node --test --test-reporter=dot)
            (cd "$dir" && COMPONENTIZE_JS="$CJS" ./build.sh)
            wasm="$dir/$crate.wasm"
        else
            (cd "$dir" && "$PYTHON" -m unittest -q)
            # build.sh runs the componentize-py on the PATH, as the README has it.
            (cd "$dir" && PATH="$(dirname "$CPY"):$PATH" ./build.sh)
            wasm="$dir/$crate.wasm"
        fi
        ls -l "$wasm"
        (cd "$dir" && "$BIN" plugin test "$wasm" --script calls.toml \
            --cache-dir "$WORK/cache")
    done
done
echo "scaffolded, built and tested: ${WORLDS[*]} x rust python js"
