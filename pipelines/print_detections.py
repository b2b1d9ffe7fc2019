#!/usr/bin/env python3
"""Runs a taoinfer pipeline and prints, for every frame, what the application can read back:
the region-of-interest metas on the buffer (with their `detection` parameter structure), the
TaoTensors custom meta (raw output tensors), and the element messages on the bus.

Needs PyGObject with GStreamer's overrides (Debian: python3-gi python3-gst-1.0
gir1.2-gst-plugins-base-1.0) and the plugin on GST_PLUGIN_PATH (pipelines/env.sh sets it):

    source pipelines/env.sh && /usr/bin/python3 pipelines/print_detections.py [--source SPEC] [--config CFG]

SPEC is `ball` (videotestsrc pattern=ball, the default), a .jpg/.png photo or an .mp4 video.
"""
import argparse
import os
import struct
import sys
import threading

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstVideo", "1.0")
from gi.repository import GLib, Gst, GstVideo  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))



# The pad probe runs on the streaming thread and the bus handler on the main thread: write whole lines
# under one lock so their output never interleaves.
_print_lock = threading.Lock()


def say(line):
    with _print_lock:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()


def source_description(spec: str, frames: int) -> str:
    if spec == "ball":
        return (
            f"videotestsrc pattern=ball num-buffers={frames} "
            "! video/x-raw,format=RGB,width=320,height=240"
        )
    if spec.lower().endswith((".jpg", ".jpeg")):
        return f'filesrc location="{spec}" ! jpegdec ! videoconvert'
    if spec.lower().endswith(".png"):
        return f'filesrc location="{spec}" ! pngdec ! videoconvert'
    return (
        f'filesrc location="{spec}" ! qtdemux ! avdec_h264 ! identity eos-after={frames} '
        "! videoconvert"
    )


def read_objects(buffer: Gst.Buffer):
    """Every region-of-interest meta taoinfer attached (ids are 0, 1, ...)."""
    objects = []
    roi_id = 0
    while True:
        meta = GstVideo.buffer_get_video_region_of_interest_meta_id(buffer, roi_id)
        if meta is None:
            return objects
        param = meta.get_param("detection")
        objects.append(
            {
                "label": param.get_value("label") if param else GLib.quark_to_string(meta.roi_type),
                "class_id": param.get_value("class-id") if param else None,
                "confidence": param.get_value("confidence") if param else None,
                "box": (meta.x, meta.y, meta.w, meta.h),
            }
        )
        roi_id += 1


def read_tensors(buffer: Gst.Buffer):
    """The TaoTensors custom meta: (name, dims, float32 values) per output tensor."""
    meta = buffer.get_custom_meta("TaoTensors")
    if meta is None:
        return []
    tensors = []
    for tensor in meta.get_structure().get_value("tensors"):
        data = tensor.get_value("data").get_data()
        values = struct.unpack(f"<{len(data) // 4}f", data)
        tensors.append((tensor.get_value("name"), list(tensor.get_value("dims")), values))
    return tensors


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", default="ball")
    parser.add_argument("--config", default=os.path.join(ROOT, "samples", "ball_detector_config.txt"))
    parser.add_argument("--frames", type=int, default=10)
    args = parser.parse_args()

    Gst.init(None)
    pipeline = Gst.parse_launch(
        f"{source_description(args.source, args.frames)} "
        f'! taoinfer name=infer config-file="{args.config}" output-tensor-meta=true post-messages=true '
        "! fakesink"
    )
    frame = 0

    def on_buffer(_pad, info):
        nonlocal frame
        buffer = info.get_buffer()
        objects = read_objects(buffer)
        tensors = read_tensors(buffer)
        shapes = ", ".join(f"{name} {dims} max {max(values):.3f}" for name, dims, values in tensors)
        say(f"frame {frame}: {len(objects)} object(s); tensors: {shapes or 'none'}")
        for o in objects:
            x, y, w, h = o["box"]
            say(f"  meta: {o['label']} (class {o['class_id']}) {o['confidence']:.3f} at {x},{y} {w}x{h}")
        frame += 1
        return Gst.PadProbeReturn.OK

    pipeline.get_by_name("infer").get_static_pad("src").add_probe(Gst.PadProbeType.BUFFER, on_buffer)
    bus = pipeline.get_bus()
    pipeline.set_state(Gst.State.PLAYING)
    status = 0
    while True:
        msg = bus.timed_pop_filtered(
            Gst.CLOCK_TIME_NONE,
            Gst.MessageType.EOS | Gst.MessageType.ERROR | Gst.MessageType.ELEMENT | Gst.MessageType.PROGRESS,
        )
        if msg.type == Gst.MessageType.EOS:
            break
        if msg.type == Gst.MessageType.ERROR:
            err, debug = msg.parse_error()
            print(f"error: {err.message}", file=sys.stderr)
            status = 1
            break
        if msg.type == Gst.MessageType.PROGRESS:
            kind, _code, text = msg.parse_progress()
            if kind in (Gst.ProgressType.COMPLETE, Gst.ProgressType.ERROR):
                say(f"engine: {text}")
        elif msg.get_structure() is not None and msg.get_structure().get_name() == "taoinfer":
            s = msg.get_structure()
            say(f"  message: frame {s.get_value('frame')}: {s.get_value('summary') or '(nothing)'}")
    pipeline.set_state(Gst.State.NULL)
    return status


if __name__ == "__main__":
    sys.exit(main())
