"""Checks an ONNX model with onnx.checker and runs it in ONNX Runtime (CPU).

usage: onnxruntime_run.py MODEL.onnx INPUT_NAME INPUT.npy OUT_DIR

Writes OUT_DIR/out<k>.npy for each model output and OUT_DIR/outputs.txt ("k name" per line).
"""

import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort


def main() -> None:
    model, input_name, input_path, out = sys.argv[1], sys.argv[2], Path(sys.argv[3]), Path(sys.argv[4])
    onnx.checker.check_model(onnx.load(model), full_check=True)
    session = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
    x = np.load(input_path)
    names = [o.name for o in session.get_outputs()]
    lines = []
    for k, (name, y) in enumerate(zip(names, session.run(None, {input_name: x}))):
        np.save(out / f"out{k}.npy", y)
        lines.append(f"{k} {name}")
        print(f"{name}: shape {list(y.shape)}, max {float(np.abs(y).max()):.4f}")
    (out / "outputs.txt").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
