"""Ops with only GPU kernels on a machine without a GPU: said up front, by name, instead of a
TensorFlow trace far later. A CPU-only build (`--no-cuda`, or no nvcc) skips such an op with
that reason instead of failing to link its CUDA code; `model add` refuses to compute reference
outputs it cannot compute (exit 11); with --no-reference the model is made, and `smoke` says
before any server starts that Triton cannot run it here (exit 9)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from tests.conftest import needs_tf, trtis
from trtis_build.core.errors import ModelError, ServerError
from trtis_build.frameworks.tensorflow import TensorFlow, gpu_only
from trtis_build.serving import models

GPU_ONLY = {"GpuOnly": "tensorflow/libgpuonly.so"}
LIBRARIES = [{"path": "tensorflow/libgpuonly.so", "devices": {"GpuOnly": ["GPU"]}},
             {"path": "tensorflow/libboth.so", "devices": {"Both": ["CPU", "GPU"]}}]


def test_gpu_only_ops_are_named_where_no_gpu_is(monkeypatch):
    assert models.gpu_only_ops({**GPU_ONLY, "Both": "tensorflow/libboth.so"}, LIBRARIES) == ["GpuOnly (GPU)"]
    monkeypatch.setattr(models, "no_gpu_here", lambda: "this machine has no NVIDIA GPU")
    with pytest.raises(ModelError, match=r"GpuOnly \(GPU\) has only GPU kernels, and this machine has no NVIDIA "
                                         r"GPU: model add runs"):
        models.require_cpu_kernels(GPU_ONLY, LIBRARIES, what="model add runs it", hint="h")
    models.require_cpu_kernels({"Both": "tensorflow/libboth.so"}, LIBRARIES, what="x", hint="h")  # CPU kernel: fine
    monkeypatch.setattr(models, "no_gpu_here", lambda: None)  # a GPU machine: fine
    models.require_cpu_kernels(GPU_ONLY, LIBRARIES, what="x", hint="h")


def test_a_model_directory_is_checked_from_its_own_files(tmp_path, monkeypatch):
    monkeypatch.setattr(models, "no_gpu_here", lambda: "this machine has no NVIDIA GPU")
    (tmp_path / "m" / "1" / "ops").mkdir(parents=True)
    (tmp_path / "m" / models.METADATA).write_text(json.dumps({"ops": {"custom": GPU_ONLY}}))
    (tmp_path / "m" / "1" / "ops" / "manifest.json").write_text(json.dumps({"libraries": LIBRARIES}))
    with pytest.raises(ServerError, match="Triton cannot run model m here"):
        models.model_gpu_only_check(tmp_path / "m", what="Triton cannot run model m here", hint="h", error=ServerError)
    (tmp_path / "b").mkdir()  # a model of built-ins (no trtis-model.json ops): nothing to say
    models.model_gpu_only_check(tmp_path / "b", what="x", hint="h", error=ServerError)


def test_gpu_only_is_read_from_the_kernel_registrations(tmp_path):
    source = tmp_path / "x_op.cc"
    op = SimpleNamespace(sources=[source], kernel_sources=[], gpu_sources=[], cxx_flags=())
    source.write_text('REGISTER_KERNEL_BUILDER(Name("X").Device(tensorflow::DEVICE_GPU), XGpu);\n')
    assert gpu_only(op)
    source.write_text(source.read_text() + 'REGISTER_KERNEL_BUILDER(Name("X").Device( DEVICE_CPU ), XCpu);\n')
    assert not gpu_only(op)
    seam, tf_info = TensorFlow(), object()
    toolchain = SimpleNamespace(cuda=None, framework=lambda name: tf_info)
    source.write_text('REGISTER_KERNEL_BUILDER(Name("X").Device(DEVICE_GPU), XGpu);\n')
    assert "only GPU kernels" in seam.skip_reason(op, toolchain, SimpleNamespace(no_cuda=False))
    toolchain.cuda = object()
    assert seam.skip_reason(op, toolchain, SimpleNamespace(no_cuda=False)) is None
    assert "(--no-cuda)" in seam.skip_reason(op, toolchain, SimpleNamespace(no_cuda=True))


def _gpu_only_op(project: Path) -> None:
    """`ops add` with CUDA, then its CPU kernel registration taken out."""
    trtis("ops", "add", "gpuonly", cwd=project)
    adapter = project / "ops" / "tensorflow" / "gpuonly" / "gpuonly_op.cc"
    text = adapter.read_text()
    cpu = 'REGISTER_KERNEL_BUILDER(Name("Gpuonly").Device(tensorflow::DEVICE_CPU), GpuonlyCpuOp);'
    assert cpu in text
    adapter.write_text(text.replace(cpu, ""))


SAVE = """
import sys, tensorflow as tf
lib = tf.load_op_library(sys.argv[1])
class M(tf.Module):
    @tf.function(input_signature=[tf.TensorSpec([None], tf.float32), tf.TensorSpec([None], tf.float32)])
    def serve(self, x, y):
        total, difference = lib.gpuonly(x, y)
        return {"sum": total, "difference": difference}
m = M()
tf.saved_model.save(m, sys.argv[2], signatures={"serving_default": m.serve})
"""


@pytest.mark.compile
@pytest.mark.tensorflow
@needs_tf
def test_gpu_only_ops_are_skipped_on_cpu_builds_and_refused_where_they_cannot_run(tmp_path):
    if models.no_gpu_here() is None:
        pytest.skip("this machine has a GPU: nothing to refuse")  # the lent GPU machine
    _gpu_only_op(tmp_path)
    trtis("ops", "add", "cpuop", "--no-cuda", cwd=tmp_path)
    cpu_only = json.loads(trtis("ops", "build", "--no-cuda", "--json", cwd=tmp_path).stdout)
    skipped = {entry["op"]: entry["reason"] for entry in cpu_only["manifest"]["skipped"]}
    assert "only GPU kernels" in skipped["tensorflow/gpuonly"] and "--no-cuda" in skipped["tensorflow/gpuonly"]
    assert [lib["op"] for lib in cpu_only["manifest"]["libraries"]] == ["cpuop"]
    if not (shutil.which("nvcc") or Path("/usr/local/cuda/bin/nvcc").is_file()):
        pytest.fail("nvcc is needed for the rest (CI has it)")
    built = json.loads(trtis("ops", "build", "--cuda-arch", "90", "--json", cwd=tmp_path).stdout)
    library = next(lib for lib in built["manifest"]["libraries"] if lib["op"] == "gpuonly")
    assert library["devices"] == {"Gpuonly": ["GPU"]}
    savedmodel = tmp_path / "savedmodel"
    subprocess.run([sys.executable, "-c", SAVE, str(tmp_path / "build" / "bundle" / library["path"]), str(savedmodel)],
                   check=True, capture_output=True, env={"TF_CPP_MIN_LOG_LEVEL": "3", "PATH": "/usr/bin:/bin"})
    refused = trtis("model", "add", "m", "--savedmodel", str(savedmodel), cwd=tmp_path, check=False)
    assert refused.returncode == 11, refused.stderr
    assert "Gpuonly (GPU) has only GPU kernels, and this machine has no NVIDIA GPU" in refused.stderr
    assert "Traceback" not in refused.stderr and not (tmp_path / "models" / "m").exists()
    trtis("model", "add", "m", "--savedmodel", str(savedmodel), "--no-reference", cwd=tmp_path)
    smoke = trtis("smoke", cwd=tmp_path, check=False, timeout=120)
    assert smoke.returncode == 9 and "Triton cannot run model m here" in smoke.stderr, smoke.stderr
