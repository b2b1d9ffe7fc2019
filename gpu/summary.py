#!/usr/bin/env python3
"""Tables from the `RESULT` lines of gpu/run_all.sh's log: correctness and build/load times of our
engines, and throughput against PyTorch with ratios and TFLOP/s.

Usage: summary.py LOG
"""

import re
import shlex
import sys


def fields(line):
    out = {}
    for tok in shlex.split(line):
        if "=" in tok:
            k, v = tok.split("=", 1)
            out[k] = v
    return out


def main():
    lines = [l.strip() for l in open(sys.argv[1], errors="replace") if l.startswith("RESULT ")]
    ours, bench, torch, peak, int8 = [], {}, {}, None, []
    for l in lines:
        parts = l.split()
        f = fields(l)
        if parts[1] == "peak":
            peak = float(f["fp16_matmul_tflops"])
        elif parts[1] == "torch":
            name = parts[2]
            if "batch" in f:
                # Eager / CUDA-graph line and torch.compile line of one batch merge; best of all.
                t = torch.setdefault((name, int(f["batch"])), {})
                t.update(f)
                times = [float(t[k]) for k in ("eager_ms", "graph_ms", "compiled_ms") if k in t]
                t["best_ms"] = f"{min(times):.4f}" if times else "-"
                t["img_s"] = f"{int(f['batch']) / min(times) * 1e3:.1f}" if times else None
            elif "compile_timeout_s" in f:
                torch[(name, "timeout")] = f
            else:
                torch[(name, "check")] = f
        elif len(parts) > 2 and parts[2] == "int8probe":
            if "convs_fp16_ms" in f:
                int8.append((parts[1], f))
        elif len(parts) > 3 and parts[3] == "bench":
            bench[(parts[1], parts[2], int(f["batch"]))] = f
        else:
            ours.append((parts[1], parts[2] if len(parts) > 2 else "", f))

    print("correctness and times (our CUDA engine vs the CPU backend)")
    print(f"{'model':22} {'prec':5} {'max rel err':>11} {'build s':>8} {'cached load ms':>14} {'first run ms':>12}  graphs")
    for name, prec, f in ours:
        if "max_rel_err" in f:
            print(f"{name:22} {prec:5} {f['max_rel_err']:>11} {f['build_s']:>8} {f['cached_load_ms']:>14} "
                  f"{f['first_run_ms']:>12}  {f['graphs']}")
        else:
            print(f"{name:22} {prec:5} " + " ".join(f"{k}={v}" for k, v in f.items()))
    for (name, kind), f in torch.items():
        if kind == "check":
            print(f"torch module {name}: FP32 vs ONNX Runtime rel err {f['fp32_vs_onnxruntime_rel_err']}")
        elif kind == "timeout":
            print(f"torch.compile max-autotune {name}: stopped at the {f['compile_timeout_s']} s limit")
        elif "compile_error" in f:
            print(f"torch.compile max-autotune {name} batch {kind}: {f['compile_error']}")
        elif "compile_s" in f:
            print(f"torch.compile max-autotune {name} batch {kind}: compiled in {f['compile_s']} s")

    print()
    print("throughput, FP16 (ours: CUDA-graph replay, input on the GPU; e2e: host f32 in/out)")
    print("torch: best of eager, CUDA-graph replay and torch.compile max-autotune (columns e/g/c, ms)")
    print(f"{'model':22} {'batch':>5} {'ours img/s':>10} {'ours ms':>9} {'torch img/s':>11} {'torch ms':>9} "
          f"{'ratio':>6} {'e2e img/s':>9} {'TFLOP/s':>8} {'% peak':>6}  torch e/g/c ms")
    for (name, prec, b), f in sorted(bench.items()):
        t = torch.get((name, b))
        ours_ips = float(f["img_s"])
        tips = float(t["img_s"]) if t and t.get("img_s") else None
        ratio = f"{ours_ips / tips:.2f}" if tips else "-"
        tf = float(f["tflops"])
        pk = f"{100 * tf / peak:.0f}" if peak else "-"
        print(f"{name:22} {b:>5} {ours_ips:>10.1f} {float(f['device_ms']):>9.3f} "
              f"{(f'{tips:.1f}' if tips else '-'):>11} {(t['best_ms'] if t else '-'):>9} {ratio:>6} "
              f"{float(f['e2e_img_s']):>9.1f} {tf:>8.1f} {pk:>6}  "
              + ("/".join(t.get(k, "-") for k in ("eager_ms", "graph_ms", "compiled_ms")) if t else "-"))
    if peak:
        print(f"dense FP16 matmul (torch, 8192^3): {peak:.1f} TFLOP/s")
    if int8:
        print()
        print("cuDNN convolutions alone, best algorithm per shape, summed over the network (batch 64)")
        for name, f in int8:
            print(f"{name:22} FP16 {f['convs_fp16_ms']} ms  INT8 {f['convs_int8_ms']} ms  "
                  f"all shapes ran: {f['all_shapes_ran']}")


if __name__ == "__main__":
    main()
