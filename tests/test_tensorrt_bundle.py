"""TensorRT plugins through the real pipeline: `trtis-build ops build` builds the shipped
addsub plugin and its autoload shim into the bundle, checks both in a real TensorRT registry
(tensorrt-lean) before publishing, and `ops check` runs the C++ plugin check on the result.

Real g++, nvcc (compile only), CMake, Ninja, TensorRT 10.14 headers (kernel-lens) and the lean
runtimes from PyPI: 11.x (default) and 10.16 (scripts/setup.sh puts it in .venv/trt10)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from trtis_build.bundle import fatbin
from trtis_build.core import process
from trtis_build.frameworks.tensorrt import config_header, headers, plugin_check, registry
from trtis_build.core.files import sha256_file
from trtis_build.frameworks.tensorrt.names import PluginId

from .conftest import (EXAMPLE_TF, REPO, TRT10, TRT10_ENV, make_project, needs_tf, needs_trt10, trtis,
                       write_small_base)
from .trt_build import cuda_home, nvcc_path

ADDSUB = PluginId("TRTISExampleAddSub", "1", "trtis")
HEADERS = headers.find_tensorrt()

pytestmark = [
    pytest.mark.compile, pytest.mark.tensorrt, pytest.mark.tensorflow, needs_tf,
    pytest.mark.skipif(HEADERS is None, reason="no TensorRT headers (pip install --no-deps kernel-lens==2.0.1)"),
    pytest.mark.skipif(nvcc_path() is None or cuda_home() is None, reason="nvcc and CUDA headers not found"),
]


def make_trt_project(root: Path) -> Path:
    """The shipped examples: the plugin shares the TensorFlow op's kernel files."""
    make_project(root, EXAMPLE_TF)
    shutil.copytree(REPO / "ops" / "tensorrt" / "addsub", root / "ops" / "tensorrt" / "addsub")
    (root / "pyproject.toml").write_text('[tool.trtis-build]\ntensorrt-namespace = "trtis"\n')
    return root


def build(root: Path, *args: str, env: dict | None = None, check: bool = True):
    result = trtis("ops", "build", "--json", "--cuda-arch", "90", *args, cwd=root, env=env, check=check)
    return result, (json.loads(result.stdout) if result.returncode == 0 else None)


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    root = make_trt_project(tmp_path_factory.mktemp("trt-project"))
    _, data = build(root)
    return root, data["manifest"]


def plugin_entry(manifest: dict) -> dict:
    [entry] = [lib for lib in manifest["libraries"] if lib["framework"] == "tensorrt"]
    return entry


def test_ops_build_puts_the_plugin_and_its_autoload_shim_in_the_bundle(project):
    root, manifest = project
    bundle = root / "build" / "bundle"
    entry = plugin_entry(manifest)
    assert entry["path"] == "tensorrt/libaddsub.so"
    assert entry["plugins"] == [{"name": "TRTISExampleAddSub", "version": "1", "namespace": "trtis"}]
    assert manifest["toolchain"]["tensorrt"]["version"] == HEADERS.version
    autoload = entry["autoload"]
    assert autoload["path"] == "tensorrt/autoload/libaddsub.so"
    assert sha256_file(bundle / autoload["path"]) == autoload["sha256"]
    # The shim links nothing of TensorRT or CUDA: it finds the loaded libnvinfer at run time.
    assert set(autoload["needed"]) <= {"libc.so.6", "libstdc++.so.6", "libgcc_s.so.1", "libdl.so.2", "libm.so.6"}
    # Without a TensorRT 10 runtime configured, the 11.x one here can only show it loads and refuses.
    assert autoload["checked"].startswith("opened only: the TensorRT runtime here is 11.")
    assert autoload["registered"] is False


def test_the_kernels_both_ops_list_are_compiled_once_and_linked_into_both(project):
    root, manifest = project
    log = (root / "build" / "build.log").read_text()
    # One nvcc compile of the shared .cu and one g++ compile of the shared .cc, by the op
    # whose directory holds them (tf_addsub); the plugin links those objects.
    assert log.count("nvcc addsub_kernel.cu") == 1, log
    assert "trt_addsub_cpu" not in log and "trt_addsub_cuda" not in log
    bundle = root / "build" / "bundle"
    for path in ("tensorflow/libaddsub.so", "tensorrt/libaddsub.so", "kernels/tensorrt-addsub.so"):
        assert fatbin.cuda_archs(bundle / path)["sass"] == ["90"], path  # the shared CUDA object is in each
    exported = subprocess.run(["nm", "-D", "--defined-only", str(bundle / "kernels" / "tensorrt-addsub.so")],
                              capture_output=True, text=True, check=True).stdout
    assert "trtis_addsub_cpu" in exported and "trtis_addsub_cuda" in exported, exported


def test_ops_check_runs_the_plugin_check_and_covers_the_shim(project):
    root, _ = project
    report = json.loads(trtis("ops", "check", "--json", cwd=root).stdout)
    assert report["plugin_check"]["ok"] is True
    assert report["plugin_check"]["plugins"] == [str(ADDSUB)]
    paths = {entry["path"]: entry["problems"] for entry in report["libraries"]}
    assert paths["tensorrt/autoload/libaddsub.so"] == []
    # A shim changed after the build is caught by its manifest sha256.
    shim = (root / "build" / "bundle" / "tensorrt" / "autoload" / "libaddsub.so").resolve()
    original = shim.read_bytes()
    try:
        shim.write_bytes(original + b"\0")
        broken = trtis("ops", "check", cwd=root, check=False)
        assert broken.returncode == 6 and "tensorrt/autoload/libaddsub.so: sha256 differs" in broken.stderr
    finally:
        shim.write_bytes(original)


@needs_trt10
def test_with_a_tensorrt_10_runtime_the_build_checks_that_the_shim_registers(project):
    root, _ = project
    _, data = build(root, env={"TRTIS_BUILD_TENSORRT_PYTHON_PATH": str(TRT10)})
    autoload = plugin_entry(data["manifest"])["autoload"]
    assert autoload["checked"].startswith("registered its plugins when opened in tensorrt_lean 10.")
    assert autoload["registered"] is True
    # The proof is kept for the same shim and library by a later build without the setting.
    _, again = build(root)
    assert plugin_entry(again["manifest"])["autoload"]["registered"] is True
    # What Triton's plugins= does with the published path: dlopen after TensorRT is loaded.
    shim = root / "build" / "bundle" / autoload["path"]
    probe = registry.probe_registry([shim], lookups=[ADDSUB], dlopen=True, extra_env=TRT10_ENV)
    [load] = probe.libraries
    assert load.registered == (ADDSUB,) and probe.found(ADDSUB)


def test_a_tensorrt_python_path_without_a_runtime_fails_before_compiling(project, tmp_path):
    root, manifest = project
    before = (root / "build" / "bundle").resolve()
    result, _ = build(root, env={"TRTIS_BUILD_TENSORRT_PYTHON_PATH": str(tmp_path)}, check=False)
    assert result.returncode == 4
    assert "holds no TensorRT Python runtime" in result.stderr and "pip install --no-deps --target" in result.stderr
    assert (root / "build" / "bundle").resolve() == before  # the bundle was kept


def test_a_plugin_that_registers_other_names_is_not_published(project, tmp_path):
    """op.toml says one namespace; the compiled library registers another (a hand-written
    namespace in the adapter): the registry check refuses the bundle."""
    root = make_trt_project(tmp_path / "p")
    adapter = root / "ops" / "tensorrt" / "addsub" / "addsub_plugin.cc"
    text = adapter.read_text()
    assert "TRTIS_PLUGIN_NAMESPACE" in text
    adapter.write_text(text.replace("TRTIS_PLUGIN_NAMESPACE", '"handwritten"'))
    result, _ = build(root, "--no-cuda", check=False)
    assert result.returncode != 0
    assert "handwritten" in result.stderr and "TRTISExampleAddSub" in result.stderr
    assert not (root / "build" / "bundle").exists()


@needs_trt10
def test_the_shim_under_ld_preload_loads_tensorrt_itself_and_registers(project, tmp_path):
    """The seed's way (`trtis-launch --trtis-plugin-mode=preload`): the shim is opened before
    any TensorRT, so it loads libnvinfer.so.10 by soname, the library Triton's TensorRT backend
    links. The full TensorRT cannot be installed here: a file of that name pointing at the 10.16
    lean library stands in for it (same registry API; the loader then shares it with the
    Python bindings, which open the same file)."""
    root, _ = project
    shim = (root / "build" / "bundle" / "tensorrt" / "autoload" / "libaddsub.so").resolve()
    [lean] = (TRT10 / "tensorrt_lean_libs").glob("libnvinfer_lean.so.10")
    (tmp_path / "libnvinfer.so.10").symlink_to(lean)
    probe = registry.probe_registry([], lookups=[ADDSUB], extra_env={
        **TRT10_ENV, "LD_PRELOAD": str(shim), "LD_LIBRARY_PATH": str(tmp_path)})
    assert probe.version.startswith("10.") and probe.found(ADDSUB)
    # Without it on the library path, the shim says what to do and the process runs on.
    alone = registry.probe_registry([], lookups=[ADDSUB], extra_env={**TRT10_ENV, "LD_PRELOAD": str(shim)})
    assert not alone.found(ADDSUB) and alone.crash is None


def test_ops_test_runs_the_plugin_check_for_a_plugin_op(project):
    root, _ = project
    report = json.loads(trtis("ops", "test", "--json", "--cuda-arch", "90", cwd=root).stdout)
    entry = report["ops"]["tensorrt/addsub"]
    assert entry["passed"] and str(ADDSUB) in entry["summary"]
    assert report["ops"]["tensorflow/addsub"]["passed"]


@needs_trt10
@pytest.mark.image
def test_server_image_hands_triton_the_shim_and_the_shim_registers(project, tmp_path):
    """`trtis-build server` with a plugin op: the layer carries the plugin library and its
    shim, the launcher gives Triton the shim, and that file, taken out of the image, registers
    the plugin when merely dlopened into a TensorRT 10 registry (what Triton's plugins= does)."""
    import tarfile

    from trtis_build.image import oci

    root, _ = project
    out = tmp_path / "image"
    base, _ = write_small_base(tmp_path / "base")  # declares no framework versions: skew not checked
    trtis("server", "--base", f"oci:{base.root}:1", "--out", str(out), "--tag", "ops:1", cwd=root,
          env={"SOURCE_DATE_EPOCH": "1700000000"})
    layout = oci.Layout.open(out)
    manifest = layout.read_json(layout.find_manifest()[0].digest)
    config = layout.read_json(manifest["config"]["digest"])
    assert config["config"]["Labels"]["org.trtis-build.tensorrt.plugins"] == "trtis::TRTISExampleAddSub/1"
    unpacked = tmp_path / "layer"
    with tarfile.open(layout.blob_path(manifest["layers"][-1]["digest"]), "r:gz") as tar:
        names = tar.getnames()
        tar.extractall(unpacked, filter="data")
    ops_dir = unpacked / "opt" / "tritonserver" / "ops"
    assert {"opt/tritonserver/ops/tensorrt/libaddsub.so",
            "opt/tritonserver/ops/tensorrt/autoload/libaddsub.so"} <= set(names)
    # The image's launcher, run here against the unpacked layer (--trtis-dry-run: check, print).
    done = process.run([sys.executable, str(ops_dir / "trtis-launch"), "--trtis-dry-run", "tritonserver"],
                       stage="test", extra_env={"TRTIS_LAUNCH_BUNDLE": str(ops_dir)})
    plan = json.loads(done.output.strip().splitlines()[-1])
    shim = ops_dir / "tensorrt" / "autoload" / "libaddsub.so"
    assert f"--backend-config=tensorrt,plugins={shim}" in plan["command"]
    probe = registry.probe_registry([shim], lookups=[ADDSUB], dlopen=True, extra_env=TRT10_ENV)
    assert probe.libraries[0].registered == (ADDSUB,) and probe.found(ADDSUB)
