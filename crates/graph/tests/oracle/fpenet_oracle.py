"""ONNX Runtime outputs of the decrypted FPENet model on a real face crop and on random inputs.

usage: fpenet_oracle.py MODEL.onnx SHARED_DIR OUT_DIR

The face crop: the first face box of 2008_002506.jpg in dlib's testing_with_face_landmarks.xml,
expanded to a square 1.2 times the box, converted to 8-bit gray and resized to 80x80 (bilinear); the
network takes raw 0..255 pixel values (its nvinfer config has net-scale-factor=1, offsets 0).
Writes <case>.input.npy, <case>.out<k>.npy and manifest.txt ("case output_index output_name").
"""

import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import onnxruntime as ort
from PIL import Image


def face_crop(shared: Path) -> np.ndarray:
    faces = shared / "fixtures/media/images/faces"
    root = ET.parse(faces / "testing_with_face_landmarks.xml").getroot()
    image = next(i for i in root.iter("image") if i.get("file") == "2008_002506.jpg")
    box = image.find("box")
    top, left = int(box.get("top")), int(box.get("left"))
    width, height = int(box.get("width")), int(box.get("height"))
    side = 1.2 * max(width, height)
    cx, cy = left + width / 2, top + height / 2
    region = (round(cx - side / 2), round(cy - side / 2), round(cx + side / 2), round(cy + side / 2))
    gray = Image.open(faces / "2008_002506.jpg").convert("L").crop(region).resize((80, 80), Image.BILINEAR)
    return np.asarray(gray, dtype=np.float32).reshape(1, 1, 80, 80)


def main() -> None:
    model, shared, out = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])
    session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    input_name = session.get_inputs()[0].name
    rng = np.random.default_rng(20240611)
    cases = {
        "face": face_crop(shared),
        "random": rng.uniform(0.0, 255.0, size=(2, 1, 80, 80)).astype(np.float32),
    }
    lines = []
    for case, x in cases.items():
        np.save(out / f"{case}.input.npy", x)
        names = [o.name for o in session.get_outputs()]
        for k, (name, y) in enumerate(zip(names, session.run(None, {input_name: x}))):
            np.save(out / f"{case}.out{k}.npy", y)
            lines.append(f"{case} {k} {name}")
    (out / "manifest.txt").write_text("\n".join(lines) + "\n")
    print(f"onnxruntime {ort.__version__}: {len(cases)} cases, input {input_name}")


if __name__ == "__main__":
    main()
