#!/usr/bin/env bash
# The README's main job on the example op, after scripts/setup.sh: build the bundle, run the
# op through TensorFlow, build a model that uses it, compose a Triton server image with the
# bundle linked in, and smoke-test that image's own tritonserver (HTTP, gRPC, metrics).
#   bash examples/quickstart.sh
set -euo pipefail
cd "$(dirname "$0")/.."
TRTIS=.venv/bin/trtis-build
step() { printf '\n== %s\n' "$*"; }

step "build the bundle (ops/tensorflow/addsub, ops/tensorrt/addsub, ops/torch/addsub)"
"$TRTIS" ops build
step "run TRTISExampleAddSub through TensorFlow"
.venv/bin/python examples/addsub_demo.py
step "a SavedModel that uses the op, added to models/ with the op library it needs"
.venv/bin/python examples/make_savedmodel.py build/examples --models models --force
step "compose the server image (the default base is assembled offline and cached the first time: minutes)"
"$TRTIS" server --out build/image
step "smoke-test the image: its own tritonserver, Python and TensorFlow, under bubblewrap"
"$TRTIS" smoke --image build/image
