#!/usr/bin/env python3
"""Times an ONNX model with ONNX Runtime's CPU provider (the project's speed peer).

Usage: ort_time.py MODEL.onnx [--threads 2] [--batch 1] [--runs 10] [--warmup 2]
Prints one line per run and a final line: `median_ms=<x> min_ms=<y> runs=<n> threads=<t>`.
Dynamic dimensions other than the batch must not occur; every input is filled with seeded uniform
values in [0, 1).
"""

import argparse
import time

import numpy as np
import onnxruntime as ort


def main():
    p = argparse.ArgumentParser()
    p.add_argument("model")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--runs", type=int, default=10)
    p.add_argument("--warmup", type=int, default=2)
    args = p.parse_args()

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = args.threads
    opts.inter_op_num_threads = 1
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    sess = ort.InferenceSession(args.model, opts, providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    feeds = {}
    for inp in sess.get_inputs():
        shape = [args.batch if not isinstance(d, int) else d for d in inp.shape]
        feeds[inp.name] = rng.uniform(0.0, 1.0, shape).astype(np.float32)
    for _ in range(args.warmup):
        sess.run(None, feeds)
    times = []
    for i in range(args.runs):
        t0 = time.perf_counter()
        sess.run(None, feeds)
        times.append((time.perf_counter() - t0) * 1000.0)
        print(f"run {i}: {times[-1]:.2f} ms", flush=True)
    print(f"median_ms={np.median(times):.3f} min_ms={min(times):.3f} runs={args.runs} threads={args.threads}")


if __name__ == "__main__":
    main()
