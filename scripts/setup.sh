#!/usr/bin/env bash
# Installs everything the project needs on Debian/Ubuntu, idempotently. Called by the Makefile targets;
# safe to run again: it only installs what is missing and says what it does.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '[setup] %s\n' "$*"; }

# System packages: GStreamer development files and runtime plugins (the element and its tests), libav for
# decoding real H.264 video, PyGObject with GStreamer's introspection data (the Python example app and its
# test), pkg-config for the -sys crates, Python's venv for the ONNX Runtime oracle, openssl for the decrypt
# benchmark's peer.
APT_PACKAGES=(
  pkg-config build-essential
  libgstreamer1.0-dev libgstreamer-plugins-base1.0-dev
  gstreamer1.0-tools gstreamer1.0-plugins-base gstreamer1.0-plugins-good gstreamer1.0-libav
  python3-gi python3-gst-1.0 gir1.2-gstreamer-1.0 gir1.2-gst-plugins-base-1.0
  python3 python3-venv python3-pip openssl
)
missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  say "installing Debian packages: ${missing[*]}"
  if [ "$(id -u)" -ne 0 ]; then SUDO=sudo; else SUDO=; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
else
  say "Debian packages present (${#APT_PACKAGES[@]} checked)"
fi

# Rust: the toolchain comes from rustup; nothing else can provide a recent enough one.
if ! command -v cargo >/dev/null 2>&1; then
  say "cargo not found: install Rust >= 1.92 with rustup, then run this again" >&2
  exit 1
fi
say "rust: $(rustc --version)"

# Python oracle environment (ONNX Runtime, onnx, numpy), project-local in .venv.
PY_PACKAGES=(numpy==2.2.6 onnx==1.19.1 onnxruntime==1.22.1 pillow==11.3.0)
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  say "creating .venv (Python oracle for tests)"
  "$PYTHON" -m venv .venv
fi
if ! .venv/bin/python - "${PY_PACKAGES[@]}" <<'PY' >/dev/null 2>&1
import sys
from importlib.metadata import version
for spec in sys.argv[1:]:
    name, want = spec.split("==")
    assert version(name) == want, spec
PY
then
  say "installing Python packages into .venv: ${PY_PACKAGES[*]}"
  .venv/bin/python -m pip install -q --disable-pip-version-check "${PY_PACKAGES[@]}"
else
  say "Python packages present in .venv"
fi

# cargo-fuzz for the bounded fuzz runs (needs the nightly toolchain, checked by `make fuzz`).
if [ "${TAO_SETUP_FUZZ:-0}" = 1 ] && ! command -v cargo-fuzz >/dev/null 2>&1; then
  say "installing cargo-fuzz"
  cargo install --locked cargo-fuzz
fi
say "done"
