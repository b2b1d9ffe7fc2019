"""Builds the small ONNX model bundled as samples/demo.onnx (a 3x3 conv, ReLU and global average pool
over a 3x32x32 input, seeded weights). Run with the project's .venv python; the .etlt beside it is made
from this file by `taoctl encrypt` (see scripts/demo.sh)."""
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

rng = np.random.default_rng(20261125)
weights = rng.standard_normal((8, 3, 3, 3)).astype(np.float32) * 0.2
bias = rng.standard_normal(8).astype(np.float32) * 0.1
graph = helper.make_graph(
    [
        helper.make_node("Conv", ["input", "w", "b"], ["conv"], name="conv", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["conv"], ["relu"], name="relu"),
        helper.make_node("GlobalAveragePool", ["relu"], ["features"], name="pool"),
    ],
    "demo",
    [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, 32, 32])],
    [helper.make_tensor_value_info("features", TensorProto.FLOAT, ["N", 8, 1, 1])],
    [numpy_helper.from_array(weights, "w"), numpy_helper.from_array(bias, "b")],
)
model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], producer_name="tao-infer")
model.ir_version = 8
onnx.checker.check_model(model)
onnx.save(model, sys.argv[1])
