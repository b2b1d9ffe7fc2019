#!/usr/bin/env python3
"""Times single convolution layers with ONNX Runtime (the peer of examples/conv_bench.rs).

Reads a JSON object from stdin:
  {"threads": 2, "runs": 15, "layers": [{"name": ..., "cin": ..., "cout": ..., "kernel": k,
   "stride": s, "pad": p, "h": H, "w": W, "act": "relu"|"relu6"|"sigmoid"|"none", "residual": bool}, ...]}
For each layer it builds a one-convolution ONNX model (Conv with bias, then Add of a residual input
when asked, then the activation, so ONNX Runtime can fuse them as it does in a whole network),
runs it with intra_op_num_threads=threads and graph optimisation level ALL, and prints
`<name> <median milliseconds>` per layer. With "model": path it also times that whole model and
prints `__model__ <median ms>`. With "cpu": true the times are process CPU time divided by the
thread count, with thread spinning turned off so that idle waiting is not counted as work.
"""

import json
import sys
import time

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper


def session(model_bytes, threads, cpu):
    opts = ort.SessionOptions()
    if cpu:
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(model_bytes, opts, providers=["CPUExecutionProvider"])


def conv_model(layer, rng):
    cin, cout, k, s, p = layer["cin"], layer["cout"], layer["kernel"], layer["stride"], layer["pad"]
    h, w = layer["h"], layer["w"]
    oh, ow = (h + 2 * p - k) // s + 1, (w + 2 * p - k) // s + 1
    weights = (rng.standard_normal((cout, cin, k, k)) * np.sqrt(2.0 / (cin * k * k))).astype(np.float32)
    bias = (rng.standard_normal(cout) * 0.1).astype(np.float32)
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, cin, h, w])]
    nodes = [
        helper.make_node("Conv", ["x", "W", "B"], ["conv"], kernel_shape=[k, k], strides=[s, s],
                         pads=[p, p, p, p])
    ]
    last = "conv"
    feeds = {"x": rng.uniform(0, 1, (1, cin, h, w)).astype(np.float32)}
    if layer["residual"]:
        inputs.append(helper.make_tensor_value_info("r", TensorProto.FLOAT, [1, cout, oh, ow]))
        nodes.append(helper.make_node("Add", [last, "r"], ["sum"]))
        last = "sum"
        feeds["r"] = rng.uniform(0, 1, (1, cout, oh, ow)).astype(np.float32)
    act = layer["act"]
    inits = [numpy_helper.from_array(weights, "W"), numpy_helper.from_array(bias, "B")]
    if act == "relu6":
        inits += [
            numpy_helper.from_array(np.array(0.0, dtype=np.float32), "lo"),
            numpy_helper.from_array(np.array(6.0, dtype=np.float32), "hi"),
        ]
    if act == "relu":
        nodes.append(helper.make_node("Relu", [last], ["y"]))
    elif act == "relu6":
        nodes.append(helper.make_node("Clip", [last, "lo", "hi"], ["y"]))
    elif act == "sigmoid":
        nodes.append(helper.make_node("Sigmoid", [last], ["y"]))
    else:
        nodes.append(helper.make_node("Identity", [last], ["y"]))
    graph = helper.make_graph(
        nodes,
        layer["name"],
        inputs,
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, cout, oh, ow])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    return model.SerializeToString(), feeds


def median_ms(sess, feeds, runs, cpu, threads):
    clock = time.process_time if cpu else time.perf_counter
    scale = 1000.0 / threads if cpu else 1000.0
    for _ in range(3):
        sess.run(None, feeds)
    times = []
    for _ in range(runs):
        t0 = clock()
        sess.run(None, feeds)
        times.append((clock() - t0) * scale)
    return float(np.median(times))


def main():
    request = json.load(sys.stdin)
    threads, runs, cpu = request["threads"], request["runs"], request.get("cpu", False)
    rng = np.random.default_rng(0)
    for layer in request["layers"]:
        model, feeds = conv_model(layer, rng)
        ms = median_ms(session(model, threads, cpu), feeds, runs, cpu, threads)
        print(f"{layer['name']} {ms:.4f}", flush=True)
    if request.get("model"):
        sess = session(onnx.load(request["model"]).SerializeToString(), threads, cpu)
        feeds = {}
        for inp in sess.get_inputs():
            shape = [1 if not isinstance(d, int) else d for d in inp.shape]
            feeds[inp.name] = rng.uniform(0, 1, shape).astype(np.float32)
        print(f"__model__ {median_ms(sess, feeds, max(5, runs // 2), cpu, threads):.4f}", flush=True)


if __name__ == "__main__":
    main()
