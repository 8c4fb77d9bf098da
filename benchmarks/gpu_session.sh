#!/usr/bin/env bash
# Everything issue 6 needs from a lent GPU machine, in one command: build the example op's
# kernel library (and benchmark variants), the GPU tests (n > 2^31 included), compute-sanitizer
# memcheck on the harness (the real kernel, and a planted overrun that it must catch), and the
# bandwidth benchmark. Logs go to $OUT (default /tmp/trtis-gpu); the last lines summarize.
# torch: the bundle's PyTorch library (built on the CPU machine, carried here, loaded unrebuilt
# into this machine's torch) through torch.ops: tests/gpu/test_torch_gpu.py, memcheck on its
# small cases, and GB/s against a device-to-device copy. The bundle is $TRTIS_BUNDLE
# (default build/bundle).
#   usage: benchmarks/gpu_session.sh [all|test|memcheck|bench|torch]
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

# The harness libraries (the torch stage needs none: it runs the bundle's library).
if [[ $STAGE != torch ]]; then
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
fi

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
if [[ $STAGE == all || $STAGE == torch ]]; then
  export TRTIS_BUNDLE=${TRTIS_BUNDLE:-build/bundle}
  python3 -c "import json, sys; m = json.load(open(sys.argv[1])); print('built with torch',
    m['toolchain']['torch']['version'], [(l['path'], l['sha256'][:16], l['cuda_archs']) for l in m['libraries']])" \
    "$TRTIS_BUNDLE/manifest.json" > "$OUT/torch_bundle.txt" 2>&1
  note "torch bundle $TRTIS_BUNDLE: $(tail -1 "$OUT/torch_bundle.txt")"
  timeout 300 python3 -m pytest -v -s -rs -p no:cacheprovider tests/gpu/test_torch_gpu.py > "$OUT/torch_pytest.txt" 2>&1
  note "pytest tests/gpu/test_torch_gpu.py: exit $? - $(tail -1 "$OUT/torch_pytest.txt")"
  # The op's own test as `trtis-build ops test --gpu` runs it (TRTIS_TEST_GPU=1: its CUDA case).
  TRTIS_TEST_GPU=1 timeout 200 python3 -m pytest -q -rs -p no:cacheprovider --rootdir ops/torch/addsub \
    ops/torch/addsub/test_addsub.py > "$OUT/torch_op_test.txt" 2>&1
  note "ops/torch/addsub/test_addsub.py (TRTIS_TEST_GPU=1): exit $? - $(tail -1 "$OUT/torch_op_test.txt")"
  if [[ -n $SANITIZER ]]; then
    # Small cases only; each tensor its own cudaMalloc, so an overrun leaves its allocation.
    PYTORCH_NO_CUDA_MEMORY_CACHING=1 timeout 300 "$SANITIZER" --tool memcheck --error-exitcode 9 \
      --print-limit 10 python3 -m pytest -q -p no:cacheprovider tests/gpu/test_torch_gpu.py -k small \
      > "$OUT/torch_memcheck.txt" 2>&1
    note "memcheck torch op (-k small): exit $? - $(grep -E 'ERROR SUMMARY' "$OUT/torch_memcheck.txt" | tail -1)" \
      "- $(grep -E 'passed|failed' "$OUT/torch_memcheck.txt" | tail -1)"
  fi
  # GB/s: the op moves 16 bytes per element (reads x and y, writes sum and difference), the
  # copy the same bytes (a 2n-float tensor read and written); CUDA events, median of 25.
  timeout 200 python3 - "$TRTIS_BUNDLE" > "$OUT/torch_bench.txt" 2>&1 <<'EOF'
import sys
import torch
import trtis_build

op = trtis_build.load_bundle(sys.argv[1], framework="torch").op("trtis::add_sub")


def median_ms(fn, repeats=25):
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    fn()
    times = []
    for _ in range(repeats):
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    return sorted(times)[len(times) // 2]


print(f"torch {torch.__version__}, {torch.cuda.get_device_name()}; trtis::add_sub through torch.ops, default stream")
print(f"{'elements':>11} {'MiB/input':>9} | {'op us':>8} {'op GB/s':>8} | {'copy GB/s':>9} {'op/copy':>7} | "
      f"{'x+y,x-y GB/s':>12} {'vs torch':>8}")
for n in (1 << 20, 1 << 22, 1 << 24, 1 << 26, 1 << 28):
    x, y = torch.randn(n, device="cuda"), torch.randn(n, device="cuda")
    src = torch.randn(2 * n, device="cuda")
    dst = torch.empty_like(src)
    gb = 16 * n / 1e9
    t_op = median_ms(lambda: op(x, y))
    t_copy = median_ms(lambda: dst.copy_(src))
    t_torch = median_ms(lambda: (torch.add(x, y), torch.sub(x, y)))  # 24 bytes: x, y read twice
    print(f"{n:>11} {n * 4 / 2**20:>9.0f} | {t_op * 1e3:>8.1f} {gb / t_op * 1e3:>8.1f} | {gb / t_copy * 1e3:>9.1f} "
          f"{t_copy / t_op:>7.1%} | {24 * n / 1e9 / t_torch * 1e3:>12.1f} {t_torch / t_op:>7.2f}x")
    del x, y, src, dst
EOF
  note "torch bench: exit $?"
  cat "$OUT/torch_bench.txt"
fi
cat "$SUMMARY"
