"""PyTorch build benchmark, one run (figures, not a timed test):

a cold `trtis-build ops build` of the example torch op alone (adapter, kernels, link, the
registration check in a fresh torch; a fresh project and build dir each run, the per-user
toolchain cache warm as on any second project) vs `torch.utils.cpp_extension.load()` of the
same kernel behind a classic TORCH_LIBRARY adapter written here (what an op author writes for
cpp_extension; a fresh build directory each run, cpp_extension's default flags). Two modes:
CPU only (`--no-cuda`; the extension has no .cu) and CUDA for one arch (`--cuda-arch 90`; the
extension gets the .cu with TORCH_CUDA_ARCH_LIST=9.0). Runs alternate, ours then theirs.

load() is timed inside its process, after `import torch` (the figure most favourable to
cpp_extension); ours is the whole CLI process. The issue's target: ours <= 0.25x load().

    .venv/bin/python benchmarks/torch_build_bench.py [--repeats 3] [--modes cpu,cuda]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
EXAMPLE = REPO / "ops" / "torch" / "addsub"
KERNELS = REPO / "ops" / "tensorflow" / "addsub"
TARGET_RATIO = 0.25
MODES = {"cpu": ["--no-cuda"], "cuda": ["--cuda-arch", "90"]}

# The classic extension: torch's full C++ API, the same CPU (and CUDA) kernel.
CLASSIC = """#include <torch/all.h>
#include <torch/library.h>
#if WITH_CUDA_KERNEL
#include <c10/cuda/CUDAStream.h>
#endif
#include "addsub_kernel.h"

namespace {
std::tuple<at::Tensor, at::Tensor> prepare(const at::Tensor& x, const at::Tensor& y, at::Tensor& a, at::Tensor& b) {
  TORCH_CHECK(x.scalar_type() == at::kFloat && y.scalar_type() == at::kFloat, "x and y must be float32");
  TORCH_CHECK(x.sizes() == y.sizes(), "x and y must have one shape");
  a = x.contiguous();
  b = y.contiguous();
  return {at::empty_like(a), at::empty_like(a)};
}

std::tuple<at::Tensor, at::Tensor> add_sub_cpu(const at::Tensor& x, const at::Tensor& y) {
  at::Tensor a, b;
  auto [sum, difference] = prepare(x, y, a, b);
  trtis_addsub_cpu(a.data_ptr<float>(), b.data_ptr<float>(), sum.data_ptr<float>(),
                   difference.data_ptr<float>(), a.numel());
  return {sum, difference};
}

#if WITH_CUDA_KERNEL
std::tuple<at::Tensor, at::Tensor> add_sub_cuda(const at::Tensor& x, const at::Tensor& y) {
  at::Tensor a, b;
  auto [sum, difference] = prepare(x, y, a, b);
  const int code = trtis_addsub_cuda(a.data_ptr<float>(), b.data_ptr<float>(), sum.data_ptr<float>(),
                                     difference.data_ptr<float>(), a.numel(),
                                     c10::cuda::getCurrentCUDAStream().stream());
  TORCH_CHECK(code == 0, trtis_addsub_cuda_error_string(code));
  return {sum, difference};
}
#endif
}  // namespace

TORCH_LIBRARY(trtisbench, m) { m.def("add_sub(Tensor x, Tensor y) -> (Tensor sum, Tensor difference)"); }
TORCH_LIBRARY_IMPL(trtisbench, CPU, m) { m.impl("add_sub", &add_sub_cpu); }
#if WITH_CUDA_KERNEL
TORCH_LIBRARY_IMPL(trtisbench, CUDA, m) { m.impl("add_sub", &add_sub_cuda); }
#endif
"""

# One load() in a fresh process (a namespace may be defined once per process; a new module
# name per run keeps cpp_extension from reusing a build); the op is called once so a broken
# extension cannot pass for a fast one.
RUNNER = """import json, sys, time
import torch
from torch.utils import cpp_extension
name, build_dir, cuda, kernels, source = sys.argv[1], sys.argv[2], sys.argv[3] == "1", sys.argv[4], sys.argv[5]
sources = [source, kernels + "/addsub_kernel.cc"] + ([kernels + "/addsub_kernel.cu"] if cuda else [])
start = time.perf_counter()
cpp_extension.load(name, sources, extra_include_paths=[kernels], build_directory=build_dir, is_python_module=False,
                   extra_cflags=[f"-DWITH_CUDA_KERNEL={int(cuda)}"], verbose=False)
seconds = time.perf_counter() - start
x, y = torch.randn(1031), torch.randn(1031)
total, difference = torch.ops.trtisbench.add_sub(x, y)
assert torch.equal(total, x + y) and torch.equal(difference, x - y)
print(json.dumps({"load_s": seconds}))
"""


def torch_project(root: Path) -> Path:
    """The example op with its shared kernels beside it (no TensorFlow op in the tree)."""
    op_dir = root / "ops" / "torch" / "addsub"
    shutil.copytree(EXAMPLE, op_dir, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("addsub_kernel.h", "addsub_kernel.cc", "addsub_kernel.cu"):
        shutil.copy(KERNELS / name, op_dir / name)
    toml = op_dir / "op.toml"
    toml.write_text("".join(line for line in toml.read_text().splitlines(keepends=True)
                            if not line.startswith(("kernel_sources", "cuda_sources"))))
    return root


def ours(tmp: Path, tag: str, args: list[str], env: dict | None = None) -> float:
    project = torch_project(tmp / f"ours-{tag}")
    start = time.perf_counter()
    out = subprocess.run([sys.executable, "-m", "trtis_build", "ops", "build", "--json", *args], cwd=project,
                         check=True, capture_output=True, text=True, env={**os.environ, **(env or {})}).stdout
    seconds = time.perf_counter() - start
    [lib] = json.loads(out)["manifest"]["libraries"]
    assert lib["ops"] == ["trtis::add_sub"], lib
    return seconds


def theirs(tmp: Path, tag: str, cuda: bool, env: dict) -> tuple[float, float]:
    """(load() inside the process, the whole process)."""
    name = f"classic_addsub_{tag}"
    build_dir = tmp / f"theirs-{tag}"
    build_dir.mkdir()
    start = time.perf_counter()
    out = subprocess.run([sys.executable, str(tmp / "runner.py"), name, str(build_dir), "1" if cuda else "0",
                          str(KERNELS), str(tmp / "classic_op.cc")], check=True, capture_output=True, text=True,
                         env=env).stdout
    return json.loads(out.splitlines()[-1])["load_s"], time.perf_counter() - start


def spread(values: list[float]) -> str:
    return f"min {min(values):6.2f}  median {statistics.median(values):6.2f}  max {max(values):6.2f}"


def cuda_home() -> str:
    if os.environ.get("CUDA_HOME"):
        return os.environ["CUDA_HOME"]
    nvcc = Path(shutil.which("nvcc") or "/usr/local/cuda/bin/nvcc").resolve()
    return "/usr/local/cuda" if Path("/usr/local/cuda/bin/nvcc").exists() else str(nvcc.parent.parent)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--modes", default="cpu,cuda")
    args = parser.parse_args()
    modes = args.modes.split(",")
    import torch

    print(f"# torch_build_bench {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {os.cpu_count()} cores, "
          f"load average {os.getloadavg()[0]:.2f}")
    print(f"# torch {torch.__version__}, python {sys.version.split()[0]}; {args.repeats} runs per figure")
    env = {**os.environ, "CUDA_HOME": cuda_home(), "TORCH_CUDA_ARCH_LIST": "9.0", "TORCH_CPP_LOG_LEVEL": "ERROR"}
    with tempfile.TemporaryDirectory(prefix="trtis-torch-bench-") as name:
        tmp = Path(name)
        (tmp / "classic_op.cc").write_text(CLASSIC)
        (tmp / "runner.py").write_text(RUNNER)
        subprocess.run([sys.executable, "-m", "trtis_build", "doctor"], cwd=torch_project(tmp / "warm"),
                       check=True, capture_output=True)  # the per-user toolchain cache, as on a second project
        for mode in modes:
            build_args = MODES[mode]
            ours_s, load_s, process_s = [], [], []
            for run in range(args.repeats):
                ours_s.append(ours(tmp, f"{mode}{run}", build_args))
                load, process = theirs(tmp, f"{mode}{run}", mode == "cuda", env)
                load_s.append(load)
                process_s.append(process)
            # Once with an empty toolchain cache: detection (nvcc, g++, a torch probe) included.
            cold_cache = ours(tmp, f"{mode}-nocache", build_args, {"TRTIS_BUILD_CACHE_DIR": str(tmp / f"cache-{mode}")})
            ratios = [a / b for a, b in zip(ours_s, load_s)]
            ratio = statistics.median(ours_s) / statistics.median(load_s)
            what = "CPU only (--no-cuda)" if mode == "cpu" else "CUDA sm_90 (--cuda-arch 90; TORCH_CUDA_ARCH_LIST=9.0)"
            print(f"\n## {what}")
            print(f"trtis-build ops build, cold build dir (whole CLI process): {spread(ours_s)} s")
            print(f"  the same with an empty toolchain cache (one run):          {cold_cache:6.2f} s")
            print(f"cpp_extension.load(), fresh build dir (the call):           {spread(load_s)} s")
            print(f"  its whole process (import torch + load + one call):       {spread(process_s)} s")
            print(f"ratio ours / load(): median {ratio:.3f} (pairs {min(ratios):.3f}-{max(ratios):.3f}), "
                  f"target <= {TARGET_RATIO}: {'met' if ratio <= TARGET_RATIO else 'NOT met'}; "
                  f"with an empty toolchain cache {cold_cache / statistics.median(load_s):.3f}")


if __name__ == "__main__":
    main()
