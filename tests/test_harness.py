"""The kernel harness without a GPU.

What cannot run here is the device: the launchers below are host-memory stand-ins compiled
with g++ (the good one calls the example op's real CPU kernel), and HostBackend hands out
NumPy buffers where torch/cupy would hand out device buffers. Everything else is the real
harness code: ctypes binding, guard bands, NaN poisoning, misaligned views, chunked NumPy
reference, result reporting, op.toml [harness] parsing and GPU detection through a fake
libcuda.so.1 (the real driver cannot be loaded on a machine without a GPU).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

np = pytest.importorskip("numpy")

from trtis_build.core import process
from trtis_build.testing import harness
from trtis_build.core.errors import BundleError, OpSpecError

ROOT = Path(__file__).resolve().parents[1]
ADDSUB = ROOT / "ops" / "tensorflow" / "addsub"

SHIM = r"""
#include <stdint.h>
#include "addsub_kernel.h"
// Host-memory stand-ins for the CUDA launcher; BUG selects a planted defect.
extern "C" int trtis_addsub_cuda(const float* a, const float* b, float* s, float* d,
                                 int64_t n, void*) {
#if BUG == 1   // writes one element past the view
  trtis_addsub_cpu(a, b, s, d, n + (n > 0));
#elif BUG == 2 // forgets the last element
  trtis_addsub_cpu(a, b, s, d, n > 0 ? n - 1 : 0);
#elif BUG == 3 // fails to launch
  return 3;
#elif BUG == 4 // wrong value in the middle
  trtis_addsub_cpu(a, b, s, d, n);
  if (n > 2) d[n / 2] = -d[n / 2] + 1.0f;
#else
  trtis_addsub_cpu(a, b, s, d, n);
#endif
  return 0;
}
extern "C" const char* trtis_addsub_cuda_error_string(int code) {
  return code == 3 ? "planted launch failure" : "no error";
}
// A one-input, one-output launcher of another shape.
extern "C" int trtis_twice_cuda(const float* x, float* y, int64_t n, void*) {
  for (int64_t i = 0; i < n; ++i) y[i] = 2.0f * x[i];
  return 0;
}
"""

FAKE_LIBCUDA = r"""
#include <string.h>
// Stand-in for the NVIDIA driver: DEVICES=0 makes cuInit fail like a machine without GPUs.
extern "C" {
int cuInit(unsigned) { return DEVICES ? 0 : 100; }
int cuGetErrorName(int code, const char** name) {
  *name = code == 100 ? "CUDA_ERROR_NO_DEVICE" : "CUDA_ERROR_UNKNOWN"; return 0; }
int cuDriverGetVersion(int* v) { *v = 13000; return 0; }
int cuDeviceGetCount(int* c) { *c = DEVICES; return 0; }
int cuDeviceGet(int* d, int i) { *d = i; return 0; }
int cuDeviceGetName(char* name, int len, int) { strncpy(name, "Fake GPU", len); return 0; }
int cuDeviceGetAttribute(int* v, int attr, int) { *v = attr == 75 ? 9 : 0; return 0; }
}
"""


class HostBackend:
    """NumPy buffers in place of device buffers (see the module docstring)."""

    name = "host"

    def __init__(self, free: int = 1 << 40, fault_after: int | None = None) -> None:
        self.free, self.fault_after, self.syncs = free, fault_after, 0

    def random(self, count, seed):
        return np.random.default_rng(seed).standard_normal(count, dtype=np.float32)

    def full(self, count, value):
        return np.full(count, value, dtype=np.float32)

    def pointer(self, array):
        return array.ctypes.data

    def stream(self):
        return 0

    def synchronize(self):
        self.syncs += 1
        if self.fault_after is not None and self.syncs > self.fault_after:
            raise RuntimeError("CUDA error: an illegal memory access was encountered\nmore")

    def to_host(self, array, start, stop):
        return array[start:stop].copy()

    def free_bytes(self):
        return self.free

    def device_name(self):
        return "host"


def _compile(tmp: Path, name: str, source: str, defines: list[str]) -> Path:
    gxx = shutil.which("g++")
    if gxx is None:
        pytest.skip("g++ is not installed")
    src = tmp / f"{name}.cc"
    src.write_text(source)
    out = tmp / f"lib{name}.so"
    sources = [src] + ([ADDSUB / "addsub_kernel.cc"] if "addsub" in source else [])
    process.run([gxx, "-O1", "-shared", "-fPIC", f"-I{ADDSUB}", *defines, *sources, "-o", out],
                stage="test")
    return out


@pytest.fixture(scope="module")
def shims(tmp_path_factory) -> dict[int, Path]:
    tmp = tmp_path_factory.mktemp("shims")
    return {bug: _compile(tmp, f"shim{bug}", SHIM, [f"-DBUG={bug}"]) for bug in range(5)}


def _library(path: Path, op: str = "addsub") -> harness.KernelLibrary:
    return harness.KernelLibrary(path, harness.template_spec(op))


def test_every_default_case_passes_on_a_correct_launcher(shims):
    cases = harness.default_cases()
    # The edge cases the issue names are really in the list.
    sizes = {c.n for c in cases}
    assert {0, 1, 3, 5, 1025}.issubset(sizes)
    assert any(len(set(c.offsets)) > 1 for c in cases), "needs offsets differing per pointer"
    results = harness.run_checks(_library(shims[0]), HostBackend(), cases, op="tensorflow/addsub",
                                 seed=7)
    assert [r.status for r in results] == ["passed"] * len(cases), harness.format_results(results)
    assert f"{len(cases)} passed, 0 failed" in harness.format_results(results)


@pytest.mark.parametrize("bug, expected", [
    (1, "sum: wrote outside the view (1 guard float(s) changed)"),
    (2, "was never written (still NaN)"),
    (3, "launcher returned planted launch failure (code 3)"),
    (4, "mismatches"),
])
def test_planted_defects_are_reported(shims, bug, expected):
    case = harness.Case(1001, (1, 2, 3, 0))
    [result] = harness.run_checks(_library(shims[bug]), HostBackend(), [case], seed=1)
    assert result.status == "failed"
    assert expected in result.detail
    assert result.case == "n=1001 offsets=1,2,3,0"
    if bug == 4:
        assert result.detail.startswith("diff[500] = ")


def test_n_zero_must_not_touch_memory(shims):
    # n = 0 with the overrun shim writes nothing (n + (n > 0) == 0): passes; n = 1 fails.
    results = harness.run_checks(_library(shims[1]), HostBackend(),
                                 [harness.Case(0), harness.Case(1, (3, 3, 3, 3))], seed=3)
    assert [r.status for r in results] == ["passed", "failed"]


def test_a_fault_skips_the_remaining_cases(shims):
    backend = HostBackend(fault_after=1)
    cases = [harness.Case(5), harness.Case(6), harness.Case(7)]
    results = harness.run_checks(_library(shims[0]), backend, cases, seed=0)
    assert [r.status for r in results] == ["passed", "failed", "skipped"]
    assert results[1].detail == "device error: CUDA error: an illegal memory access was encountered"
    assert "earlier case faulted" in results[2].detail


def test_too_little_device_memory_is_a_skip(shims):
    [result] = harness.run_checks(_library(shims[0]), HostBackend(free=1 << 20),
                                  [harness.Case(1 << 20)], seed=0)
    assert result.status == "skipped" and "GiB of device memory" in result.detail


def test_large_case_is_above_2_pow_31_and_opt_in():
    assert all(c.n < 2**31 for c in harness.default_cases())
    large = [c for c in harness.default_cases(large=True) if c.n > 2**31]
    assert {c.offsets for c in large} == {(1, 1, 1, 1), (1, 2, 3, 0)}


def test_other_launcher_shapes_through_op_toml(shims, tmp_path):
    op_dir = tmp_path / "twice"
    op_dir.mkdir()
    (op_dir / "op.toml").write_text('name = "twice"\n[harness]\nlauncher = "trtis_twice_cuda"\n'
                                    'inputs = ["x"]\noutputs = ["y"]\nreference = ["x * 2"]\n')
    spec = harness.spec_for_op("twice", op_dir)
    assert (spec.inputs, spec.outputs, spec.assumed) == (("x",), ("y",), False)
    lib = harness.KernelLibrary(shims[0], spec)
    cases = harness.default_cases(2)
    assert all(len(c.offsets) in (0, 2) for c in cases)
    results = harness.run_checks(lib, HostBackend(), cases, seed=5)
    assert all(r.passed for r in results), harness.format_results(results)
    # The same library judged against a wrong reference fails.
    wrong = harness.KernelSpec("trtis_twice_cuda", ("x",), ("y",), ("x * 3",))
    [bad] = harness.run_checks(harness.KernelLibrary(shims[0], wrong), HostBackend(),
                               [harness.Case(9)], seed=5)
    assert bad.status == "failed" and bad.detail.startswith("y[0]")


@pytest.mark.parametrize("table, message", [
    ({"launchr": "x"}, "unknown [harness] keys ['launchr']"),
    ({"outputs": ["s"]}, "1 outputs but 2 reference expressions"),
    ({"reference": ["a + c", "a"]}, "uses ['c']"),
    ({"reference": ["a +", "a"]}, "is not a Python expression"),
    ({"launcher": "not an identifier"}, "is not a C identifier"),
    ({"inputs": "ab"}, "[harness] inputs must be a list of strings"),
])
def test_bad_harness_tables_are_op_spec_errors(table, message):
    with pytest.raises(OpSpecError) as info:
        harness.spec_from_table("addsub", table, where="ops/x/op.toml")
    assert message in info.value.message
    assert info.value.where == "ops/x/op.toml"


def test_argument_checks(shims):
    with pytest.raises(ValueError, match="offsets must be in 0..3"):
        harness.Case(4, (0, 4, 0, 0))
    with pytest.raises(ValueError, match="n must be >= 0"):
        harness.Case(-1)
    with pytest.raises(ValueError, match="2 offsets for 4 pointers"):
        harness.Case(4, (1, 1)).offsets_for(4)
    lib = _library(shims[0])
    with pytest.raises(ValueError, match="takes 4 pointers, got 3"):
        lib.launch([1, 2, 3], 4)
    with pytest.raises(BundleError, match="exports no launcher `trtis_nothere_cuda`"):
        _library(shims[0], "nothere")
    with pytest.raises(BundleError, match="does not exist"):
        _library(shims[0].with_name("missing.so"))


def test_check_bundle_walks_the_manifest(shims, tmp_path):
    bundle = tmp_path / "bundle"
    (bundle / "kernels").mkdir(parents=True)
    shutil.copy(shims[0], bundle / "kernels" / "tensorflow-addsub.so")
    shutil.copy(shims[0], bundle / "kernels" / "tensorrt-other.so")
    (bundle / "manifest.json").write_text(json.dumps({"schema": 1, "kernel_libraries": [
        {"op": "addsub", "framework": "tensorflow", "path": "kernels/tensorflow-addsub.so"},
        {"op": "other", "framework": "tensorrt", "path": "kernels/tensorrt-other.so"}]}))
    results = harness.check_bundle(bundle, HostBackend(), seed=2, project_root=ROOT)
    addsub = [r for r in results if r.op == "tensorflow/addsub"]
    assert addsub and all(r.passed for r in addsub)
    [other] = [r for r in results if r.op == "tensorrt/other"]
    assert other.status == "skipped" and "trtis_other_cuda" in other.detail
    only = harness.check_bundle(bundle, HostBackend(), ["tensorrt/missing"], seed=2)
    assert [(r.op, r.status) for r in only] == [("tensorrt/missing", "skipped")]
    with pytest.raises(BundleError, match="no manifest.json"):
        harness.check_bundle(tmp_path, HostBackend())


@pytest.fixture(scope="module")
def fake_libcuda(tmp_path_factory) -> dict[int, Path]:
    tmp = tmp_path_factory.mktemp("libcuda")
    return {d: _compile(tmp, f"cuda{d}", FAKE_LIBCUDA, [f"-DDEVICES={d}"]) for d in (0, 1)}


def test_gpu_status_says_why_there_is_no_gpu(fake_libcuda, tmp_path):
    missing = harness.gpu_status(libcuda=str(tmp_path / "libcuda.so.1"))
    assert not missing.available and missing.message.startswith("no NVIDIA driver:")
    none = harness.gpu_status(libcuda=str(fake_libcuda[0]), env={"CUDA_VISIBLE_DEVICES": ""})
    assert not none.available
    assert "cuInit failed with CUDA_ERROR_NO_DEVICE (100)" in none.message
    assert "CUDA_VISIBLE_DEVICES='' is set" in none.message
    one = harness.gpu_status(libcuda=str(fake_libcuda[1]), env={})
    assert one.available and one.devices == ("Fake GPU (sm_90)",)
    assert (one.compute_capabilities, one.driver_version) == (("90",), "13.0")


@pytest.mark.skipif(harness.gpu_status().available, reason="this machine has a GPU")
def test_run_gpu_checks_without_a_gpu_is_a_clear_error(tmp_path):
    with pytest.raises(harness.GpuUnavailableError) as info:
        harness.run_gpu_checks(tmp_path)
    text = info.value.render()
    assert text.startswith("error [gpu]: cannot run GPU checks:")
    assert "Traceback" not in text and "fix:" in text
    assert info.value.exit_code == 4


def test_guard_zero_puts_views_at_the_end_of_their_buffers(shims):
    # The layout compute-sanitizer needs: nothing after the view inside the allocation.
    seen = []

    class Recording(HostBackend):
        def full(self, count, value):
            seen.append(count)
            return super().full(count, value)

    results = harness.run_checks(_library(shims[0]), Recording(), [harness.Case(10, (1, 2, 3, 0))],
                                 seed=4, guard=0)
    assert results[0].passed, results[0].detail
    assert seen == [10 + 3, 10 + 0]  # outputs: offset + n, no guard band


@pytest.mark.compile
def test_real_cuda_launcher_is_exported_and_fails_cleanly_without_a_gpu(tmp_path):
    """The example's .cu built as the bundle builds it (-fvisibility=hidden, static cudart):
    the harness must find its launchers, and on a machine without a GPU a launch returns a
    CUDA error code instead of crashing. Argument checks happen before any CUDA call."""
    if harness.gpu_status().available:
        pytest.skip("this machine has a GPU: tests/gpu covers the launcher")
    nvcc = next((c for c in (shutil.which("nvcc"), "/usr/local/cuda/bin/nvcc")
                 if c and Path(c).is_file()), None) or pytest.skip("nvcc is not installed")
    lib_path = tmp_path / "tensorflow-addsub.so"
    process.run([nvcc, "-O3", "-Xcompiler=-fPIC", "-Xcompiler=-fvisibility=hidden", "-shared",
                 "-gencode=arch=compute_90,code=sm_90", f"-I{ADDSUB}", ADDSUB / "addsub_kernel.cu",
                 ADDSUB / "addsub_kernel.cc", "-o", lib_path], stage="test")
    lib = _library(lib_path)
    buf = np.zeros(64, dtype=np.float32)
    base = buf.ctypes.data
    assert lib.launch([base] * 4, 0) == 0                        # n = 0: nothing to do
    assert lib.launch([0, base, base, base], 4) == 1             # cudaErrorInvalidValue
    code = lib.launch([base + 2, base, base, base], 4)           # not float-aligned
    assert code == 716 and "misaligned" in lib.error_text(code)
    code = lib.launch([base, base + 16, base + 32, base + 48], 4)  # a real launch: no driver
    assert code != 0
    assert "(code" in lib.error_text(code) and "no error" not in lib.error_text(code)
