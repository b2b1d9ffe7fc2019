#!/usr/bin/env bash
# The main job: the codec tool on the bundled sample model, and on the real LPDNet when ../shared is
# present. Called by `make demo` after the set-up script.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --release --quiet -p tao-cli
taoctl=target/release/taoctl
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

echo "== taoctl inspect samples/demo.etlt (key from samples/demo.key)"
"$taoctl" inspect samples/demo.etlt --key-file samples/demo.key

echo "== taoctl decrypt: the payload is byte-identical to samples/demo.onnx"
"$taoctl" decrypt samples/demo.etlt --key-file samples/demo.key -o "$work/demo.onnx"
cmp "$work/demo.onnx" samples/demo.onnx && echo "identical"

echo "== a wrong key is named as such"
if "$taoctl" decrypt samples/demo.etlt --key not-the-key -o "$work/x.onnx"; then
  echo "unexpected: wrong key accepted" >&2
  exit 1
fi

shared=${TAO_SHARED_DIR:-../shared}
lpd="$shared/fixtures/real-etlt/lpdnet_usa_pruned_v1.0/usa_pruned.etlt"
if [ -f "$lpd" ]; then
  echo "== the real LPDNet (UFF inside .etlt)"
  TAO_KEY=nvidia_tlt "$taoctl" inspect "$lpd"
else
  echo "== ../shared not found: skipping the real-model part of the demo"
fi
