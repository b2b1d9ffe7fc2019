#!/usr/bin/env python3
"""PyTorch peer for the CUDA backend's bench: the same DetectNet_v2 graph and weights as the ONNX
file, built as a torch module (Conv2d, BatchNorm2d in eval mode, ReLU, Add, Sigmoid), run in FP16
channels_last with cudnn.benchmark, eager and replayed from a CUDA graph, at the given batches; with
--compile, torch.compile(mode="max-autotune") instead (run it under a time limit: autotuning can take
minutes per batch).

Before timing, the FP32 module's outputs are checked against ONNX Runtime on the CPU (same input),
so the architecture and weights are the model's. Also measures the dense FP16 matmul rate.

Usage: torch_bench.py MODEL.onnx --name NAME [--batches 1,8,64] [--compile]
Prints `RESULT torch ...` lines for gpu/summary.py.
"""

import argparse
import time

import numpy as np
import onnx
import torch
from onnx import numpy_helper


class OnnxNet(torch.nn.Module):
    """Executes the ONNX nodes in order; each Conv / BatchNormalization is a torch module."""

    def __init__(self, model):
        super().__init__()
        g = model.graph
        inits = {i.name: numpy_helper.to_array(i) for i in g.initializer}
        self.mods = torch.nn.ModuleDict()
        self.steps = []
        for idx, n in enumerate(g.node):
            a = {x.name: onnx.helper.get_attribute_value(x) for x in n.attribute}
            key = f"m{idx}"
            if n.op_type == "Conv":
                w = inits[n.input[1]]
                b = inits.get(n.input[2]) if len(n.input) > 2 and n.input[2] else None
                pads = list(a.get("pads", [0, 0, 0, 0]))
                assert pads[0] == pads[2] and pads[1] == pads[3], f"{n.name}: asymmetric pads"
                group = a.get("group", 1)
                conv = torch.nn.Conv2d(
                    w.shape[1] * group,
                    w.shape[0],
                    tuple(w.shape[2:]),
                    stride=tuple(a.get("strides", [1, 1])),
                    padding=(pads[0], pads[1]),
                    dilation=tuple(a.get("dilations", [1, 1])),
                    groups=group,
                    bias=b is not None,
                )
                conv.weight.data = torch.from_numpy(w.copy())
                if b is not None:
                    conv.bias.data = torch.from_numpy(b.copy())
                self.mods[key] = conv
                self.steps.append(("mod", key, [n.input[0]], n.output[0]))
            elif n.op_type == "BatchNormalization":
                scale, bias, mean, var = (inits[x] for x in n.input[1:5])
                bn = torch.nn.BatchNorm2d(scale.shape[0], eps=a.get("epsilon", 1e-5))
                bn.weight.data = torch.from_numpy(scale.copy())
                bn.bias.data = torch.from_numpy(bias.copy())
                bn.running_mean.data = torch.from_numpy(mean.copy())
                bn.running_var.data = torch.from_numpy(var.copy())
                self.mods[key] = bn
                self.steps.append(("mod", key, [n.input[0]], n.output[0]))
            elif n.op_type in ("Relu", "Sigmoid"):
                self.steps.append((n.op_type.lower(), None, [n.input[0]], n.output[0]))
            elif n.op_type == "Add":
                self.steps.append(("add", None, list(n.input), n.output[0]))
            else:
                raise SystemExit(f"{n.name}: op {n.op_type} is not in this bench's module")
        self.input_name = g.input[0].name
        self.output_names = [o.name for o in g.output]

    def forward(self, x):
        env = {self.input_name: x}
        for kind, key, ins, out in self.steps:
            if kind == "mod":
                env[out] = self.mods[key](env[ins[0]])
            elif kind == "relu":
                env[out] = torch.relu(env[ins[0]])
            elif kind == "sigmoid":
                env[out] = torch.sigmoid(env[ins[0]])
            else:
                env[out] = env[ins[0]] + env[ins[1]]
        return tuple(env[o] for o in self.output_names)


def time_ms(fn, iters, rounds=5):
    """Median over rounds of the mean time per call, by CUDA events, after a warm-up."""
    for _ in range(3):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(rounds):
        start = torch.cuda.Event(enable_timing=True)
        end = torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(iters):
            fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end) / iters)
    return float(np.median(times))


def check_against_ort(model_path, net, shape):
    import onnxruntime as ort

    x = np.random.default_rng(0).random((1, *shape), dtype=np.float32)
    sess = ort.InferenceSession(model_path, providers=["CPUExecutionProvider"])
    want = sess.run(None, {net.input_name: x})
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False
    with torch.inference_mode():
        got = net.float().cuda().eval()(torch.from_numpy(x).cuda())
    worst = 0.0
    for w, g in zip(want, got):
        g = g.float().cpu().numpy()
        worst = max(worst, float(np.abs(g - w).max() / max(np.abs(w).max(), 1e-6)))
    torch.backends.cudnn.allow_tf32 = True
    return worst


def main():
    p = argparse.ArgumentParser()
    p.add_argument("model")
    p.add_argument("--name", default="model")
    p.add_argument("--batches", default="1,8,64")
    p.add_argument("--compile", action="store_true",
                   help="only torch.compile(mode='max-autotune'), batch by batch")
    args = p.parse_args()
    if args.compile:
        compiled_bench(args)
        return

    print(f"torch {torch.__version__} cuda {torch.version.cuda} cudnn {torch.backends.cudnn.version()}"
          f" device {torch.cuda.get_device_name()}", flush=True)
    model = onnx.load(args.model)
    # Inference: BatchNorm uses its running statistics.
    net = OnnxNet(model).eval()
    dims = [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim[1:]]
    t = time.time()
    err = check_against_ort(args.model, net, dims)
    print(f"RESULT torch {args.name} fp32_vs_onnxruntime_rel_err={err:.3e} ({time.time() - t:.1f} s)", flush=True)

    torch.backends.cudnn.benchmark = True
    net = net.half().to(memory_format=torch.channels_last).cuda().eval()
    for b in [int(x) for x in args.batches.split(",")]:
        x = torch.rand((b, *dims), device="cuda", dtype=torch.float16).contiguous(
            memory_format=torch.channels_last)
        iters = 10 if b >= 32 else 50
        with torch.inference_mode():
            eager = time_ms(lambda: net(x), iters)
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):
                for _ in range(3):
                    net(x)
            torch.cuda.current_stream().wait_stream(side)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                net(x)
            replay = time_ms(graph.replay, iters)
            best = min(eager, replay)
            line = (f"RESULT torch {args.name} bench batch={b} eager_ms={eager:.4f} graph_ms={replay:.4f}"
                    f" best_ms={best:.4f} img_s={b / best * 1e3:.1f}")
            print(line, flush=True)
        del x
        torch.cuda.empty_cache()


def compiled_bench(args):
    """torch.compile(mode="max-autotune") of the FP16 channels_last module, compiled afresh for each
    batch (static shapes; max-autotune replays CUDA graphs itself). Each batch prints its line as
    soon as it is timed, so a run stopped by the caller's time limit keeps the batches done."""
    import torch._dynamo

    model = onnx.load(args.model)
    dims = [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim[1:]]
    torch.backends.cudnn.benchmark = True
    net = OnnxNet(model).eval().half().to(memory_format=torch.channels_last).cuda()
    for b in [int(x) for x in args.batches.split(",")]:
        torch._dynamo.reset()
        x = torch.rand((b, *dims), device="cuda", dtype=torch.float16).contiguous(
            memory_format=torch.channels_last)
        iters = 10 if b >= 32 else 50
        with torch.inference_mode():
            t = time.time()
            try:
                compiled = torch.compile(net, mode="max-autotune", dynamic=False)
                compiled(x)
                torch.cuda.synchronize()
                took = time.time() - t
                ms = time_ms(lambda: compiled(x), iters)
                print(f"RESULT torch {args.name} compiled batch={b} compile_s={took:.1f} compiled_ms={ms:.4f}",
                      flush=True)
            except Exception as e:  # noqa: BLE001 - reported, not fatal
                print(f"RESULT torch {args.name} compiled batch={b} compile_error={type(e).__name__}",
                      flush=True)
        del x
        torch.cuda.empty_cache()


def matmul_peak():
    n = 8192
    a = torch.randn(n, n, device="cuda", dtype=torch.float16)
    b = torch.randn(n, n, device="cuda", dtype=torch.float16)
    ms = time_ms(lambda: a @ b, 10)
    print(f"RESULT peak fp16_matmul_tflops={2 * n ** 3 / (ms * 1e-3) / 1e12:.1f}", flush=True)


if __name__ == "__main__":
    import sys

    if len(sys.argv) > 1 and sys.argv[1] == "--peak":
        matmul_peak()
    else:
        main()
