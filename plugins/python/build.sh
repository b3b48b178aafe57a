#!/usr/bin/env bash
# Builds the Python plugins of plugins/python/ with componentize-py into OUT_DIR
# (default $CARGO_TARGET_DIR/plugins/python): NAME_py.wasm for each plugin directory.
# A plugin is rebuilt only when its sources, the SDK's Python package or the WIT changed
# (a stamp next to the .wasm holds their hash), so a warm run costs nothing.
#
#   plugins/python/build.sh [OUT_DIR]
#
# COMPONENTIZE_PY: the componentize-py to use (default: the one on the PATH; tests/run.sh
# passes the pinned one from its venv).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$HERE/../.." && pwd)"
OUT="${1:-${CARGO_TARGET_DIR:-$HOME/.cache/heliograph-target}/plugins/python}"
CPY="${COMPONENTIZE_PY:-componentize-py}"
mkdir -p "$OUT"

# plugin directory -> world (the SDK's worlds with the optional lifecycle.init export)
declare -A WORLDS=(
    [allowlist]=authenticator-with-init
    [meeting_policy]=room-policy-with-init
)

for name in "${!WORLDS[@]}"; do
    src="$HERE/$name"
    wasm="$OUT/${name}_py.wasm"
    stamp="$wasm.sha256"
    want="$(cd "$REPO_ROOT" && cat "$src"/*.py sdk/python/heliograph_plugin/*.py wit/heliograph-plugin.wit \
        | cat - <("$CPY" --version) | sha256sum | cut -c1-64)"
    if [[ -f "$wasm" && -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
        echo "up to date: $wasm"
        continue
    fi
    "$CPY" -d "$REPO_ROOT/wit" -w "${WORLDS[$name]}" componentize \
        -p "$src" -p "$REPO_ROOT/sdk/python" app -o "$wasm.tmp"
    mv "$wasm.tmp" "$wasm"
    echo "$want" >"$stamp"
    echo "built: $wasm ($(stat -c %s "$wasm") bytes)"
done
