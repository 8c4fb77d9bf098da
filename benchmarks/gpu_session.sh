#!/usr/bin/env bash
# Everything issue 6 needs from a lent GPU machine, in one command: build the example op's
# kernel library (and benchmark variants), the GPU tests (n > 2^31 included), compute-sanitizer
# memcheck on the harness (the real kernel, and a planted overrun that it must catch), and the
# bandwidth benchmark. Logs go to $OUT (default /tmp/trtis-gpu); the last lines summarize.
#   usage: benchmarks/gpu_session.sh [all|test|memcheck|bench]
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/trtis-gpu}
STAGE=${1:-all}
mkdir -p "$OUT" build/gpu
export PYTHONUNBUFFERED=1
# A bare checkout (the GPU machine has no pip install of this repo): server/ is importable as
# trtis_server only through the install's package-dir mapping, so map it here the same way.
if ! python3 -c "import trtis_server" 2>/dev/null; then
  mkdir -p build/gpu/site && ln -sfn "$PWD/server" build/gpu/site/trtis_server
  export PYTHONPATH="$PWD/build/gpu/site:$PWD${PYTHONPATH:+:$PYTHONPATH}"
fi
SUMMARY="$OUT/summary.txt"
note() { echo "== $*" | tee -a "$SUMMARY"; }

NVCC=$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)
SANITIZER=$(command -v compute-sanitizer || ls /usr/local/cuda/bin/compute-sanitizer 2>/dev/null || true)
CC=$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader | head -1 | tr -d .)
{
  nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.max.sm,clocks.mem --format=csv
  "$NVCC" --version | tail -2
  python3 -c "import torch, numpy; print('torch', torch.__version__, 'numpy', numpy.__version__)"
  python3 -c "import cupy; print('cupy', cupy.__version__)" || echo "cupy: missing"
  echo "compute-sanitizer: ${SANITIZER:-missing}"; echo "compute capability: $CC"
} > "$OUT/env.txt" 2>&1
note "device: $(head -2 "$OUT/env.txt" | tail -1)"

OP=ops/tensorflow/addsub
build() {  # build NAME [nvcc flags...]: the harness library the bundle's kernels/*.so is
  local name=$1; shift
  "$NVCC" -O3 -Xcompiler -fPIC -shared "-gencode=arch=compute_${CC},code=sm_${CC}" -I"$OP" "$@" \
    "$OP/addsub_kernel.cu" "$OP/addsub_kernel.cc" -o "build/gpu/$name.so" >> "$OUT/build.txt" 2>&1 \
    || echo "build of $name failed" >> "$OUT/build.txt"
}
# NAME:flag[,flag...] - builds compared with the default (TRTIS_KERNEL_* macros of the .cu).
VARIANTS=(${TRTIS_BENCH_VARIANTS:-same:-DTRTIS_KERNEL_VECTOR_UNROLL=1 u4:-DTRTIS_KERNEL_VECTOR_UNROLL=4
          t128:-DTRTIS_KERNEL_THREADS=128 t512:-DTRTIS_KERNEL_THREADS=512
          t1024:-DTRTIS_KERNEL_THREADS=1024 stream:-DTRTIS_KERNEL_STREAMING_STORES=1
          u2t128:-DTRTIS_KERNEL_VECTOR_UNROLL=2,-DTRTIS_KERNEL_THREADS=128
          s1:-DTRTIS_KERNEL_SCALAR_UNROLL=1 s8:-DTRTIS_KERNEL_SCALAR_UNROLL=8})
build addsub -Xptxas -v &
for v in "${VARIANTS[@]}"; do IFS=, read -ra flags <<< "${v#*:}"; build "${v%%:*}" "${flags[@]}" & done
"$NVCC" -O3 -Xcompiler -fPIC -shared "-gencode=arch=compute_${CC},code=sm_${CC}" \
  tests/gpu/planted_overrun.cu -o build/gpu/overrun.so >> "$OUT/build.txt" 2>&1 &
wait
note "built: $(ls build/gpu | tr '\n' ' ')"

if [[ $STAGE == all || $STAGE == test ]]; then
  TRTIS_KERNEL_LIB=build/gpu/addsub.so TRTIS_GPU_LARGE=1 timeout 400 \
    python3 -m pytest -v -s -rs -p no:cacheprovider tests/gpu > "$OUT/pytest.txt" 2>&1
  note "pytest tests/gpu (large on): exit $? - $(tail -1 "$OUT/pytest.txt")"
fi

if [[ $STAGE == all || $STAGE == memcheck ]]; then
  if [[ -n $SANITIZER ]]; then
    # One cudaMalloc per tensor (no caching allocator) and views at the allocations' ends.
    export PYTORCH_NO_CUDA_MEMORY_CACHING=1
    timeout 300 "$SANITIZER" --tool memcheck --error-exitcode 9 --print-limit 10 \
      python3 tests/gpu/run_harness.py --library build/gpu/addsub.so --guard 0 --backend torch \
      > "$OUT/memcheck.txt" 2>&1
    note "memcheck addsub.so: exit $? - $(grep -E 'ERROR SUMMARY' "$OUT/memcheck.txt" | tail -1)"
    timeout 200 "$SANITIZER" --tool memcheck --error-exitcode 9 --print-limit 4 \
      python3 tests/gpu/run_harness.py --library build/gpu/overrun.so --guard 0 --backend torch \
      > "$OUT/memcheck_planted.txt" 2>&1
    note "memcheck planted overrun (must fail): exit $? - $(grep -E 'ERROR SUMMARY' "$OUT/memcheck_planted.txt" | tail -1)"
    unset PYTORCH_NO_CUDA_MEMORY_CACHING
  else
    note "compute-sanitizer: not found on this machine"
  fi
fi

if [[ $STAGE == all || $STAGE == bench ]]; then
  args=()
  for v in "${VARIANTS[@]}"; do args+=(--variant "${v%%:*}=build/gpu/${v%%:*}.so"); done
  timeout 200 python3 benchmarks/kernel_bench.py --library build/gpu/addsub.so "${args[@]}" \
    --sizes 64,256,1024,4096 --repeats 11 > "$OUT/bench_variants.txt" 2>&1
  note "variant sweep: exit $?"
  timeout 200 python3 benchmarks/kernel_bench.py --library build/gpu/addsub.so \
    --out "$OUT/kernel_bench.txt" >> "$OUT/bench_variants.txt" 2>&1
  note "kernel_bench: exit $?"
  cat "$OUT/bench_variants.txt" "$OUT/kernel_bench.txt" 2>/dev/null
fi
cat "$SUMMARY"
