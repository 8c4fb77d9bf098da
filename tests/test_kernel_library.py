"""Kernel sources that include their framework (TensorRT plugin code includes NvInfer*.h
everywhere): every compile of a TensorRT op gets TensorRT's and CUDA's headers as -isystem
(found, and not warned about), and the framework-free kernel library (the GPU harness's) is
built only where the kernel sources are framework-free, or as op.toml's `kernel_library`
says."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.conftest import trtis
from trtis_build.core.errors import OpSpecError
from trtis_build.ops.discover import load_op


def _op(root: Path, framework: str, files: dict[str, str], toml: str = "") -> Path:
    directory = root / "ops" / framework / "kl"
    directory.mkdir(parents=True)
    for name, text in files.items():
        (directory / name).write_text(text)
    (directory / "op.toml").write_text(f'version = "1"\n{toml}')
    return directory


TF_ADAPTER = '#include "tensorflow/core/framework/op.h"\nREGISTER_OP("Kl");\n'


def test_the_kernel_library_follows_the_kernel_sources_or_op_toml(tmp_path):
    free = load_op(_op(tmp_path / "a", "tensorflow", {"kl_op.cc": TF_ADAPTER, "kl_kernel.cu": "__global__ void k() {}\n"},
                       'ops = ["Kl"]\n'), "tensorflow", root=tmp_path / "a")
    assert free.kernel_library and free.cuda_sources
    off = load_op(_op(tmp_path / "b", "tensorflow", {"kl_op.cc": TF_ADAPTER, "kl_kernel.cu": "__global__ void k() {}\n"},
                      'ops = ["Kl"]\nkernel_library = false\n'), "tensorflow", root=tmp_path / "b")
    assert not off.kernel_library
    with pytest.raises(OpSpecError, match="'kernel_library' must be true or false"):
        load_op(_op(tmp_path / "c", "tensorflow", {"kl_op.cc": TF_ADAPTER}, 'ops = ["Kl"]\nkernel_library = "no"\n'),
                "tensorflow", root=tmp_path / "c")


@pytest.mark.compile
@pytest.mark.tensorrt
def test_plugin_kernels_that_include_tensorrt_build_without_a_kernel_library(tmp_path):
    if not (shutil.which("nvcc") or Path("/usr/local/cuda/bin/nvcc").is_file()):
        pytest.fail("nvcc is needed (CI has it)")
    shutil.copy(Path(__file__).resolve().parent.parent / "pyproject.toml", tmp_path / "pyproject.toml")
    trtis("ops", "add", "nvk", "--framework", "tensorrt", cwd=tmp_path)
    op = tmp_path / "ops" / "tensorrt" / "nvk"
    for name in ("nvk_kernel.cu", "nvk_kernel.cc"):  # as TensorRT's own plugins do
        source = op / name
        source.write_text("#include <NvInferRuntime.h>\n"
                          'static_assert(NV_TENSORRT_MAJOR >= 10, "TensorRT headers");\n' + source.read_text())
    listed = json.loads(trtis("ops", "list", "--json", cwd=tmp_path).stdout)[0]
    assert listed["kernel_library"] is False and listed["cuda_sources"] == ["ops/tensorrt/nvk/nvk_kernel.cu"]
    built = json.loads(trtis("ops", "build", "--cuda-arch", "90", "--json", cwd=tmp_path).stdout)
    assert built["manifest"]["kernel_libraries"] == [] and built["manifest"]["libraries"][0]["cuda_archs"] == ["90"]
    log = (tmp_path / "build" / "build.log").read_text()
    assert "warning" not in log.lower(), log  # -isystem: TensorRT's deprecations are not ours


def _exported(library: Path) -> set[str]:
    import subprocess

    out = subprocess.run(["nm", "-D", "--defined-only", str(library)], capture_output=True, text=True, check=True).stdout
    return {line.split()[-1] for line in out.splitlines() if line.split()[1:2] == ["T"]}


@pytest.mark.compile
@pytest.mark.tensorrt
def test_plugins_export_exactly_tensorrts_entry_points_by_name(tmp_path):
    shutil.copy(Path(__file__).resolve().parent.parent / "pyproject.toml", tmp_path / "pyproject.toml")
    trtis("ops", "add", "exp", "--framework", "tensorrt", "--no-cuda", cwd=tmp_path)
    built = json.loads(trtis("ops", "build", "--no-cuda", "--json", cwd=tmp_path).stdout)
    library = tmp_path / "build" / "bundle" / built["manifest"]["libraries"][0]["path"]
    # No visibility attribute in the code (TensorRT's macro is empty outside its build): the
    # export map exports the entry points, and the kernels and helpers stay inside.
    assert "visibility" not in (tmp_path / "ops" / "tensorrt" / "exp" / "exp_plugin.cc").read_text()
    assert _exported(library) == {"getCreators", "setLoggerFinder", "trtis_plugin_check_inputs",
                                  "trtis_plugin_reference"}

    # getCreators under a C++ name: TensorRT finds nothing to call, and the error says why.
    adapter = tmp_path / "ops" / "tensorrt" / "exp" / "exp_plugin.cc"
    adapter.write_text(adapter.read_text().replace("TRTIS_EXPORT nvinfer1::IPluginCreatorInterface* const* getCreators",
                                                   "nvinfer1::IPluginCreatorInterface* const* getCreators"))
    refused = trtis("ops", "build", "--no-cuda", cwd=tmp_path, check=False)
    assert refused.returncode != 0 and 'getCreators (and setLoggerFinder) as extern "C"' in refused.stderr, refused.stderr
