#!/usr/bin/env bash
# FP32 CPU engine vs ONNX Runtime and tract on the three benchmark models, batch 1 and 8, 2 threads,
# all in one run (BENCHMARKS.md). Needs ../shared for the real models.
set -euo pipefail
cd "$(dirname "$0")/.."
shared=${TAO_SHARED_DIR:-../shared}
runs=${RUNS:-10}

(cd peers/tract && cargo build --release --quiet)
cargo build --release --quiet -p tao-engine --example cpu_bench
mkdir -p target/models
[ -f target/models/detectnet_v2_resnet18.onnx ] ||
  .venv/bin/python models/gen_detectnet_v2.py target/models/detectnet_v2_resnet18.onnx --arch resnet18 >/dev/null
bench=target/release/examples/cpu_bench
echo "machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(nproc) cores; load: $(cut -d' ' -f1-3 /proc/loadavg); $(date -u +%F)"
"$bench" "$shared/fixtures/real-etlt/lpdnet_usa_pruned_v1.0/usa_pruned.etlt" --key nvidia_tlt --batch 1,8 --runs "$runs"
"$bench" "$shared/fixtures/real-etlt/fpenet_deployable_v3.0/faciallandmarks.etlt" --key nvidia_tlt --batch 1,8 --runs "$runs"
"$bench" target/models/detectnet_v2_resnet18.onnx --batch 1,8 --runs "$runs"
