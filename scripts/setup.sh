#!/usr/bin/env bash
# Installs everything trtis-build, its examples and its tests need on a fresh Debian 12
# machine: Debian packages (when run as root), then a virtual environment in .venv with
# the project and its extras. Safe to run again: it only installs what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian packages: compilers and build tools; image tools for `trtis-build server` (podman and
# docker.io only for the tests that load its archives into real engines).
DEBIAN_PACKAGES=(g++ cmake ninja-build binutils skopeo umoci oci-image-tool bubblewrap docker-registry mmdebstrap podman docker.io)
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  missing=()
  for pkg in "${DEBIAN_PACKAGES[@]}"; do
    dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    echo "setup: installing Debian packages: ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
fi

PYTHON=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip 2>&1 | grep -v "is ignored" || true
# tf: tensorflow-cpu; trt: the TensorRT lean runtime; server: Triton + tritonclient; torch:
# PyTorch (this repository builds and tests against torch 2.14.1).
.venv/bin/python -m pip install -q -e '.[tf,trt,server,torch,cuda-tools,dev]' 'torch==2.14.1' 2>&1 | grep -v "is ignored" || true
# TensorRT C++ headers for building plugins here: no NVIDIA package ships them on PyPI;
# kernel-lens (MIT) carries the TensorRT 10.14 headers. --no-deps: we need only the headers,
# not its torch dependency.
.venv/bin/python -m pip install -q --no-deps kernel-lens==2.0.1 2>&1 | grep -v "is ignored" || true
# A TensorRT 10 lean runtime beside the default 11.x one (tests and this repo's builds): the
# autoload shims call TensorRT's registry through the 10.14 headers' virtual table, so only a
# runtime of the same major can show that they register. Kept out of site-packages; the build
# uses it through TRTIS_BUILD_TENSORRT_PYTHON_PATH / tensorrt-python-path.
if [ ! -d .venv/trt10/tensorrt_lean_bindings ]; then
  .venv/bin/python -m pip install -q --no-deps --only-binary=:all: --target .venv/trt10 \
    tensorrt-lean-cu12-libs==10.16.1.11 tensorrt-lean-cu12-bindings==10.16.1.11
  [ -d .venv/trt10/tensorrt_lean_bindings ] || { echo "setup: the TensorRT 10 runtime did not install" >&2; exit 1; }
fi
# An older torch beside it, for the test that loads a stable-ABI library built here, unrebuilt,
# into another torch (the CPU wheel; kept out of site-packages like the TensorRT 10 runtime).
if [ ! -f .venv/torch-2.13/torch/__init__.py ]; then
  .venv/bin/python -m pip install -q --no-deps --only-binary=:all: --target .venv/torch-2.13 torch==2.13.0 2>&1 \
    | grep -v "is ignored" || true
  [ -f .venv/torch-2.13/torch/__init__.py ] || { echo "setup: torch 2.13 (for the cross-version test) did not install" >&2; exit 1; }
fi
.venv/bin/python -c "import trtis_build" # fail here, not later, if the install broke
echo "setup: ready (.venv)"
