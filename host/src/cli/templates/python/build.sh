#!/usr/bin/env sh
# Builds {{wasm}} from app.py with componentize-py (pip install -r requirements.txt).
set -eu
cd "$(dirname "$0")"
componentize-py -d wit -w {{world}}-with-init componentize -p . app -o {{wasm}}
echo "built {{wasm}}"
