"""Integration tests: real g++, nvcc (compile only), CMake, Ninja and tensorflow-cpu.

One module-scoped project holds the example op, built once with the default CUDA arch
list; the other tests rebuild it in ways that must keep it consistent."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from .conftest import CLASSIC_TF, EXAMPLE_TF, NESTED_TF, edited, import_trap, make_project, needs_tf, trtis

pytestmark = [pytest.mark.compile, pytest.mark.tensorflow, needs_tf]


def build_json(project: Path, *args: str, check: bool = True):
    result = trtis("ops", "build", "--json", *args, cwd=project, check=check)
    return result, (json.loads(result.stdout) if result.returncode == 0 else None)


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    root = make_project(tmp_path_factory.mktemp("example"), EXAMPLE_TF)
    _, data = build_json(root)
    return root, data


def test_cold_build_makes_a_verified_bundle(project):
    root, data = project
    manifest = data["manifest"]
    bundle = root / "build" / "bundle"
    assert bundle.is_symlink() and (bundle / "manifest.json").is_file()
    [lib] = manifest["libraries"]
    assert lib["ops"] == ["TRTISExampleAddSub"]
    assert lib["devices"]["TRTISExampleAddSub"] == ["CPU", "GPU"]
    assert lib["outputs"]["TRTISExampleAddSub"] == ["sum", "difference"]
    assert "libtensorflow_framework.so.2" in lib["needed"]
    assert not any("cudart" in needed for needed in lib["needed"])  # static CUDA runtime
    # default arch list: sm_75 up to the newest nvcc knows, PTX for the newest
    assert manifest["cuda"]["archs"][0] == "75" and manifest["cuda"]["ptx"] == manifest["cuda"]["archs"][-1]
    assert int(manifest["cuda"]["archs"][-1]) >= 120
    from trtis_build.core.files import sha256_file

    assert sha256_file(bundle / lib["path"]) == lib["sha256"]
    assert (bundle / "kernels" / "tensorflow-addsub.so").is_file()
    assert manifest["toolchain"]["tensorflow"]["version"].startswith("2.")


def test_noop_rebuild_compiles_nothing_and_imports_no_tensorflow(project):
    root, first = project
    result = trtis("ops", "build", "--json", cwd=root, env=import_trap(root, "tensorflow"))
    data = json.loads(result.stdout)
    assert data["compiled"] is False and data["changed"] is False
    assert data["version_dir"] == first["version_dir"]


def test_touching_the_cuda_file_recompiles_only_it_and_skips_the_tensorflow_check(project):
    root, _ = project
    cu = root / "ops" / "tensorflow" / "addsub" / "addsub_kernel.cu"
    cu.write_text(cu.read_text() + "\n// touched\n")
    # Device code registers no ops: the registry check is keyed by the library's host code,
    # so this rebuild must succeed without any TensorFlow process (nvcc's output differs in
    # the symbol table at every compile, so the file's sha256 alone would miss the cache).
    data = json.loads(trtis("ops", "build", "--json", cwd=root, env=import_trap(root, "tensorflow")).stdout)
    assert data["compiled"] is True
    [lib] = data["manifest"]["libraries"]
    assert lib["ops"] == ["TRTISExampleAddSub"] and lib["devices"]["TRTISExampleAddSub"] == ["CPU", "GPU"]
    log = (root / "build" / "build.log").read_text()
    assert "nvcc addsub_kernel.cu" in log
    assert "addsub_op.cc" not in log  # the TensorFlow adapter was not recompiled


def test_ops_test_runs_the_ops_own_tests(project):
    root, _ = project
    result = trtis("ops", "test", "--json", cwd=root)
    report = json.loads(result.stdout)
    entry = report["ops"]["tensorflow/addsub"]
    assert entry["passed"], entry
    assert "passed" in entry["summary"] and "failed" not in entry["summary"]


def test_compile_error_reports_file_line_and_keeps_the_bundle(project):
    root, _ = project
    before = os.readlink(root / "build" / "bundle")
    adapter = root / "ops" / "tensorflow" / "addsub" / "addsub_op.cc"
    with edited(adapter, "c->set_output(0, shape);", "c->set_output(0, shape) oops;"):
        result = trtis("ops", "build", cwd=root, check=False)
    assert result.returncode == 5
    assert "addsub_op.cc:" in result.stderr and "error" in result.stderr
    assert "Traceback" not in result.stderr
    assert os.readlink(root / "build" / "bundle") == before
    # The TensorFlow probe started beside the compiler went with the failed build.
    assert not probes_left(), probes_left()


def probes_left() -> list[str]:
    """Command lines of running early TensorFlow probes (tf_probe.py serve)."""
    found = []
    for proc in Path("/proc").iterdir():
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if any(a.endswith(b"tf_probe.py") for a in argv) and b"serve" in argv:
            found.append(" ".join(a.decode(errors="replace") for a in argv))
    return found


def test_registered_names_must_match_op_toml(project):
    root, _ = project
    before = os.readlink(root / "build" / "bundle")
    op_toml = root / "ops" / "tensorflow" / "addsub" / "op.toml"
    with edited(op_toml, 'ops = ["TRTISExampleAddSub"]', 'ops = ["TRTISExampleAddSubV2"]'):
        result = trtis("ops", "build", cwd=root, check=False)
    assert result.returncode == 3
    assert "declared but not registered: TRTISExampleAddSubV2" in result.stderr
    assert "registered but not declared: TRTISExampleAddSub" in result.stderr
    assert os.readlink(root / "build" / "bundle") == before


def test_killed_build_keeps_the_previous_bundle_and_no_stale_lock(project):
    root, _ = project
    bundle = root / "build" / "bundle"
    before = os.readlink(bundle)
    adapter = root / "ops" / "tensorflow" / "addsub" / "addsub_op.cc"
    adapter.write_text(adapter.read_text() + "\n// force a rebuild\n")
    proc = subprocess.Popen([sys.executable, "-m", "trtis_build", "ops", "build"], cwd=root,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    time.sleep(3)  # inside the compile step
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert os.readlink(bundle) == before
    assert json.loads((bundle / "manifest.json").read_text())["libraries"]
    # the OS released the lock with the process: the next build runs at once
    result, data = build_json(root)
    assert data["compiled"] is True  # the interrupted compile was redone


def test_concurrent_builds_are_serialized(project):
    root, _ = project
    from trtis_build.core.locks import FileLock

    with FileLock(root / "build" / ".lock"):
        proc = subprocess.Popen([sys.executable, "-m", "trtis_build", "ops", "build"], cwd=root,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        time.sleep(2)
        assert proc.poll() is None  # waiting for our lock
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    assert "waiting for another build" in err


def test_load_bundle_refuses_a_second_library_with_the_same_op(project, tmp_path):
    root, _ = project
    copy = tmp_path / "libcopy.so"
    library = root / "build" / "bundle" / "tensorflow" / "libaddsub.so"
    copy.write_bytes(library.read_bytes() + b"\0")  # same ops, different file
    code = (
        "import sys, trtis_build\n"
        "from trtis_build.frameworks.tensorflow.loader import load_library\n"
        "from trtis_build.core.errors import BundleError\n"
        f"trtis_build.load_bundle({str(root / 'build' / 'bundle')!r})\n"
        "try:\n"
        f"    load_library({str(copy)!r}, ['TRTISExampleAddSub'])\n"
        "except BundleError as e:\n"
        "    print('REFUSED', e.message); sys.exit(0)\n"
        "sys.exit(1)\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "REFUSED" in result.stdout and "TRTISExampleAddSub" in result.stdout


def test_scaffolded_ops_build_and_pass_their_tests(tmp_path):
    root = tmp_path
    trtis("ops", "add", "scale_it", cwd=root)
    trtis("ops", "add", "cpu_only", "--no-cuda", cwd=root)
    result = trtis("ops", "test", "--json", "--cuda-arch", "75", cwd=root)
    report = json.loads(result.stdout)
    assert report["ops"]["tensorflow/scale_it"]["passed"]
    assert report["ops"]["tensorflow/cpu_only"]["passed"]
    manifest = json.loads((root / "build" / "bundle" / "manifest.json").read_text())
    devices = {lib["op"]: lib["devices"] for lib in manifest["libraries"]}
    assert devices["scale_it"] == {"ScaleIt": ["CPU", "GPU"]}
    assert devices["cpu_only"] == {"CpuOnly": ["CPU"]}


def test_without_nvcc_cpu_kernels_still_build(tmp_path):
    root = make_project(tmp_path, EXAMPLE_TF)
    env = {"CUDA_HOME": str(tmp_path / "no-cuda"), "PATH": "/usr/bin:/bin"}
    result = trtis("ops", "build", "--json", cwd=root, env=env)
    manifest = json.loads(result.stdout)["manifest"]
    assert manifest["cuda"]["enabled"] is False
    assert manifest["libraries"][0]["devices"]["TRTISExampleAddSub"] == ["CPU"]
    assert manifest["kernel_libraries"] == []


def test_classic_tensorflow_layout_builds_unchanged(tmp_path):
    root = make_project(tmp_path, CLASSIC_TF)
    result = trtis("ops", "test", "--json", "--cuda-arch", "75", cwd=root)
    assert json.loads(result.stdout)["ops"]["tensorflow/add_one"]["passed"]
    manifest = json.loads((root / "build" / "bundle" / "manifest.json").read_text())
    [lib] = manifest["libraries"]
    assert lib["layout"] == "classic"
    assert lib["devices"]["TRTISClassicAddOne"] == ["CPU", "GPU"]  # GOOGLE_CUDA registrations built


def test_a_template_repository_tree_builds_with_its_op_toml_alone(tmp_path):
    """Issue 13: *_kernels.cc that include TensorFlow are adapters, files in cc/kernels and
    cc/ops are found, a '>'-namespaced op name is accepted and checked."""
    root = make_project(tmp_path, NESTED_TF)
    listed = trtis("ops", "list", cwd=root).stdout
    assert "adapter (framework headers):" in listed and "cc/kernels/zero_out_kernels.cc" in listed
    result = trtis("ops", "test", "--json", "--no-cuda", cwd=root)
    assert json.loads(result.stdout)["ops"]["tensorflow/zero_out"]["passed"]
    manifest = json.loads((root / "build" / "bundle" / "manifest.json").read_text())
    [lib] = manifest["libraries"]
    assert sorted(lib["ops"]) == ["TRTIS>ZeroOut", "TRTISKeepFirst"]


def test_ops_check_reports_cuda_code_per_library(project):
    root, _ = project
    result = trtis("ops", "check", "--json", "--gpu-arch", "90", cwd=root)
    report = json.loads(result.stdout)
    [lib] = [e for e in report["libraries"] if e["path"] == "tensorflow/libaddsub.so"]
    assert "90" in lib["archs"]["sass"] and lib["runs_on"] == "sass sm_90"
    too_old = trtis("ops", "check", "--gpu-arch", "70", cwd=root, check=False)
    assert too_old.returncode == 6 and "no SASS or PTX that runs on sm_70" in too_old.stderr
