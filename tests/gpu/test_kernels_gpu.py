"""The CUDA kernels on a real GPU, through the kernel harness (no TensorFlow, no TensorRT).

Runs on the lent GPU machine; skips with the driver's reason anywhere else (CI has no GPU).
The kernel library is, in this order: $TRTIS_KERNEL_LIB, build/bundle/kernels/
tensorflow-addsub.so, or the example op's kernel compiled here with nvcc for this GPU.
The case above 2^31 elements (4 x 8.6 GB of device memory) runs only with
TRTIS_GPU_LARGE=1.
"""

from __future__ import annotations

import ctypes
import os
import shutil
from pathlib import Path

import pytest

from trtis_build.core import process
from trtis_build.testing import harness

pytestmark = pytest.mark.gpu

ROOT = Path(__file__).resolve().parents[2]
ADDSUB = ROOT / "ops" / "tensorflow" / "addsub"
STATUS = harness.gpu_status()
if not STATUS.available:
    pytest.skip(f"no GPU: {STATUS.message}", allow_module_level=True)
np = pytest.importorskip("numpy")

CUDA_ERROR_MISALIGNED_ADDRESS = 716
CUDA_ERROR_INVALID_VALUE = 1


def _nvcc() -> str | None:
    for candidate in (shutil.which("nvcc"), "/usr/local/cuda/bin/nvcc"):
        if candidate and Path(candidate).is_file():
            return candidate
    return None


@pytest.fixture(scope="module")
def library_path(tmp_path_factory) -> Path:
    if os.environ.get("TRTIS_KERNEL_LIB"):
        return Path(os.environ["TRTIS_KERNEL_LIB"])
    bundled = ROOT / "build" / "bundle" / "kernels" / "tensorflow-addsub.so"
    if bundled.is_file():
        return bundled
    nvcc = _nvcc() or pytest.skip("no kernel library and no nvcc to build one")
    cc = STATUS.compute_capabilities[0]
    out = tmp_path_factory.mktemp("kernels") / "tensorflow-addsub.so"
    process.run([nvcc, "-O3", "-Xcompiler", "-fPIC", "-shared",
                 f"-gencode=arch=compute_{cc},code=sm_{cc}", f"-I{ADDSUB}",
                 ADDSUB / "addsub_kernel.cu", ADDSUB / "addsub_kernel.cc", "-o", out], stage="test")
    return out


@pytest.fixture(scope="module")
def library(library_path) -> harness.KernelLibrary:
    return harness.KernelLibrary(library_path, harness.spec_for_op("addsub", ADDSUB))


@pytest.fixture(scope="module", params=["torch", "cupy"])
def backend(request) -> harness.ArrayBackend:
    try:
        return harness.select_backend(request.param)
    except harness.GpuUnavailableError as exc:
        pytest.skip(exc.message)


def _assert_passed(results):
    failed = [r for r in results if not r.passed]
    assert not failed, harness.format_results(results)


def test_edge_sizes_and_misaligned_views(library, backend):
    cases = harness.default_cases()
    results = harness.run_checks(library, backend, cases, op="tensorflow/addsub")
    assert len(results) == len(cases)
    _assert_passed(results)


def test_views_at_the_end_of_their_allocations(library, backend):
    # guard=0: an overrun would leave the allocation (what compute-sanitizer watches).
    _assert_passed(harness.run_checks(library, backend, harness.default_cases(), guard=0))


def test_on_a_non_default_stream(library):
    torch = pytest.importorskip("torch")
    backend = harness.TorchBackend()
    stream = torch.cuda.Stream()
    with torch.cuda.stream(stream):
        assert backend.stream() == stream.cuda_stream != 0
        _assert_passed(harness.run_checks(library, backend, [harness.Case((1 << 22) + 1, (2,) * 4)]))


def test_bad_pointers_are_refused_without_a_fault(library):
    torch = pytest.importorskip("torch")
    x = torch.ones(64, device="cuda")
    base = x.data_ptr()
    # 2 bytes past a float boundary: the launcher refuses instead of faulting in the kernel.
    code = library.launch([base + 2, base, base + 128, base + 192], 4)
    assert code == CUDA_ERROR_MISALIGNED_ADDRESS
    assert "misaligned" in library.error_text(code)
    assert library.launch([0, base, base, base], 4) == CUDA_ERROR_INVALID_VALUE
    raw = ctypes.CDLL(str(library.path)).trtis_addsub_cuda
    raw.argtypes = [ctypes.c_void_p] * 4 + [ctypes.c_int64, ctypes.c_void_p]
    assert raw(base, base, base, base, -1, None) == CUDA_ERROR_INVALID_VALUE
    torch.cuda.synchronize()  # the context is still healthy
    assert float(x.sum()) == 64.0


@pytest.mark.skipif(os.environ.get("TRTIS_GPU_LARGE") != "1",
                    reason="set TRTIS_GPU_LARGE=1 (needs ~35 GB of device memory)")
def test_more_than_2_pow_31_elements(library):
    backend = harness.select_backend()
    large = [c for c in harness.default_cases(large=True) if c.n > 2**31]
    results = harness.run_checks(library, backend, large, op="tensorflow/addsub")
    print(harness.format_results(results, verbose=True))
    assert [r.status for r in results] == ["passed"] * len(large), harness.format_results(results)


def test_run_gpu_checks_on_a_bundle(library_path, tmp_path):
    # The entry point `trtis-build ops test --gpu` calls, on a one-library bundle.
    import json

    (tmp_path / "kernels").mkdir()
    shutil.copy(library_path, tmp_path / "kernels" / "tensorflow-addsub.so")
    (tmp_path / "manifest.json").write_text(json.dumps({"schema": 1, "kernel_libraries": [
        {"op": "addsub", "framework": "tensorflow", "path": "kernels/tensorflow-addsub.so"}]}))
    results = harness.run_gpu_checks(tmp_path, project_root=ROOT)
    assert results and {r.op for r in results} == {"tensorflow/addsub"}
    _assert_passed(results)


def test_a_planted_overrun_is_caught(tmp_path):
    # The harness's guard bands must see a real GPU kernel writing one element too far.
    nvcc = _nvcc() or pytest.skip("nvcc is not installed")
    cc = STATUS.compute_capabilities[0]
    lib = tmp_path / "overrun.so"
    process.run([nvcc, "-O3", "-Xcompiler", "-fPIC", "-shared",
                 f"-gencode=arch=compute_{cc},code=sm_{cc}", Path(__file__).with_name("planted_overrun.cu"),
                 "-o", lib], stage="test")
    bad = harness.KernelLibrary(lib, harness.template_spec("addsub"))
    results = harness.run_checks(bad, harness.select_backend(),
                                 [harness.Case(0), harness.Case(1), harness.Case(1001, (1, 2, 3, 0))])
    assert [r.status for r in results] == ["passed", "failed", "failed"]
    assert all("wrote outside the view" in r.detail for r in results[1:])
