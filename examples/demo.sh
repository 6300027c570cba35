#!/usr/bin/env bash
# The README's first command: set up, build mediaflow, and show the bundled plugins working
# in the sandbox (inspect + validate each one).
set -euo pipefail
cd "$(dirname "$0")/.."
bash .ci/setup
cargo build --release -p mediaflow
bin=target/release/mediaflow
guests=target/wasm-guests/wasm32-wasip2/wasm-guest
$bin plugin list
for p in exif watermark notify-rules; do
    wasm="$guests/mediaflow_plugin_${p//-/_}.wasm"
    echo
    echo "== $p"
    $bin plugin inspect "$wasm" | head -4
    $bin plugin validate "$wasm" --manifest "plugins/$p/plugin.toml"
done
