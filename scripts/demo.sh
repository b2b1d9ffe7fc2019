#!/usr/bin/env bash
# The main job (`make demo`): the bundled ball detector in a real GStreamer pipeline, then the real
# LPDNet on a real photo and the command-line tools when ../shared is present. Writes into out/.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p out

echo "== building the GStreamer plugin and the command-line tools (release)"
cargo build --release --quiet -p gst-taoinfer -p tao-cli
taoctl=target/release/taoctl

echo "== videotestsrc pattern=ball ! taoinfer (samples/ball_detector.etlt) ! taooverlay ! pngenc"
pipelines/ball_png.sh out/ball.png 30

shared=${TAO_SHARED_DIR:-../shared}
lpd="$shared/fixtures/real-etlt/lpdnet_usa_pruned_v1.0/usa_pruned.etlt"
photo="$shared/fixtures/media/images/cars/us1.jpg"
if [ -f "$lpd" ] && [ -f "$photo" ]; then
  echo "== the real LPDNet (UFF inside .etlt) through its DeepStream config on a real photo"
  pipelines/lpdnet_photo.sh "$photo" out/plates.png
  echo "== taoctl inspect --optimized on the real LPDNet"
  TAO_KEY=nvidia_tlt "$taoctl" inspect "$lpd" --optimized | head -40
else
  echo "== ../shared not found: the real-model part of the demo is skipped"
fi

echo "== the .etlt codec on the bundled sample: decrypt, compare, wrong key"
"$taoctl" decrypt samples/demo.etlt --key-file samples/demo.key -o out/demo.onnx
cmp out/demo.onnx samples/demo.onnx && echo "decrypted payload is identical to samples/demo.onnx"
if "$taoctl" decrypt samples/demo.etlt --key not-the-key -o out/wrong.onnx; then
  echo "unexpected: wrong key accepted" >&2
  exit 1
fi
echo "demo outputs: $(ls out/*.png | tr '\n' ' ')"
