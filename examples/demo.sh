#!/usr/bin/env bash
# The README's first command: set up a fresh machine, build mediaflow, and run the whole image
# pipeline on the bundled example images (no AWS): renditions, manifest.json per image and an
# HTML report. The `watermarked` profile adds the bundled watermark plugin.
set -euo pipefail
cd "$(dirname "$0")/.."
bash .ci/setup
cargo build --release -q -p mediaflow
out=${1:-out}
status=0
target/release/mediaflow process examples/images/* --out "$out" --profile watermarked || status=$?
echo
echo "Open $(cd "$out" && pwd)/index.html in a browser to see the report."
exit $status
