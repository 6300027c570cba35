#!/usr/bin/env bash
# The README's first command: set up a fresh machine, build mediaflow, and run the whole
# pipeline on the bundled examples (no AWS): image renditions, the video's ladder (MP4 + HLS,
# poster, seek sprite), a manifest.json per source and an HTML report that shows and plays
# them. The `watermarked` profile adds the bundled watermark plugin to images and video.
set -euo pipefail
cd "$(dirname "$0")/.."
bash .ci/setup
cargo build --release -q -p mediaflow
out=${1:-out}
status=0
target/release/mediaflow process examples/images/* examples/video/* --out "$out" --profile watermarked || status=$?
echo
echo "Open $(cd "$out" && pwd)/index.html in a browser to see the report."
exit $status
