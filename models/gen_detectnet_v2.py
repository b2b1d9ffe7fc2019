#!/usr/bin/env python3
"""Seeded DetectNet_v2 (ResNet18 / ResNet34 backbone) ONNX model in TAO's exported layout.

The graph follows what TAO exports for DetectNet_v2:
  input_1 [N,3,H,W] (dynamic batch N)
  -> conv1 7x7/2 (64 ch) -> BatchNormalization -> ReLU           (no max-pool)
  -> 4 stages of basic residual blocks, channels 64,128,256,512, strides 2,2,2,1
     (ResNet18: [2,2,2,2] blocks, ResNet34: [3,4,6,3]); a 1x1 projection shortcut
     (conv + BN) where the shape changes, identity otherwise
  -> output_cov/Sigmoid  = Sigmoid(Conv1x1 -> classes)        [N,classes,H/16,W/16]
  -> output_bbox/BiasAdd = Conv1x1 -> 4*classes               [N,4*classes,H/16,W/16]

BatchNormalization nodes stay unfused, as exported. Weights use He initialisation from a fixed seed.
BatchNorm statistics are data-dependent: a numpy forward pass over a seeded random image at a quarter
of the resolution measures each conv's per-channel mean and variance, which are then perturbed a little,
so activations stay in a realistic range through every block and the outputs are not degenerate.

After writing, the script checks the model with onnx.checker, runs it with ONNX Runtime, and compares
the result with an independent numpy forward pass at full resolution (unless --no-verify).

Usage: gen_detectnet_v2.py OUTPUT.onnx [--arch resnet18|resnet34] [--seed S] [--height H --width W]
                           [--classes C] [--activation relu|relu6] [--all-projections] [--no-verify]
"""

import argparse
import sys
import time

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

BLOCKS = {"resnet18": [2, 2, 2, 2], "resnet34": [3, 4, 6, 3]}
STAGE_CHANNELS = [64, 128, 256, 512]
STAGE_STRIDES = [2, 2, 2, 1]
BN_EPSILON = 1e-3  # Keras' default, which TAO keeps


def conv_nchw(x, w, stride, pad, bias=None):
    """Reference convolution for one image: x [C,H,W], w [K,C,kh,kw], symmetric padding."""
    c, h, wd = x.shape
    k, _, kh, kw = w.shape
    xp = np.pad(x, ((0, 0), (pad, pad), (pad, pad)))
    oh = (h + 2 * pad - kh) // stride + 1
    ow = (wd + 2 * pad - kw) // stride + 1
    win = np.lib.stride_tricks.sliding_window_view(xp, (kh, kw), axis=(1, 2))
    win = win[:, : (oh - 1) * stride + 1 : stride, : (ow - 1) * stride + 1 : stride]
    cols = win.transpose(1, 2, 0, 3, 4).reshape(oh * ow, c * kh * kw)
    out = cols @ w.reshape(k, -1).T
    if bias is not None:
        out = out + bias
    return out.T.reshape(k, oh, ow)


class Builder:
    """Accumulates nodes and initialisers while optionally running a numpy forward pass."""

    def __init__(self, rng, activation, calibrate):
        self.rng = rng
        self.activation = activation
        self.calibrate = calibrate
        self.nodes = []
        self.inits = []
        self.params = {}

    def init(self, name, array):
        array = np.ascontiguousarray(array, dtype=np.float32)
        self.inits.append(numpy_helper.from_array(array, name))
        self.params[name] = array
        return name

    def conv(self, name, x, x_val, cin, cout, k, stride, bias=False):
        fan_in = cin * k * k
        w = self.rng.standard_normal((cout, cin, k, k)) * np.sqrt(2.0 / fan_in)
        inputs = [x, self.init(f"{name}/kernel", w)]
        b = None
        if bias:
            b = self.rng.standard_normal(cout) * 0.1
            inputs.append(self.init(f"{name}/bias", b))
        pad = k // 2
        self.nodes.append(
            helper.make_node(
                "Conv",
                inputs,
                [f"{name}/BiasAdd" if bias else f"{name}/convolution"],
                name=name,
                kernel_shape=[k, k],
                strides=[stride, stride],
                pads=[pad, pad, pad, pad],
                dilations=[1, 1],
                group=1,
            )
        )
        y_val = None
        if x_val is not None:
            w32 = self.params[f"{name}/kernel"]
            b32 = self.params.get(f"{name}/bias")
            y_val = conv_nchw(x_val, w32, stride, pad, b32)
        return self.nodes[-1].output[0], y_val

    def batchnorm(self, name, x, x_val, channels):
        if self.calibrate and x_val is not None:
            mean = x_val.mean(axis=(1, 2))
            var = x_val.var(axis=(1, 2))
            # Perturb the measured statistics so they look like running averages, not batch stats.
            mean = mean + 0.05 * np.sqrt(var + BN_EPSILON) * self.rng.standard_normal(channels)
            var = var * self.rng.uniform(0.8, 1.25, channels)
        else:
            mean = self.rng.standard_normal(channels) * 0.1
            var = self.rng.uniform(0.5, 1.5, channels)
        gamma = self.rng.uniform(0.6, 1.4, channels)
        beta = self.rng.standard_normal(channels) * 0.2
        names = [
            self.init(f"{name}/gamma", gamma),
            self.init(f"{name}/beta", beta),
            self.init(f"{name}/moving_mean", mean),
            self.init(f"{name}/moving_variance", var),
        ]
        out = f"{name}/FusedBatchNormV3"
        self.nodes.append(
            helper.make_node("BatchNormalization", [x] + names, [out], name=name, epsilon=BN_EPSILON)
        )
        y_val = None
        if x_val is not None:
            p = [self.params[n][:, None, None] for n in names]
            y_val = (x_val - p[2]) / np.sqrt(p[3] + BN_EPSILON) * p[0] + p[1]
        return out, y_val

    def act(self, name, x, x_val):
        if self.activation == "relu":
            self.nodes.append(helper.make_node("Relu", [x], [f"{name}/Relu"], name=name))
            y_val = None if x_val is None else np.maximum(x_val, 0)
        else:
            lo = self.init(f"{name}/min", np.array(0.0))
            hi = self.init(f"{name}/max", np.array(6.0))
            self.nodes.append(helper.make_node("Clip", [x, lo, hi], [f"{name}/Relu6"], name=name))
            y_val = None if x_val is None else np.clip(x_val, 0, 6)
        return self.nodes[-1].output[0], y_val

    def add(self, name, a, b, a_val, b_val):
        self.nodes.append(helper.make_node("Add", [a, b], [f"{name}/add"], name=name))
        return self.nodes[-1].output[0], None if a_val is None else a_val + b_val


def build_network(b, arch, classes, all_projections, x_val):
    """Adds the whole network to the builder; returns the numpy outputs of the forward pass."""
    x, v = b.conv("conv1", "input_1", x_val, 3, 64, 7, 2)
    x, v = b.batchnorm("bn_conv1", x, v, 64)
    x, v = b.act("activation_1", x, v)
    cin = 64
    for stage, (blocks, cout, stride) in enumerate(zip(BLOCKS[arch], STAGE_CHANNELS, STAGE_STRIDES), 1):
        for block in range(blocks):
            tag = f"block_{stage}{chr(ord('a') + block)}"
            s = stride if block == 0 else 1
            y, yv = b.conv(f"{tag}_conv_1", x, v, cin, cout, 3, s)
            y, yv = b.batchnorm(f"{tag}_bn_1", y, yv, cout)
            y, yv = b.act(f"{tag}_relu_1", y, yv)
            y, yv = b.conv(f"{tag}_conv_2", y, yv, cout, cout, 3, 1)
            y, yv = b.batchnorm(f"{tag}_bn_2", y, yv, cout)
            if s != 1 or cin != cout or all_projections:
                sc, scv = b.conv(f"{tag}_conv_shortcut", x, v, cin, cout, 1, s)
                sc, scv = b.batchnorm(f"{tag}_bn_shortcut", sc, scv, cout)
            else:
                sc, scv = x, v
            y, yv = b.add(f"{tag}_add", y, sc, yv, scv)
            x, v = b.act(f"{tag}_relu", y, yv)
            cin = cout
    cov, cov_v = b.conv("output_cov", x, v, cin, classes, 1, 1, bias=True)
    b.nodes.append(helper.make_node("Sigmoid", [cov], ["output_cov/Sigmoid"], name="output_cov/Sigmoid"))
    bbox, bbox_v = b.conv("output_bbox", x, v, cin, 4 * classes, 1, 1, bias=True)
    assert bbox == "output_bbox/BiasAdd"
    if cov_v is None:
        return None
    return 1.0 / (1.0 + np.exp(-cov_v)), bbox_v


def make_model(args):
    rng = np.random.default_rng(args.seed)
    # Calibration pass: a seeded random image at a quarter of the resolution, values like a
    # normalised photo in [0, 1].
    calib_rng = np.random.default_rng(args.seed + 1)
    calib = calib_rng.uniform(0.0, 1.0, (3, args.height // 4, args.width // 4))
    builder = Builder(rng, args.activation, calibrate=True)
    build_network(builder, args.arch, args.classes, args.all_projections, calib)

    grid_h, grid_w = args.height // 16, args.width // 16
    graph = helper.make_graph(
        builder.nodes,
        f"detectnet_v2_{args.arch}",
        [helper.make_tensor_value_info("input_1", TensorProto.FLOAT, ["N", 3, args.height, args.width])],
        [
            helper.make_tensor_value_info(
                "output_cov/Sigmoid", TensorProto.FLOAT, ["N", args.classes, grid_h, grid_w]
            ),
            helper.make_tensor_value_info(
                "output_bbox/BiasAdd", TensorProto.FLOAT, ["N", 4 * args.classes, grid_h, grid_w]
            ),
        ],
        builder.inits,
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 13)], producer_name="tao-infer-models"
    )
    model.ir_version = 8
    return model, builder


def numpy_forward(builder, args, image):
    """Independent full-resolution forward pass with the model's own parameters."""
    replay = Builder(None, args.activation, calibrate=False)
    replay.params = builder.params

    # Reuse the already drawn parameters: the replay builder only reads params, never draws.
    class Frozen:
        def standard_normal(self, shape):
            return np.zeros(shape)

        def uniform(self, lo, hi, shape):
            return np.zeros(shape)

    replay.rng = Frozen()
    replay.init = lambda name, array: name
    cov, bbox = build_network(replay, args.arch, args.classes, args.all_projections, image)
    return cov, bbox


def verify(path, model, builder, args):
    import onnxruntime as ort

    onnx.checker.check_model(path)
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    sess = ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(args.seed + 2)
    batch = rng.uniform(0.0, 1.0, (2, 3, args.height, args.width)).astype(np.float32)
    t0 = time.perf_counter()
    cov, bbox = sess.run(["output_cov/Sigmoid", "output_bbox/BiasAdd"], {"input_1": batch})
    elapsed = time.perf_counter() - t0
    grid = (args.height // 16, args.width // 16)
    assert cov.shape == (2, args.classes) + grid, cov.shape
    assert bbox.shape == (2, 4 * args.classes) + grid, bbox.shape
    ref_cov, ref_bbox = numpy_forward(builder, args, batch[1].astype(np.float64))
    for name, got, ref in (("output_cov/Sigmoid", cov[1], ref_cov), ("output_bbox/BiasAdd", bbox[1], ref_bbox)):
        rel = np.abs(got - ref).max() / max(np.abs(ref).max(), 1e-30)
        print(f"  {name}: shape {got.shape}, mean {got.mean():.4f}, std {got.std():.4f}, "
              f"ORT vs numpy float64 max|diff|/max|ref| = {rel:.2e}")
        if not rel < 1e-4:
            sys.exit(f"verification failed: {name} differs from the numpy forward pass ({rel:.2e})")
        if not got.std() > 1e-3:
            sys.exit(f"verification failed: {name} is degenerate (std {got.std():.2e})")
    if not 0.02 < cov.mean() < 0.98:
        sys.exit(f"verification failed: output_cov/Sigmoid saturated (mean {cov.mean():.3f})")
    print(f"  ONNX Runtime batch-2 run: {elapsed * 1000:.0f} ms (first run, includes warm-up)")


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("output")
    p.add_argument("--arch", choices=sorted(BLOCKS), default="resnet18")
    p.add_argument("--seed", type=int, default=2024)
    p.add_argument("--height", type=int, default=544)
    p.add_argument("--width", type=int, default=960)
    p.add_argument("--classes", type=int, default=3)
    p.add_argument("--activation", choices=["relu", "relu6"], default="relu")
    p.add_argument("--all-projections", action="store_true", help="1x1 projection in every block")
    p.add_argument("--no-verify", action="store_true")
    args = p.parse_args()
    if args.height % 16 or args.width % 16:
        sys.exit("height and width must be multiples of 16")
    model, builder = make_model(args)
    onnx.save(model, args.output)
    n_conv = sum(1 for n in model.graph.node if n.op_type == "Conv")
    n_bn = sum(1 for n in model.graph.node if n.op_type == "BatchNormalization")
    print(f"wrote {args.output}: DetectNet_v2-{args.arch}, {n_conv} Conv, {n_bn} BatchNormalization, "
          f"input [N,3,{args.height},{args.width}], opset 13, seed {args.seed}")
    if not args.no_verify:
        verify(args.output, model, builder, args)
        print("  onnx.checker: ok; ONNX Runtime matches the numpy forward pass")


if __name__ == "__main__":
    main()
