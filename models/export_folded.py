#!/usr/bin/env python3
"""Exports an ONNX model's convolutions (BatchNorm folded in) and transposed convolutions, plus an
ONNX Runtime reference run, for end-to-end checks of the CPU kernels
(crates/kernels/examples/conv_bench.rs, crates/kernels/tests/detectnet_e2e.rs). Used with the
generated DetectNet_v2 models and with FPENet (decrypted from its .etlt with `taoctl decrypt`).

Usage: export_folded.py MODEL.onnx OUT_DIR [--seed S] [--ort-fold] [--image PHOTO [--bgr]]

--image feeds a photo instead of noise, preprocessed like DeepStream's nvinfer: stretched to the
input size, channels RGB (or BGR with --bgr, model-color-format=1), scaled by 1/255. Detection
heads only light up on real content; on noise their coverage output is nearly zero everywhere.

--ort-fold first lets ONNX Runtime's basic graph optimisations fold the model (constant folding and
Conv+Mul/Add fusion), for models whose BatchNorm is spelled out as arithmetic (UFF exports such as
LPDNet); the weights are then taken from the folded graph.

Writes into OUT_DIR:
  weights.bin   little-endian f32: for every Conv / ConvTranspose, its weights in ONNX order
                (Conv [out][in/g][kh][kw] folded, ConvTranspose [in][out/g][kh][kw]) then its bias
  weights.txt   one line per node: `<name> <d0> <d1> <d2> <d3> <weight offset> <bias offset> <bias len>`
                (the weight dims as stored; offsets in floats into weights.bin)
  input.bin     the input, f32 NCHW with batch 1, seeded uniform [0, 1)
  <output>.bin  ONNX Runtime's value of every graph output for input.bin, f32, named after the
                output with '/' and ':' replaced by '_' 
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
    p.add_argument("--ort-fold", action="store_true")
    p.add_argument("--image")
    p.add_argument("--bgr", action="store_true")
    args = p.parse_args()

    os.makedirs(args.out_dir, exist_ok=True)
    model_path = args.model
    if args.ort_fold:
        folded = os.path.join(args.out_dir, "ort_basic.onnx")
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
        opts.optimized_model_filepath = folded
        ort.InferenceSession(args.model, opts, providers=["CPUExecutionProvider"])
        model_path = folded
    model = onnx.load(model_path)
    inits = {t.name: numpy_helper.to_array(t).astype(np.float64) for t in model.graph.initializer}
    consumers = {}
    for node in model.graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)

    blob = []
    offset = 0
    lines = []
    for node in model.graph.node:
        if node.op_type not in ("Conv", "ConvTranspose"):
            continue
        w = inits[node.input[1]]
        group = next((a.i for a in node.attribute if a.name == "group"), 1)
        channels_out = w.shape[0] if node.op_type == "Conv" else w.shape[1] * group
        b = inits[node.input[2]] if len(node.input) > 2 and node.input[2] else np.zeros(channels_out)
        users = consumers.get(node.output[0], [])
        if node.op_type == "Conv" and len(users) == 1 and users[0].op_type == "BatchNormalization":
            bn = users[0]
            gamma, beta, mean, var = (inits[n] for n in bn.input[1:5])
            eps = next((a.f for a in bn.attribute if a.name == "epsilon"), 1e-5)
            scale = gamma / np.sqrt(var + eps)
            w = w * scale[:, None, None, None]
            b = (b - mean) * scale + beta
        w32 = w.astype(np.float32).ravel()
        b32 = b.astype(np.float32)
        d0, d1, kh, kw = w.shape
        lines.append(f"{node.name} {d0} {d1} {kh} {kw} {offset} {offset + w32.size} {b32.size}")
        blob += [w32, b32]
        offset += w32.size + b32.size
    np.concatenate(blob).astype("<f4").tofile(os.path.join(args.out_dir, "weights.bin"))
    with open(os.path.join(args.out_dir, "weights.txt"), "w") as f:
        f.write("\n".join(lines) + "\n")

    shape = [d.dim_value or 1 for d in model.graph.input[0].type.tensor_type.shape.dim]
    if args.image:
        from PIL import Image

        _, channels, height, width = shape
        img = Image.open(args.image).convert("RGB").resize((width, height), Image.BILINEAR)
        x = np.asarray(img, dtype=np.float32) / 255.0
        if args.bgr:
            x = x[:, :, ::-1]
        x = np.ascontiguousarray(x.transpose(2, 0, 1)[None, :channels])
    else:
        x = np.random.default_rng(args.seed).uniform(0.0, 1.0, shape).astype(np.float32)
    x.astype("<f4").tofile(os.path.join(args.out_dir, "input.bin"))
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    sess = ort.InferenceSession(args.model, opts, providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    for name, value in zip(names, sess.run(names, {model.graph.input[0].name: x})):
        file = name.replace("/", "_").replace(":", "_") + ".bin"
        np.asarray(value, dtype=np.float32).astype("<f4").tofile(os.path.join(args.out_dir, file))
    print(f"exported {len(lines)} convolutions and ONNX Runtime's outputs to {args.out_dir}")


if __name__ == "__main__":
    main()
