#!/usr/bin/env bash
# Builds the browser package (the core as WebAssembly, its wasm-bindgen glue,
# the JavaScript driver, types and package.json) into web/pkg, or into $1.
#
# Needs Debian's rustc-web toolchain, whose std source builds for
# wasm32-unknown-unknown, and wasm-ld, plus wasm-bindgen-cli at the exact
# version of the wasm-bindgen crate in web/Cargo.toml:
#   apt-get install rustc-web cargo-web rust-web-src lld
#   cargo install wasm-bindgen-cli --version =0.2.130
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-web/pkg}"
# The same sources give the same bytes wherever they are checked out: paths
# in panic locations are made relative to the checkout and the registry.
remap="--remap-path-prefix=$PWD=wormhole-sync --remap-path-prefix=${CARGO_HOME:-$HOME/.cargo}/registry/src=crates"
RUSTC=/usr/bin/rustc RUSTC_BOOTSTRAP=1 RUSTFLAGS="-C linker=wasm-ld $remap" CARGO_TERM_COLOR=never \
  /usr/bin/cargo build --manifest-path web/Cargo.toml --release --locked \
  --target wasm32-unknown-unknown -Zbuild-std=std,panic_abort
wasm-bindgen --target web --out-dir "$out" web/target/wasm32-unknown-unknown/release/wormhole_sync_web.wasm
cp web/js/wormhole-sync.js web/js/wormhole-sync.d.ts web/js/package.json "$out"/
echo "built $out: $(wc -c < "$out/wormhole_sync_web_bg.wasm") bytes of WebAssembly"
