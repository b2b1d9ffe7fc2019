#!/usr/bin/env python3
"""Exports a DetectNet_v2 ONNX model's convolutions with BatchNorm folded in, plus an ONNX Runtime
reference run, for end-to-end checks of the CPU kernels (crates/kernels/examples/conv_bench.rs).

Usage: export_folded.py MODEL.onnx OUT_DIR [--seed S]

Writes into OUT_DIR:
  weights.bin   little-endian f32: for every Conv, its folded weights [out][in][kh][kw] then bias [out]
  weights.txt   one line per Conv: `<name> <out> <in> <kh> <kw> <weight offset> <bias offset>`
                (offsets in floats into weights.bin); the name is the Conv node's name
  input.bin     the input image, f32 NCHW [1,3,H,W], seeded uniform [0, 1)
  output_cov.bin, output_bbox.bin   ONNX Runtime's outputs for input.bin, f32 NCHW
Folding: for Conv -> BatchNormalization, W' = W * s, b' = (b - mean) * s + beta with
s = gamma / sqrt(var + eps), computed in float64 and rounded once.
"""

import argparse
import os

import numpy as np
import onnx
import onnxruntime as ort
from onnx import numpy_helper


def main():
    p = argparse.ArgumentParser()
    p.add_argument("model")
    p.add_argument("out_dir")
    p.add_argument("--seed", type=int, default=7)
    args = p.parse_args()

    model = onnx.load(args.model)
    inits = {t.name: numpy_helper.to_array(t).astype(np.float64) for t in model.graph.initializer}
    consumers = {}
    for node in model.graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)

    os.makedirs(args.out_dir, exist_ok=True)
    blob = []
    offset = 0
    lines = []
    for node in model.graph.node:
        if node.op_type != "Conv":
            continue
        w = inits[node.input[1]]
        b = inits[node.input[2]] if len(node.input) > 2 else np.zeros(w.shape[0])
        users = consumers.get(node.output[0], [])
        if len(users) == 1 and users[0].op_type == "BatchNormalization":
            bn = users[0]
            gamma, beta, mean, var = (inits[n] for n in bn.input[1:5])
            eps = next((a.f for a in bn.attribute if a.name == "epsilon"), 1e-5)
            scale = gamma / np.sqrt(var + eps)
            w = w * scale[:, None, None, None]
            b = (b - mean) * scale + beta
        w32 = w.astype(np.float32).ravel()
        b32 = b.astype(np.float32)
        cout, cin, kh, kw = w.shape
        lines.append(f"{node.name} {cout} {cin} {kh} {kw} {offset} {offset + w32.size}")
        blob += [w32, b32]
        offset += w32.size + b32.size
    np.concatenate(blob).astype("<f4").tofile(os.path.join(args.out_dir, "weights.bin"))
    with open(os.path.join(args.out_dir, "weights.txt"), "w") as f:
        f.write("\n".join(lines) + "\n")

    shape = [d.dim_value or 1 for d in model.graph.input[0].type.tensor_type.shape.dim]
    x = np.random.default_rng(args.seed).uniform(0.0, 1.0, shape).astype(np.float32)
    x.astype("<f4").tofile(os.path.join(args.out_dir, "input.bin"))
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    sess = ort.InferenceSession(args.model, opts, providers=["CPUExecutionProvider"])
    cov, bbox = sess.run(["output_cov/Sigmoid", "output_bbox/BiasAdd"], {model.graph.input[0].name: x})
    cov.astype("<f4").tofile(os.path.join(args.out_dir, "output_cov.bin"))
    bbox.astype("<f4").tofile(os.path.join(args.out_dir, "output_bbox.bin"))
    print(f"exported {len(lines)} folded convolutions and an ONNX Runtime reference to {args.out_dir}")


if __name__ == "__main__":
    main()
