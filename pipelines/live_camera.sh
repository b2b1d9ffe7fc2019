#!/usr/bin/env bash
# A live source (the first V4L2 camera, else a live videotestsrc ball) through taoinfer with
# build-policy=background: frames flow from the first moment and carry results once the engine is
# ready. CONFIG picks the model config (default: the demo ball detector), SINK the video sink.
#   CONFIG=... SINK=autovideosink pipelines/live_camera.sh [FRAMES]
set -euo pipefail
source "$(dirname "$0")/env.sh"
frames=${1:--1}
config=${CONFIG:-$demo_config}
sink=${SINK:-autovideosink}
if [ -e /dev/video0 ]; then
  source_desc="v4l2src device=/dev/video0 num-buffers=$frames"
else
  source_desc="videotestsrc is-live=true pattern=ball num-buffers=$frames ! video/x-raw,width=320,height=240,framerate=30/1"
fi
# shellcheck disable=SC2086 # source_desc is a pipeline fragment
gst-launch-1.0 -m $source_desc ! videoconvert \
  ! taoinfer config-file="$config" build-policy=background post-messages=true \
  ! taooverlay ! videoconvert ! $sink | detections
