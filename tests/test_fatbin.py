"""fatbin: list the SASS/PTX a real nvcc-built library carries, and the driver's run rules.

nvcc compiles here (no GPU needed); the listing is checked with cuobjdump and with the
built-in fatbinary reader, which must agree.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from trtis_build.bundle import fatbin
from trtis_build.core import process
from trtis_build.core.errors import BundleError

KERNEL = """
__global__ void twice(float* x, int n) { int i = threadIdx.x; if (i < n) x[i] *= 2.0f; }
extern "C" int launch(float* x, int n) { twice<<<1, 32>>>(x, n); return 0; }
"""


def _nvcc() -> str:
    for candidate in (shutil.which("nvcc"), os.environ.get("CUDA_HOME", "") + "/bin/nvcc",
                      "/usr/local/cuda/bin/nvcc"):
        if candidate and Path(candidate).is_file():
            return candidate
    pytest.skip("nvcc is not installed (CUDA toolkit or the nvidia-cuda-nvcc wheel)")


def _build(tmp: Path, name: str, gencodes: list[str], *, shared: bool = True) -> Path:
    src = tmp / "twice.cu"
    src.write_text(KERNEL)
    out = tmp / name
    flags = ["-Xcompiler", "-fPIC", "-shared"] if shared else ["-c"]
    process.run([_nvcc(), "-O2", *flags, *gencodes, src, "-o", out], stage="test")
    return out


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("fatbin")
    return {
        # The case: SASS for two archs plus PTX of the newer one.
        "two_plus_ptx": _build(tmp, "libtwo.so", [
            "-gencode=arch=compute_75,code=sm_75", "-gencode=arch=compute_90,code=sm_90",
            "-gencode=arch=compute_90,code=compute_90"]),
        "ampere_only": _build(tmp, "amp.o", ["-gencode=arch=compute_80,code=sm_80"], shared=False),
        "arch_specific": _build(tmp, "liba.so", ["-gencode=arch=compute_90a,code=sm_90a",
                                                 "-gencode=arch=compute_90a,code=compute_90a"]),
    }


pytestmark = pytest.mark.compile


@pytest.mark.parametrize("reader", ["cuobjdump", "python"])
def test_listing_of_real_nvcc_output(built, reader):
    if reader == "cuobjdump" and fatbin.find_cuobjdump() is None:
        pytest.skip("cuobjdump not installed (pip install nvidia-cuda-cuobjdump)")
    assert fatbin.cuda_archs(built["two_plus_ptx"], reader=reader) == {"sass": ["75", "90"],
                                                                       "ptx": ["90"]}
    assert fatbin.cuda_archs(built["ampere_only"], reader=reader) == {"sass": ["80"], "ptx": []}
    assert fatbin.cuda_archs(built["arch_specific"], reader=reader) == {"sass": ["90a"],
                                                                        "ptx": ["90a"]}


def test_library_without_device_code_lists_nothing(tmp_path):
    gxx = shutil.which("g++") or pytest.skip("g++ is not installed")
    src = tmp_path / "plain.cc"
    src.write_text("extern \"C\" int f() { return 1; }\n")
    lib = tmp_path / "libplain.so"
    process.run([gxx, "-shared", "-fPIC", src, "-o", lib], stage="test")
    assert fatbin.cuda_archs(lib) == {"sass": [], "ptx": []}
    assert fatbin.read_fatbin(lib) == {"sass": [], "ptx": []}


def test_unreadable_inputs_are_bundle_errors(tmp_path):
    text = tmp_path / "notes.txt"
    text.write_text("not a library")
    with pytest.raises(BundleError, match="not a 64-bit little-endian ELF"):
        fatbin.cuda_archs(text, reader="python")
    with pytest.raises(BundleError, match="does not exist"):
        fatbin.cuda_archs(tmp_path / "missing.so")
    with pytest.raises(ValueError, match="reader must be"):
        fatbin.cuda_archs(text, reader="objdump")


def test_runs_on_follows_the_driver_rules(built):
    archs = fatbin.read_fatbin(built["two_plus_ptx"])       # SASS 75, 90; PTX 90
    assert fatbin.matching_code(archs, "90") == "sass sm_90"
    assert fatbin.matching_code(archs, "75") == "sass sm_75"
    assert fatbin.matching_code(archs, "100") == "ptx compute_90"  # JIT from older PTX
    assert fatbin.matching_code(archs, "120") == "ptx compute_90"
    assert not fatbin.runs_on(archs, "80")  # sm_75 SASS is not for major 8; PTX 90 > 80
    assert not fatbin.runs_on(archs, "86")

    ampere = fatbin.read_fatbin(built["ampere_only"])        # SASS 80 only
    assert fatbin.runs_on(ampere, "86") and fatbin.runs_on(ampere, "sm_89")
    assert not fatbin.runs_on(ampere, "90")                  # the example
    assert not fatbin.runs_on(ampere, "75")

    specific = fatbin.read_fatbin(built["arch_specific"])    # sm_90a: exactly 9.0
    assert fatbin.runs_on(specific, "90")
    assert not fatbin.runs_on(specific, "100")


def test_arch_spelling():
    assert fatbin.parse_arch("sm_86") == (8, 6, "")
    assert fatbin.parse_arch("compute_90a") == (9, 0, "a")
    assert fatbin.parse_arch(120) == (12, 0, "")
    for bad in ("9", "sm90", "gfx90a", ""):
        with pytest.raises(ValueError, match="not a CUDA architecture"):
            fatbin.parse_arch(bad)
    with pytest.raises(ValueError, match="has no suffix"):
        fatbin.runs_on({"sass": ["90"], "ptx": []}, "90a")
    assert fatbin.describe({"sass": ["75", "90"], "ptx": ["90"]}) == \
        "SASS sm_75 sm_90; PTX compute_90"
    assert fatbin.describe({"sass": [], "ptx": []}) == "SASS none; PTX none"


def test_cuobjdump_is_found_in_its_pypi_package():
    try:
        import importlib.metadata as md
        md.distribution("nvidia-cuda-cuobjdump")
    except md.PackageNotFoundError:
        pytest.skip("nvidia-cuda-cuobjdump is not installed")
    found = fatbin.find_cuobjdump(env={"PATH": ""})  # not on PATH: through the package files
    assert found and Path(found).name == "cuobjdump"
