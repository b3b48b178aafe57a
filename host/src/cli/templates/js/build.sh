#!/usr/bin/env sh
# Builds {{wasm}} from app.js with componentize-js (npm install, once). The component's
# entry module installs the SDK's host backend and re-exports the world's interfaces;
# `-d http -d fetch-event` leaves out HTTP support (the server provides no wasi:http).
set -eu
cd "$(dirname "$0")"
CJS="${COMPONENTIZE_JS:-node_modules/.bin/componentize-js}"
printf 'import "./wasm_backend.js";\nexport { %s } from "./app.js";\n' "{{exports}}" > component.js
"$CJS" component.js -w wit/heliograph-plugin.wit -n {{world}}-with-init -d http -d fetch-event -o {{wasm}}
echo "built {{wasm}}"
