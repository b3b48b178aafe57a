#!/usr/bin/env bash
# Builds the JavaScript plugins of plugins/js/ with componentize-js into OUT_DIR
# (default $CARGO_TARGET_DIR/plugins/js): NAME_js.wasm for each plugin directory. With
# --test, runs each plugin's unit tests (node --test, on the SDK's fake host) instead.
#
#   plugins/js/build.sh [--test] [OUT_DIR]
#   plugins/js/build.sh --tools           installs the tools if needed, prints componentize-js's path
#
# componentize-js comes from package.json / package-lock.json (pinned), installed with
# `npm ci` into $HELIOGRAPH_CACHE/js-<hash of the lock> (default ~/.cache/heliograph),
# outside the clone, once per lock. A plugin is rebuilt only when its sources, the SDK's
# JavaScript files, the WIT or the lock changed (a stamp next to the .wasm holds their
# hash). --test also runs the tests of the guide's examples (sdk/js/examples). Each plugin is staged with the SDK (sdk/js) and the WIT in one directory, the
# one componentize-js reads (it sees no file outside its working directory), with an
# entry module that installs the component's host backend and re-exports the world's
# interfaces from app.js. `-d http -d fetch-event` leaves out the HTTP support, whose
# wasi:http imports the server does not provide.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$HERE/../.." && pwd)"
TEST=0
TOOLS_ONLY=0
case "${1:-}" in
    --test) TEST=1; shift ;;
    --tools) TOOLS_ONLY=1; shift ;;
esac
OUT="${1:-${CARGO_TARGET_DIR:-$HOME/.cache/heliograph-target}/plugins/js}"

# plugin directory -> "world exports"
declare -A WORLDS=(
    [allowlist]="authenticator-with-init authentication,lifecycle"
    [meeting_policy]="room-policy-with-init roomDecisions,lifecycle"
)

# stage NAME DIR: the plugin's modules, the SDK's and the WIT in DIR.
stage() {
    local name="$1" dir="$2"
    rm -rf "$dir"
    mkdir -p "$dir/wit"
    cp "$HERE/$name"/*.js "$REPO_ROOT"/sdk/js/*.js "$dir/"
    cp "$REPO_ROOT/wit/heliograph-plugin.wit" "$dir/wit/"
}

if [[ $TEST -eq 1 ]]; then
    mkdir -p "$OUT"
    for name in "${!WORLDS[@]}"; do
        stage "$name" "$OUT/test-$name"
        (cd "$OUT/test-$name" && node --test test_*.js)
        rm -rf "${OUT:?}/test-$name"
    done
    # The guide's examples (sdk/js/examples/NAME: app.js and app.test.js) the same way.
    for example in "$REPO_ROOT"/sdk/js/examples/*/; do
        dir="$OUT/test-example-$(basename "$example")"
        rm -rf "$dir"
        mkdir -p "$dir"
        cp "$example"/*.js "$REPO_ROOT"/sdk/js/*.js "$dir/"
        (cd "$dir" && node --test app.test.js)
        rm -rf "$dir"
    done
    exit 0
fi

LOCK_HASH="$(sha256sum "$HERE/package-lock.json" | cut -c1-16)"
TOOLS="${HELIOGRAPH_CACHE:-$HOME/.cache/heliograph}/js-$LOCK_HASH"
if [[ ! -f "$TOOLS/.installed" ]]; then
    rm -rf "$TOOLS"
    mkdir -p "$TOOLS"
    cp "$HERE/package.json" "$HERE/package-lock.json" "$TOOLS/"
    (cd "$TOOLS" && npm ci --prefer-offline --no-audit --no-fund --loglevel=error)
    touch "$TOOLS/.installed"
fi >&2
CJS="$TOOLS/node_modules/.bin/componentize-js"
if [[ $TOOLS_ONLY -eq 1 ]]; then
    echo "$CJS"
    exit 0
fi
mkdir -p "$OUT"

for name in "${!WORLDS[@]}"; do
    read -r world exports <<<"${WORLDS[$name]}"
    wasm="$OUT/${name}_js.wasm"
    stamp="$wasm.sha256"
    want="$(cd "$REPO_ROOT" && cat "$HERE/$name"/*.js sdk/js/*.js wit/heliograph-plugin.wit \
        "$HERE/package-lock.json" | sha256sum | cut -c1-64)"
    if [[ -f "$wasm" && -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
        echo "up to date: $wasm"
        continue
    fi
    src="$OUT/src-$name"
    stage "$name" "$src"
    rm -f "$src"/test_*.js "$src/testing.js"
    printf 'import "./wasm_backend.js";\nexport { %s } from "./app.js";\n' "${exports//,/, }" >"$src/component.js"
    (cd "$src" && "$CJS" component.js -w wit/heliograph-plugin.wit -n "$world" \
        -d http -d fetch-event -o "$wasm.tmp")
    rm -rf "$src"
    mv "$wasm.tmp" "$wasm"
    echo "$want" >"$stamp"
    echo "built: $wasm ($(stat -c %s "$wasm") bytes)"
done
