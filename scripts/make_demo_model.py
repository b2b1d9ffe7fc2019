"""Builds the demo detector shipped as samples/ball_detector.etlt: a DetectNet_v2-shaped ONNX model
whose weights are constructed (not trained) to find the white ball of `videotestsrc pattern=ball`
(radius 20 px on black) in 320x240 frames, then encrypts it with `taoctl encrypt`.

The network (input `input_1`, 3x240x320 BGR scaled by 1/255, as samples/ball_detector_config.txt says):
  bright = clip(1x1 conv: 3 * mean of the channels - 1, 0, 1) (responds to the ball's white: 1 for
                                                             white and light grey, 0 for dark grey)
  S      = 64x64 conv of bright, stride 16, pad 24, all ones (ball pixels in each grid cell's window)
  M      = 64x64 conv of bright, weights dx and dy           (their moments about the cell's anchor)
  output_cov/Sigmoid  = sigmoid(16 * S / (pi * 20^2) - 10.4) (~1 when the whole ball is in the window)
  output_bbox/BiasAdd = 1x1 conv of M / (S + eps)            (ball centre -> DetectNet_v2 box offsets)
The grid is 15x20 with stride 16; the anchor of cell (i, j) is (16 j + 0.5, 16 i + 0.5) and box
offsets are divided by 35, as the DetectNet_v2 decoder expects.

Run with the project's .venv python:
    .venv/bin/python scripts/make_demo_model.py [--taoctl PATH] [--onnx-only OUT.onnx]
The ONNX bytes are identical on every run; the .etlt differs only in its random nonce."""
import argparse
import os
import subprocess
import sys
import tempfile

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

HEIGHT, WIDTH = 240, 320
STRIDE, WINDOW, PAD = 16, 64, 24
BALL_RADIUS = 20.0
BOX_NORM = 35.0
KEY = "tao_demo_ball"
GAIN, BIAS = 16.0, 10.4


def build() -> onnx.ModelProto:
    # Dark backgrounds that are not quite black (limited-range 16/255) must not count, and a
    # limited-range white (235/255) counts fully.
    bright_w = np.full((1, 3, 1, 1), 1.0, dtype=np.float32)
    bright_b = np.array([-1.0], dtype=np.float32)
    zero = np.array(0.0, dtype=np.float32)
    one = np.array(1.0, dtype=np.float32)
    ones = np.ones((1, 1, WINDOW, WINDOW), dtype=np.float32)
    # Window tap k covers pixel x = 16 j - PAD + k, whose centre x + 0.5 lies k - PAD from the cell's
    # anchor 16 j + 0.5.
    offsets = np.arange(WINDOW, dtype=np.float32) - PAD
    moments = np.zeros((2, 1, WINDOW, WINDOW), dtype=np.float32)
    moments[0, 0] = offsets[np.newaxis, :]  # dx varies along columns
    moments[1, 0] = offsets[:, np.newaxis]  # dy varies along rows
    area = np.pi * BALL_RADIUS**2
    cov_w = np.full((1, 1, 1, 1), GAIN / area, dtype=np.float32)
    cov_b = np.array([-BIAS], dtype=np.float32)
    eps = np.array([1e-3], dtype=np.float32)
    # Box offsets from the ball centre (mx, my) relative to the anchor:
    # left = cx - o0*35 = cx + mx - R, so o0 = (R - mx)/35; likewise o1, and o2 = (mx + R)/35, o3.
    box_w = np.zeros((4, 2, 1, 1), dtype=np.float32)
    box_w[0, 0, 0, 0] = -1.0 / BOX_NORM
    box_w[1, 1, 0, 0] = -1.0 / BOX_NORM
    box_w[2, 0, 0, 0] = 1.0 / BOX_NORM
    box_w[3, 1, 0, 0] = 1.0 / BOX_NORM
    box_b = np.full(4, BALL_RADIUS / BOX_NORM, dtype=np.float32)

    window = dict(kernel_shape=[WINDOW, WINDOW], strides=[STRIDE, STRIDE], pads=[PAD] * 4)
    nodes = [
        helper.make_node("Conv", ["input_1", "bright_w", "bright_b"], ["bright_lin"], name="bright_lin"),
        helper.make_node("Clip", ["bright_lin", "zero", "one"], ["bright"], name="bright"),
        helper.make_node("Conv", ["bright", "ones"], ["ball_sum"], name="ball_sum", **window),
        helper.make_node("Conv", ["bright", "moments"], ["ball_moments"], name="ball_moments", **window),
        helper.make_node("Conv", ["ball_sum", "cov_w", "cov_b"], ["cov_logit"], name="cov_logit"),
        helper.make_node("Sigmoid", ["cov_logit"], ["output_cov/Sigmoid"], name="output_cov/Sigmoid"),
        helper.make_node("Add", ["ball_sum", "eps"], ["ball_sum_eps"], name="ball_sum_eps"),
        helper.make_node("Div", ["ball_moments", "ball_sum_eps"], ["ball_centre"], name="ball_centre"),
        helper.make_node(
            "Conv", ["ball_centre", "box_w", "box_b"], ["output_bbox/BiasAdd"], name="output_bbox/BiasAdd"
        ),
    ]
    grid_h = (HEIGHT + 2 * PAD - WINDOW) // STRIDE + 1
    grid_w = (WIDTH + 2 * PAD - WINDOW) // STRIDE + 1
    graph = helper.make_graph(
        nodes,
        "ball_detector",
        [helper.make_tensor_value_info("input_1", TensorProto.FLOAT, ["N", 3, HEIGHT, WIDTH])],
        [
            helper.make_tensor_value_info("output_cov/Sigmoid", TensorProto.FLOAT, ["N", 1, grid_h, grid_w]),
            helper.make_tensor_value_info("output_bbox/BiasAdd", TensorProto.FLOAT, ["N", 4, grid_h, grid_w]),
        ],
        [
            numpy_helper.from_array(bright_w, "bright_w"),
            numpy_helper.from_array(bright_b, "bright_b"),
            numpy_helper.from_array(zero, "zero"),
            numpy_helper.from_array(one, "one"),
            numpy_helper.from_array(ones, "ones"),
            numpy_helper.from_array(moments, "moments"),
            numpy_helper.from_array(cov_w, "cov_w"),
            numpy_helper.from_array(cov_b, "cov_b"),
            numpy_helper.from_array(eps, "eps"),
            numpy_helper.from_array(box_w, "box_w"),
            numpy_helper.from_array(box_b, "box_b"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], producer_name="tao-infer")
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def main() -> int:
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--taoctl", default=os.path.join(root, "target", "release", "taoctl"))
    parser.add_argument("--onnx-only", metavar="OUT", help="write the ONNX model here and stop")
    parser.add_argument("--output", default=os.path.join(root, "samples", "ball_detector.etlt"))
    args = parser.parse_args()
    model = build()
    if args.onnx_only:
        onnx.save(model, args.onnx_only)
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        onnx_path = os.path.join(tmp, "ball_detector.onnx")
        onnx.save(model, onnx_path)
        subprocess.run([args.taoctl, "encrypt", onnx_path, "--key", KEY, "-o", args.output], check=True)
    print(f"wrote {args.output} (key {KEY})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
