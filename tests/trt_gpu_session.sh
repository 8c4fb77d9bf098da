#!/usr/bin/env bash
# One GPU session for the TensorRT plugins (the lent GPU machine: nvcc, no TensorRT).
#
# Builds the addsub plugin and a plugin scaffolded from the templates with the build
# contract's flags, builds plugin_check, and runs its --enqueue mode: TensorRT's call sequence
# (create, clone, serialize/recreate, attachToContext, onShapeChange, enqueue on a stream) on
# real device buffers, compared with the CPU reference and, for one case, with NumPy.
#
# Needs, carried in an ignored folder: .trt-gpu/tensorrt (TensorRT headers, e.g. copied from
# kernel-lens) and .trt-gpu/scaffold/ops/tensorrt/scaled_op (the template rendered here).
# Writes its figures to $OUT (at most 8 files).
set -uo pipefail
OUT=${OUT:-/tmp/trt-gpu-out}
mkdir -p "$OUT"
HEADERS=${TRT_HEADERS:-.trt-gpu/tensorrt}
ARCH=${ARCH:-90}
B=$(mktemp -d)
# A bare checkout: server/ is trtis_server only through the install's package-dir mapping.
if ! python3 -c "import trtis_server" 2>/dev/null; then
  mkdir -p "$B/site" && ln -sfn "$PWD/server" "$B/site/trtis_server"
  export PYTHONPATH="$B/site${PYTHONPATH:+:$PYTHONPATH}"
fi
# PLUGIN=path: check that plugin library (e.g. a bundle's tensorrt/libaddsub.so built by
# `trtis-build ops build` on the CPU machine) instead of building addsub here.
LIB=${PLUGIN:-$B/addsub/libaddsub.so}

NVCC=$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)
CUDA=$(dirname "$(dirname "$(readlink -f "$NVCC")")")
find_one() { find "$CUDA" /usr/local/cuda /usr/lib /opt -name "$1" 2>/dev/null | head -n 1; }
CUDA_INC=$(dirname "$(find_one cuda_runtime_api.h)")
CUDART_STATIC=$(find_one libcudart_static.a)
CUDART_SO=$(find_one 'libcudart.so.1[0-9]*')

build_plugin() {  # name plugin_name adapter.cc kernel.cc kernel.cu
  local name=$1 plugin=$2 adapter=$3 kcc=$4 kcu=$5 dir=$B/$1
  mkdir -p "$dir/cfg"
  python3 - "$dir/cfg" "$name" "$plugin" <<'EOF' || return 1
import sys
sys.path.insert(0, ".")
from trtis_build.frameworks.tensorrt.names import PluginId
from trtis_build.frameworks.tensorrt.config_header import write_plugin_config
write_plugin_config(sys.argv[1], sys.argv[2], [PluginId(sys.argv[3], "1", "trtis")])
EOF
  local inc=(-I"$dir/cfg" -I"$(dirname "$adapter")" -I"$(dirname "$kcc")")
  g++ -std=c++17 -O2 -fPIC -fvisibility=hidden -DTRTIS_WITH_CUDA=1 -isystem "$HEADERS" -isystem "$CUDA_INC" \
      "${inc[@]}" -c "$adapter" -o "$dir/adapter.o" &&
  g++ -std=c++17 -O3 -fPIC -fvisibility=hidden "${inc[@]}" -c "$kcc" -o "$dir/kernel.o" &&
  "$NVCC" -O3 -std=c++17 -Xcompiler=-fPIC -Xcompiler=-fvisibility=hidden \
      -gencode=arch=compute_$ARCH,code=sm_$ARCH "${inc[@]}" -c "$kcu" -o "$dir/kernel_cu.o" &&
  g++ -shared -fvisibility=hidden -o "$dir/lib$name.so" "$dir/adapter.o" "$dir/kernel.o" "$dir/kernel_cu.o" \
      "$CUDART_STATIC" -ldl -lpthread -lrt -Wl,--no-undefined
}

summary() {  # json-file: one line of figures
  python3 - "$1" <<'EOF'
import json, sys
d = json.load(open(sys.argv[1]))
for lib in d["libraries"]:
    for p in lib.get("plugins", []):
        e = p.get("enqueue", {})
        ref = e.get("reference") or []
        print(f'{p.get("namespace")}::{p.get("name")} inputs={p.get("inputs")} ok={d["ok"]} '
              f'enqueue_ok={e.get("ok")} mean_ms={e.get("mean_ms")} GB/s={e.get("gb_per_s")} '
              f'max_abs_error={[r["max_abs_error"] for r in ref]} mismatches={[r["mismatches"] for r in ref]}')
print("failures:", d["failures"], "warnings:", d["warnings"])
EOF
}

{
  set -x
  nvidia-smi -L
  "$NVCC" --version | tail -n 2
  g++ --version | head -n 1
  echo "cuda include: $CUDA_INC; cudart static: $CUDART_STATIC; cudart: $CUDART_SO"
  sha256sum ops/tensorflow/addsub/addsub_kernel.cu ops/tensorrt/addsub/addsub_plugin.cc
  if [ -n "${PLUGIN:-}" ]; then
    echo "plugin library from a bundle: $PLUGIN"; sha256sum "$PLUGIN"
  else
    time build_plugin addsub TRTISExampleAddSub ops/tensorrt/addsub/addsub_plugin.cc \
        ops/tensorflow/addsub/addsub_kernel.cc ops/tensorflow/addsub/addsub_kernel.cu
  fi
  S=.trt-gpu/scaffold/ops/tensorrt/scaled_op
  time build_plugin scaled_op ScaledOp "$S/scaled_op_plugin.cc" "$S/scaled_op_kernel.cc" "$S/scaled_op_kernel.cu"
  time g++ -std=c++17 -O1 -isystem "$HEADERS" -isystem "$CUDA_INC" trtis_build/frameworks/tensorrt/plugin_check/plugin_check.cc -ldl \
      -o "$B/plugin_check"
  ldd "$B/plugin_check" "$LIB"
  CHECK=("$B/plugin_check" --cudart "$CUDART_SO" --enqueue)

  # 1. The plugin's own case (2x3x257), dumped for NumPy.
  mkdir -p "$B/dump"
  "${CHECK[@]}" --iterations 20 --expect TRTISExampleAddSub:1:trtis --dump "$B/dump" \
      --json "$OUT/addsub_small.json" "$LIB"
  summary "$OUT/addsub_small.json"
  python3 - "$OUT/addsub_small.json" "$OUT/numpy_compare.json" <<'EOF'
import json, sys
import numpy as np
report = json.load(open(sys.argv[1]))
dump = report["libraries"][0]["plugins"][0]["enqueue"]["dump"]
arrays = {(d["role"], i): np.fromfile(d["file"], np.float32).reshape(d["shape"])
          for i, d in enumerate(x for x in dump if x["role"] == "input")}
outs = [np.fromfile(d["file"], np.float32).reshape(d["shape"]) for d in dump if d["role"] == "output"]
x, y = arrays[("input", 0)], arrays[("input", 1)]
result = {"elements": int(x.size),
          "sum_equal": bool(np.array_equal(outs[0], x + y)),
          "difference_equal": bool(np.array_equal(outs[1], x - y)),
          "sum_max_abs_error": float(np.max(np.abs(outs[0] - (x + y)))),
          "difference_max_abs_error": float(np.max(np.abs(outs[1] - (x - y))))}
print("numpy:", result)
json.dump(result, open(sys.argv[2], "w"), indent=1)
EOF

  # 2. Sizes: empty, one element, odd rank-4, and a large case for bandwidth.
  for case in 'float32[0];float32[0]' 'float32[1];float32[1]' 'float32[3,5,7,11];float32[3,5,7,11]' \
              'float32[1000003];float32[1000003]'; do
    "${CHECK[@]}" --iterations 20 --inputs "$case" --json "$B/case.json" "$LIB"
    summary "$B/case.json"
    cat "$B/case.json" >> "$OUT/addsub_sizes.jsonl"
  done
  "${CHECK[@]}" --iterations 50 --inputs 'float32[64,1048576];float32[64,1048576]' \
      --json "$OUT/addsub_large.json" "$LIB"
  summary "$OUT/addsub_large.json"

  # 3. The scaffolded op, unedited.
  "${CHECK[@]}" --iterations 20 --expect ScaledOp:1:trtis --json "$OUT/scaffold.json" "$B/scaled_op/libscaled_op.so"
  summary "$OUT/scaffold.json"

  # 4. Memory errors in the plugin's device code (compute-sanitizer, where the runtime allows it).
  if command -v compute-sanitizer >/dev/null; then
    timeout 180 compute-sanitizer --tool memcheck --error-exitcode 99 "${CHECK[@]}" --iterations 1 \
        --inputs 'float32[3,5,7,11];float32[3,5,7,11]' --json "$B/memcheck.json" "$LIB" \
        > "$OUT/memcheck.txt" 2>&1
    echo "compute-sanitizer exit: $?" | tee -a "$OUT/memcheck.txt"
  fi
} 2>&1 | tee "$OUT/log.txt"
