"""Checks and runs models exported by the Rust side.

usage: run_exported.py OUT_DIR MODEL_FILE_NAME

For every case directory of OUT_DIR/manifest.txt (written by op_models.py) that holds MODEL_FILE_NAME:
onnx.checker.check_model(full_check=True), then ONNX Runtime on the case's inputs; outputs go to
<MODEL_FILE_NAME stem>.out<k>.npy in the manifest's output order. A failure is written to
<MODEL_FILE_NAME stem>.error.txt and the other cases go on.
"""

import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort


def cases(manifest):
    current = None
    for line in manifest.read_text().splitlines():
        kind, *rest = line.split(" ")
        if kind == "case":
            current = {"name": rest[0], "inputs": [], "outputs": []}
            yield current
        elif kind == "input":
            current["inputs"].append((" ".join(rest[:-1]), rest[-1]))
        elif kind == "output":
            current["outputs"].append((" ".join(rest[:-1]), rest[-1]))


def main():
    root, file_name = Path(sys.argv[1]), sys.argv[2]
    stem = Path(file_name).stem
    ran = 0
    for c in list(cases(root / "manifest.txt")):
        d = root / c["name"]
        path = d / file_name
        if not path.exists():
            continue
        try:
            model = onnx.load(path)
            onnx.checker.check_model(model, full_check=True)
            session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
            feeds = {name: np.load(d / f) for name, f in c["inputs"]}
            names = [name for name, _ in c["outputs"]]
            for k, value in enumerate(session.run(names, feeds)):
                np.save(d / f"{stem}.out{k}.npy", value)
            ran += 1
        except Exception as e:  # reported per case by the Rust test
            (d / f"{stem}.error.txt").write_text(f"{type(e).__name__}: {e}")
    print(f"checked and ran {ran} exported models")


if __name__ == "__main__":
    main()
