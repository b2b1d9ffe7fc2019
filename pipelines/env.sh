# Sourced by the example pipelines: puts the built plugin on GST_PLUGIN_PATH and finds ../shared.
# TAOINFER_PLUGIN_DIR overrides where libgsttaoinfer.so is looked for.
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
plugin_dir=${TAOINFER_PLUGIN_DIR:-}
if [ -z "$plugin_dir" ]; then
  for d in "$root/target/release" "$root/target/debug"; do
    if [ -f "$d/libgsttaoinfer.so" ]; then plugin_dir=$d; break; fi
  done
fi
if [ -z "$plugin_dir" ] || [ ! -f "$plugin_dir/libgsttaoinfer.so" ]; then
  echo "libgsttaoinfer.so not found: build it with 'cargo build --release -p gst-taoinfer'" >&2
  exit 1
fi
export GST_PLUGIN_PATH="$plugin_dir${GST_PLUGIN_PATH:+:$GST_PLUGIN_PATH}"
shared=${TAO_SHARED_DIR:-$root/../shared}
demo_config=$root/samples/ball_detector_config.txt
lpd_config=$shared/fixtures/real-etlt/lpdnet_usa_pruned_v1.0/lpd_us_config.txt

# Turns `gst-launch-1.0 -m` output into readable lines: taoinfer's engine progress ("engine: ...")
# and one line per inferred frame from its element messages (post-messages=true):
# "frame N: label confidence at x,y wxh; ...".
detections() {
  sed -n \
    -e 's/^Progress: (engine) \(.*\)/engine: \1/p' \
    -e 's/.*(element): taoinfer, frame=(guint64)\([0-9]*\),.* summary=(string)\(.*\), tensors=.*/frame \1: \2/p' |
    sed -e 's/\\//g' -e 's/: "\(.*\)"$/: \1/' -e 's/^\(frame [0-9]*\): $/\1: (nothing)/'
}
