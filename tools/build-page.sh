#!/usr/bin/env bash
# Builds the page the server shows browsers at `/` into server/page/ (or
# into $1), where the server embeds it: the browser package
# (tools/build-web.sh), web/page/'s HTML, script and style, the WebAssembly
# gzip-compressed beside itself, and INPUTS, the SHA-256 of every file the
# page is built from (tools/page-inputs.sh). Commit server/page/ after
# running it: a test (server/tests/page.rs) fails when INPUTS no longer
# matches the sources.
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-server/page}"
pkg="$(mktemp -d)"
trap 'rm -rf "$pkg"' EXIT
tools/build-web.sh "$pkg" > /dev/null
mkdir -p "$out"
cp web/page/index.html web/page/page.js web/page/page.css web/page/icon.svg "$out"/
cp "$pkg"/wormhole-sync.js "$pkg"/wormhole_sync_web.js "$pkg"/wormhole_sync_web_bg.wasm "$out"/
gzip -9 --no-name --stdout "$out"/wormhole_sync_web_bg.wasm > "$out"/wormhole_sync_web_bg.wasm.gz
tools/page-inputs.sh > "$out"/INPUTS
echo "built $out: $(wc -c < "$out"/wormhole_sync_web_bg.wasm) bytes of WebAssembly, $(wc -c < "$out"/wormhole_sync_web_bg.wasm.gz) gzip-compressed"
