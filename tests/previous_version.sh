#!/usr/bin/env bash
# The previous version of the server (the commit named in tests/previous-version), built
# once (debug) and kept under ~/.cache/heliograph/previous/COMMIT/heliograph, for the
# mixed-version cluster test (HELIOGRAPH_PREV_BIN, see
# host/tests/all/cluster/rolling_upgrade.rs).
#
#   tests/previous_version.sh          builds it unless kept, prints the binary's path
#   tests/previous_version.sh --path   only prints the path
#
# The commit is checked out in a temporary git worktree and built with the same
# CARGO_TARGET_DIR as this checkout, so the dependencies' builds are shared. Cargo names a
# workspace crate's build after its path inside the workspace, not the checkout's, so the
# old crates' builds take the same names as this checkout's and would be taken for them
# (a later `cargo build -p heliograph-cluster` failed on an old heliograph-xml): once the
# binary is kept, the build records of the old workspace crates are removed, and the next
# build of this checkout compiles its own (and links its own `debug/heliograph`).
set -euo pipefail
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
COMMIT="$(grep -v '^#' "$REPO_ROOT/tests/previous-version" | head -n 1 | tr -d '[:space:]')"
KEPT="${HELIOGRAPH_CACHE_DIR:-$HOME/.cache/heliograph}/previous/$COMMIT"
if [[ "${1:-}" == "--path" ]]; then
    echo "$KEPT/heliograph"
    exit 0
fi
if [[ -x "$KEPT/heliograph" ]]; then
    echo "$KEPT/heliograph"
    exit 0
fi
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/heliograph-target}"
if ! git -C "$REPO_ROOT" cat-file -e "$COMMIT^{commit}" 2>/dev/null; then
    echo "previous_version.sh: commit $COMMIT is not in this clone (shallow?);" \
        "fetch it: git fetch --unshallow" >&2
    exit 1
fi
SRC="$(mktemp -d "${TMPDIR:-/tmp}/heliograph-previous.XXXXXX")"
cleanup() {
    git -C "$REPO_ROOT" worktree remove --force "$SRC/tree" >/dev/null 2>&1 || true
    rm -rf "$SRC"
}
trap cleanup EXIT
git -C "$REPO_ROOT" worktree add --detach -q "$SRC/tree" "$COMMIT"
(cd "$SRC/tree" && cargo build -q -p heliograph) >&2
mkdir -p "$KEPT"
cp "$CARGO_TARGET_DIR/debug/heliograph" "$KEPT/heliograph.partial"
mv "$KEPT/heliograph.partial" "$KEPT/heliograph"
# The old tree's workspace crates: forget their builds (see above).
(cd "$SRC/tree" && cargo metadata --no-deps --format-version 1) |
    python3 -c 'import json, sys; print("\n".join(p["name"] for p in json.load(sys.stdin)["packages"]))' |
    while read -r crate; do
        rm -rf "$CARGO_TARGET_DIR"/debug/.fingerprint/"$crate"-*
    done
echo "$KEPT/heliograph"
