#!/usr/bin/env bash
# File -> decode -> taoinfer (LPDNet) -> taooverlay -> encode: an annotated Motion-JPEG AVI.
#   pipelines/lpdnet_video.sh [VIDEO.mp4] [OUT.avi] [FRAMES]
set -euo pipefail
source "$(dirname "$0")/env.sh"
video=${1:-$shared/fixtures/media/video/license_plate.mp4}
out=${2:-plates.avi}
frames=${3:--1}
gst-launch-1.0 -m \
  filesrc location="$video" ! qtdemux ! avdec_h264 ! identity eos-after="$frames" ! videoconvert \
  ! taoinfer config-file="$lpd_config" post-messages=true \
  ! taooverlay ! videoconvert ! jpegenc ! avimux ! filesink location="$out" | detections
echo "annotated video: $out"
