#!/usr/bin/env bash
# The demo detector on the moving ball of videotestsrc: prints the detections of every frame and
# writes the last frame, with boxes drawn by taooverlay, as a PNG.
#   pipelines/ball_png.sh [OUT.png] [FRAMES]
set -euo pipefail
source "$(dirname "$0")/env.sh"
out=${1:-ball.png}
frames=${2:-30}
gst-launch-1.0 -m \
  videotestsrc pattern=ball num-buffers="$frames" ! video/x-raw,format=RGB,width=320,height=240 \
  ! taoinfer config-file="$demo_config" post-messages=true \
  ! taooverlay ! videoconvert ! pngenc ! multifilesink location="$out" | detections
echo "annotated frame: $out"
