#!/usr/bin/env bash
# The main job: the taoinfer GStreamer element on the bundled demo detector (samples/ball_detector.etlt,
# made by scripts/make_demo_model.py) finding the ball of videotestsrc, printing the detections and
# writing an annotated PNG; a second start shows the engine coming from the cache. With ../shared
# present, the real LPDNet runs through its DeepStream config on real photos and video.
# Output goes to $DEMO_OUT (default: target/demo/).
set -euo pipefail
cd "$(dirname "$0")/.."

out=${DEMO_OUT:-target/demo}
mkdir -p "$out"
echo "== building the GStreamer plugin (cargo build --release -p gst-taoinfer)"
cargo build --release --quiet -p gst-taoinfer
export TAOINFER_PLUGIN_DIR=${CARGO_TARGET_DIR:-$PWD/target}/release
gst-inspect-1.0 "$TAOINFER_PLUGIN_DIR/libgsttaoinfer.so" | sed -n 's/^  \(taoinfer\|taooverlay\): /element \1: /p'

echo
echo "== videotestsrc pattern=ball ! taoinfer (demo detector) ! taooverlay ! pngenc"
pipelines/ball_png.sh "$out/ball.png" 30

echo
echo "== the same pipeline again: the engine now comes from the cache"
pipelines/ball_png.sh "$out/ball-again.png" 3 | grep -E '^(engine: loaded|frame|annotated)'

shared=${TAO_SHARED_DIR:-../shared}
photos=$shared/fixtures/media/images/cars
if [ -d "$photos" ]; then
  echo
  echo "== the real LPDNet through its DeepStream config (lpd_us_config.txt) on real photos"
  for photo in us1.jpg car13.jpg wts-lg-000040.jpg; do
    echo "-- $photo (ground truth x y w h: $(cut -f2-5 "$photos/${photo%.jpg}.txt" | tr '\t' ' '))"
    pipelines/lpdnet_photo.sh "$photos/$photo" "$out/${photo%.jpg}-plates.png" | grep -v '^engine: \(reading\|looking\)'
  done
  echo
  echo "== LPDNet on real video (first 60 frames of license_plate.mp4) -> Motion-JPEG AVI"
  pipelines/lpdnet_video.sh "$shared/fixtures/media/video/license_plate.mp4" "$out/plates.avi" 60 |
    grep -v ': (nothing)$' | grep -v '^engine: \(reading\|looking\)'
else
  echo
  echo "== ../shared not found: skipping the real LPDNet part of the demo"
fi
echo
echo "== written:"
ls -l "$out"
