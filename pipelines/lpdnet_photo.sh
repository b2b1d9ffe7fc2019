#!/usr/bin/env bash
# The real LPDNet, configured by its DeepStream config file, on one photo: decode, infer, draw, PNG.
#   pipelines/lpdnet_photo.sh PHOTO.jpg [OUT.png]
set -euo pipefail
source "$(dirname "$0")/env.sh"
photo=${1:?usage: lpdnet_photo.sh PHOTO.jpg [OUT.png]}
out=${2:-$(basename "${photo%.*}")-plates.png}
gst-launch-1.0 -m \
  filesrc location="$photo" ! jpegdec ! videoconvert \
  ! taoinfer config-file="$lpd_config" post-messages=true \
  ! taooverlay ! videoconvert ! pngenc ! filesink location="$out" | detections
echo "annotated photo: $out"
