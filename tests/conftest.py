"""Shared fixtures. Unit tests use `pure` (no process may start: cibuildwheel's
mock_protection idea); integration tests copy a tiny real project into tmp_path and build
it for real with g++, nvcc, CMake, Ninja and TensorFlow."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
EXAMPLE_TF = REPO / "ops" / "tensorflow" / "addsub"
CLASSIC_TF = REPO / "tests" / "data" / "classic" / "ops" / "tensorflow" / "add_one"
# TensorFlow's template-repository layout: cc/kernels/*_kernels.cc, cc/ops/*_ops.cc, a '>' namespace.
NESTED_TF = REPO / "tests" / "data" / "nested" / "ops" / "tensorflow" / "zero_out"


def has_tensorflow() -> bool:
    import importlib.util

    return importlib.util.find_spec("tensorflow") is not None


# A TensorRT 10 runtime beside the default (11.x) one, installed by scripts/setup.sh: the
# headers here are 10.14, and calls into the registry through its virtual table (the autoload
# shims) need the same major.
TRT10 = Path(os.environ.get("TRTIS_TEST_TRT10_PATH", REPO / ".venv" / "trt10"))
TRT10_ENV = {"PYTHONPATH": str(TRT10)}
needs_trt10 = pytest.mark.skipif(not (TRT10 / "tensorrt_lean_bindings").is_dir(),
                                 reason=f"no TensorRT 10 lean runtime at {TRT10} (bash scripts/setup.sh installs it)")

needs_tf = pytest.mark.skipif(not has_tensorflow(), reason="tensorflow-cpu not installed "
                              "(scripts/setup.sh installs it)")
needs_clang = pytest.mark.skipif(shutil.which("clang++") is None or shutil.which("ld.lld") is None,
                                 reason="clang++ or ld.lld not installed (scripts/setup.sh installs clang and lld)")


@pytest.fixture
def pure(monkeypatch):
    """Fail the test if the code under test starts any process."""
    from trtis_build.core import process

    def refuse(*args, **kwargs):
        raise AssertionError(f"unit test tried to start a process: {args[:1]}")

    monkeypatch.setattr(process, "run", refuse)
    monkeypatch.setattr(process, "start", refuse)
    monkeypatch.setattr(subprocess, "Popen", refuse)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now (for the tests' own servers)."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def make_project(root: Path, *op_dirs: Path, framework: str = "tensorflow") -> Path:
    for op_dir in op_dirs:
        shutil.copytree(op_dir, root / "ops" / framework / op_dir.name,
                        ignore=shutil.ignore_patterns("__pycache__"))
    return root


def trtis(*args: str, cwd: Path, check: bool = True, env: dict | None = None,
          timeout: float = 600) -> subprocess.CompletedProcess:
    """Run the real CLI in a fresh interpreter."""
    full_env = {**os.environ, **(env or {})}
    result = subprocess.run([sys.executable, "-m", "trtis_build", *args], cwd=cwd, env=full_env,
                            capture_output=True, text=True, timeout=timeout)
    if check and result.returncode != 0:
        raise AssertionError(f"trtis-build {' '.join(args)} failed ({result.returncode}):\n"
                             f"{result.stdout}\n{result.stderr}")
    return result


def import_trap(root: Path, package: str) -> dict[str, str]:
    """Environment with a sitecustomize that makes `import <package>` fail, in the driver and
    in every probe subprocess (find_spec still works): a build that still succeeds started no
    process of that framework."""
    trap = root / f"trap-{package}"
    trap.mkdir(exist_ok=True)
    (trap / "sitecustomize.py").write_text(
        "import builtins\n"
        "real_import = builtins.__import__\n"
        "def guarded(name, globals=None, locals=None, fromlist=(), level=0):\n"
        "    # Absolute imports only: trtis_build's own frameworks.<name> is not the framework.\n"
        f"    if level == 0 and (name == {package!r} or name.startswith({package + '.'!r})):\n"
        f"        raise ImportError('this build imported {package}')\n"
        "    return real_import(name, globals, locals, fromlist, level)\n"
        "builtins.__import__ = guarded\n")
    return {"PYTHONPATH": str(trap)}


def write_small_base(root: Path, labels: dict | None = None, ref: str = "1"):
    """A one-layer base image as an OCI layout at `root` (one file, etc/base-release), for
    composing images without the default base. Returns (layout, layer)."""
    from trtis_build.image import oci

    layout = oci.Layout.create(root)
    layer = oci.write_layer(oci.parent_dirs([oci.bytes_entry("etc/base-release", b"small\n")]),
                            layout.blobs, epoch=0)
    config = {"architecture": "amd64", "os": "linux",
              "config": {"Env": ["PATH=/usr/bin:/bin"], **({"Labels": labels} if labels else {})},
              "rootfs": {"type": "layers", "diff_ids": [layer.diff_id]}}
    config_desc = layout.add_json(config, oci.OCI_CONFIG)
    desc = layout.add_json({"schemaVersion": 2, "mediaType": oci.OCI_MANIFEST, "config": config_desc.to_json(),
                            "layers": [layer.descriptor.to_json()]}, oci.OCI_MANIFEST)
    layout.write_index([oci.Descriptor(desc.media_type, desc.digest, desc.size, {oci.REF_NAME: ref})])
    return layout, layer


@contextlib.contextmanager
def edited(path: Path, old: str, new: str):
    """`path` with `old` replaced by `new` for the duration, restored afterwards."""
    original = path.read_text()
    assert old in original, f"{old!r} not in {path}"
    path.write_text(original.replace(old, new))
    try:
        yield path
    finally:
        path.write_text(original)


# --- strict mode (.ci/run) ---------------------------------------------------------------------
# TRTIS_TEST_STRICT=1 turns every skip into a failure, except tests marked `gpu` on a machine
# without one: in CI a green run then means the integration tests really ran (a missing tool
# fails the run instead of quietly skipping its tests).
STRICT = os.environ.get("TRTIS_TEST_STRICT") == "1"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if STRICT and report.skipped and not item.get_closest_marker("gpu"):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        report.outcome = "failed"
        report.longrepr = f"strict mode (TRTIS_TEST_STRICT=1): skipped, which CI does not allow: {reason}"


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector):
    """A whole module skipped at import (importorskip) counts too; tests/gpu may skip."""
    outcome = yield
    report = outcome.get_result()
    if STRICT and report.skipped and "gpu" not in Path(str(collector.path)).parts:
        report.outcome = "failed"
        report.longrepr = f"strict mode (TRTIS_TEST_STRICT=1): module skipped, which CI does not allow: {report.longrepr}"
