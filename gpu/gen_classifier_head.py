#!/usr/bin/env python3
"""A small seeded classifier head as ONNX, for checking the CUDA backend's cuBLASLt matmuls against
the CPU backend: input [N, 256, 8, 8] -> GlobalAveragePool -> Flatten -> Gemm (256 -> 512, B
transposed, bias) -> Relu -> Gemm (512 -> 1000, bias) -> Softmax.

Usage: gen_classifier_head.py OUT.onnx
"""

import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def main():
    rng = np.random.default_rng(2024)
    w1 = (rng.standard_normal((512, 256)) / 16).astype(np.float32)
    b1 = (rng.standard_normal(512) / 4).astype(np.float32)
    w2 = (rng.standard_normal((512, 1000)) / 22).astype(np.float32)
    b2 = (rng.standard_normal(1000) / 4).astype(np.float32)
    nodes = [
        helper.make_node("GlobalAveragePool", ["input"], ["pooled"], name="gap"),
        helper.make_node("Flatten", ["pooled"], ["flat"], name="flatten", axis=1),
        helper.make_node("Gemm", ["flat", "w1", "b1"], ["fc1"], name="fc1", transB=1),
        helper.make_node("Relu", ["fc1"], ["fc1_relu"], name="relu"),
        helper.make_node("Gemm", ["fc1_relu", "w2", "b2"], ["logits"], name="fc2"),
        helper.make_node("Softmax", ["logits"], ["probs"], name="softmax", axis=1),
    ]
    graph = helper.make_graph(
        nodes,
        "classifier_head",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 256, 8, 8])],
        [
            helper.make_tensor_value_info("probs", TensorProto.FLOAT, ["N", 1000]),
            helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 1000]),
        ],
        [numpy_helper.from_array(a, n) for a, n in [(w1, "w1"), (b1, "b1"), (w2, "w2"), (b2, "b2")]],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    onnx.checker.check_model(model)
    onnx.save(model, sys.argv[1])
    print(f"wrote {sys.argv[1]}: classifier head 256 -> 512 -> 1000, opset 13, seed 2024")


if __name__ == "__main__":
    main()
