#!/usr/bin/env bash
# The CUDA backend's proof on the GPU machine, in one run:
#   - outputs of real LPDNet and FPENet and generated DetectNet_v2-ResNet18/34 (3x544x960) from our
#     CUDA engines (FP32 and FP16) against the CPU backend on this machine's CPU;
#   - build time (tactic search included) and cached plan load time;
#   - FP16 throughput at batch 1, 8, 64 against PyTorch (same graph and weights: eager, CUDA-graph
#     replay and torch.compile max-autotune under a time limit) with ratios to the best;
#   - a generated classifier head (global pool, two Gemm as cuBLASLt matmuls, softmax), FP32/FP16;
#   - cuDNN's best FP16 and INT8 convolution times for DetectNet_v2's shapes (is there an INT8 path).
#
# Expects (made on the development machine, see gpu/README.md):
#   .device/gpu_check        release build of crates/backend-cuda/examples/gpu_check.rs
#   .device/models/*.etlt    the real LPDNet and FPENet models
# DetectNet_v2 models are generated here by models/gen_detectnet_v2.py.
# Everything goes to $OUT (run_all.log, summary.txt).
set -u -o pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
OUT=${OUT:-$ROOT/out}
mkdir -p "$OUT"
LOG=$OUT/run_all.log
exec > >(tee -a "$LOG") 2>&1
BIN=$ROOT/.device/gpu_check
MODELS=$ROOT/.device/models
GEN=/tmp/tao-models
mkdir -p "$GEN"
export PYTHONUNBUFFERED=1
START=$(date +%s)
phase() { echo; echo "== $* (t=$(( $(date +%s) - START ))s)"; }

phase machine
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.max.sm --format=csv
python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'cudnn', torch.backends.cudnn.version())"
nproc

# CUDA libraries: the toolkit's and the ones PyTorch's wheels bring (cuDNN lives there).
LIBS=$(python3 - <<'EOF'
import glob, os
want = ["libcudnn.so.9", "libnvrtc.so.13", "libnvrtc-builtins.so.13.0", "libcublas.so.13", "libcublasLt.so.13", "libcudart.so.13"]
roots = glob.glob("/usr/local/cuda*/lib64") + glob.glob("/usr/local/cuda*/targets/x86_64-linux/lib")
try:
    import nvidia
    roots += list(nvidia.__path__)
except Exception:
    pass
found = {}
for root in roots:
    for dirpath, _, files in os.walk(root):
        for w in want:
            if w in files and w not in found:
                found[w] = dirpath
dirs = []
for w in want:
    if w in found and found[w] not in dirs:
        dirs.append(found[w])
print(":".join(dirs))
EOF
)
echo "library dirs: $LIBS"
export LD_LIBRARY_PATH="$LIBS:${LD_LIBRARY_PATH:-}"
ls "$BIN" "$MODELS" || exit 1

phase generate DetectNet_v2 models
for arch in resnet18 resnet34; do
  [ -f "$GEN/detectnet_v2_$arch.onnx" ] || timeout 120 python3 "$ROOT/models/gen_detectnet_v2.py" \
      "$GEN/detectnet_v2_$arch.onnx" --arch "$arch" --no-verify | tail -1
done

check() {  # seconds, name, then gpu_check arguments
  local limit=$1 name=$2; shift 2
  phase "$name"
  timeout "$limit" "$BIN" "$@" --name "$name" || echo "RESULT $name exit=$?"
}

check 60 lpdnet "$MODELS/usa_pruned.etlt" --key nvidia_tlt --precisions fp32,fp16 --verify-batch 2
check 45 fpenet "$MODELS/faciallandmarks.etlt" --key nvidia_tlt --precisions fp32,fp16 --verify-batch 3
timeout 60 python3 "$ROOT/gpu/gen_classifier_head.py" "$GEN/classifier_head.onnx" | tail -1
check 45 classifier_head "$GEN/classifier_head.onnx" --precisions fp32,fp16 --verify-batch 4
# QUICK=1: the classifier head and ResNet18 only (a check after a small change).
if [ "${QUICK:-0}" = 1 ]; then
  check 140 detectnet_v2_resnet18 "$GEN/detectnet_v2_resnet18.onnx" --precisions fp32,fp16 \
      --verify-batch 2 --bench 1,64 --bench-precision fp16 --decode
  phase summary
  python3 "$ROOT/gpu/summary.py" "$LOG" | tee "$OUT/summary.txt"
  exit 0
fi
check 140 detectnet_v2_resnet18 "$GEN/detectnet_v2_resnet18.onnx" --precisions fp32,fp16 \
    --verify-batch 2 --bench 1,8,64 --bench-precision fp16 --profile --decode
check 140 detectnet_v2_resnet34 "$GEN/detectnet_v2_resnet34.onnx" --precisions fp32,fp16 \
    --verify-batch 2 --bench 1,8,64 --bench-precision fp16 --profile --decode

phase "INT8 on cuDNN"
# cuDNN's best FP16 and INT8 algorithms per convolution shape at batch 64, before building an INT8
# path on them.
for arch in resnet18 resnet34; do
  timeout 90 "$BIN" "$GEN/detectnet_v2_$arch.onnx" --name "detectnet_v2_$arch" --int8-probe 64 \
      || echo "RESULT detectnet_v2_$arch int8probe exit=$?"
done

phase pytorch
timeout 20 python3 "$ROOT/gpu/torch_bench.py" --peak || echo "RESULT peak exit=$?"
for arch in resnet18 resnet34; do
  timeout 70 python3 "$ROOT/gpu/torch_bench.py" "$GEN/detectnet_v2_$arch.onnx" \
      --name "detectnet_v2_$arch" --batches 1,8,64 || echo "RESULT torch detectnet_v2_$arch exit=$?"
done

phase "torch.compile max-autotune"
# Autotuning compiles and times many kernels per batch: each model gets COMPILE_LIMIT seconds,
# batch 64 first; what is not done by then is reported as stopped at the limit.
# Inductor's autotuning tables go to torch_compile.log beside this log.
COMPILE_LIMIT=${COMPILE_LIMIT:-170}
for arch in resnet18 resnet34; do
  timeout "$COMPILE_LIMIT" python3 "$ROOT/gpu/torch_bench.py" "$GEN/detectnet_v2_$arch.onnx" \
      --name "detectnet_v2_$arch" --batches 64,1,8 --compile 2>>"$OUT/torch_compile.log"
  rc=$?
  [ $rc -eq 124 ] && echo "RESULT torch detectnet_v2_$arch compile_timeout_s=$COMPILE_LIMIT"
  [ $rc -ne 0 ] && [ $rc -ne 124 ] && echo "RESULT torch detectnet_v2_$arch compile_exit=$rc"
done

phase summary
python3 "$ROOT/gpu/summary.py" "$LOG" | tee "$OUT/summary.txt"
