"""A stable-ABI library built here against torch 2.14.1 loads and passes its own test,
unrebuilt, in the older torch 2.13.0+cpu; one built for a newer torch (torch_target 2.14) is
refused there by trtis_build.load_bundle with a message naming both versions.

The older torch is a --target install beside the venv's (scripts/setup.sh puts it in
.venv/torch-2.13; TRTIS_TEST_TORCH213_PATH overrides), put first on PYTHONPATH of a fresh
interpreter. Without it these tests fail, with the fix: a skip would hide that the
cross-version promise went unchecked."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from .conftest import REPO, trtis

pytestmark = [pytest.mark.compile, pytest.mark.torch]

EXAMPLE = REPO / "ops" / "torch" / "addsub"
OLD_TORCH = Path(os.environ.get("TRTIS_TEST_TORCH213_PATH", REPO / ".venv" / "torch-2.13"))
OLD_VERSION = "2.13.0"
KERNEL_KEYS = ("kernel_sources", "cuda_sources")


def copy_example(root: Path, *, torch_target: str | None = None) -> Path:
    """The example op in a project of its own. The kernels it shares from the TensorFlow example
    are copied to <root>/kernels/ and op.toml's paths rewritten to them: a bare copy of
    ops/tensorflow/addsub would be a TensorFlow op without an op.toml."""
    op_dir = root / "ops" / "torch" / EXAMPLE.name
    shutil.copytree(EXAMPLE, op_dir, ignore=shutil.ignore_patterns("__pycache__"))
    toml = (EXAMPLE / "op.toml").read_text()
    kernels = root / "kernels"
    kernels.mkdir()
    for key in KERNEL_KEYS:
        for listed in tomllib.loads(toml).get(key, []):
            source = (EXAMPLE / listed).resolve()
            for path in [source, *source.parent.glob("*.h")]:  # the kernel's headers come along
                shutil.copy(path, kernels / path.name)
            toml = toml.replace(f'"{listed}"', f'"{os.path.relpath(kernels / source.name, op_dir)}"')
    if torch_target:
        toml += f'torch_target = "{torch_target}"\n'
    (op_dir / "op.toml").write_text(toml)
    return root


def old_torch_env(bundle: Path) -> dict[str, str]:
    if not (OLD_TORCH / "torch" / "__init__.py").is_file():
        pytest.fail(f"no torch {OLD_VERSION} at {OLD_TORCH}: run `bash scripts/setup.sh` (it installs "
                    f"torch=={OLD_VERSION} there with pip --target), or point TRTIS_TEST_TORCH213_PATH at one")
    return {**os.environ, "PYTHONPATH": str(OLD_TORCH), "TRTIS_BUNDLE": str(bundle), "TORCH_CPP_LOG_LEVEL": "ERROR"}


def run_in_old_torch(code: str, bundle: Path, cwd: Path) -> subprocess.CompletedProcess:
    """`code` in a fresh interpreter whose torch is the old one; its first line reports which."""
    prologue = "import sys, torch\nprint('TORCH', torch.__version__, torch.__file__, flush=True)\n"
    result = subprocess.run([sys.executable, "-c", prologue + code], cwd=cwd, env=old_torch_env(bundle),
                            capture_output=True, text=True, timeout=300)
    first = result.stdout.splitlines()[0] if result.stdout else ""
    assert first.startswith(f"TORCH {OLD_VERSION}+cpu {OLD_TORCH.resolve()}"), result.stdout + result.stderr
    return result


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """The example built once against the venv's torch, with CUDA for one arch: the CUDA kernel
    registration and the run-time stream lookup are in the library the CPU torch loads."""
    if importlib.util.find_spec("torch") is None:
        pytest.fail("torch is not installed in the build's Python: bash scripts/setup.sh (the torch extra)")
    root = copy_example(tmp_path_factory.mktemp("torch-cross"))
    data = json.loads(trtis("ops", "build", "--json", "--cuda-arch", "75", cwd=root).stdout)
    return root, data["manifest"]


def test_library_built_with_2_14_passes_its_test_in_2_13(built):
    root, manifest = built
    bundle = root / "build" / "bundle"
    assert manifest["toolchain"]["torch"]["version"].startswith("2.14.1")
    [entry] = [lib for lib in manifest["libraries"] if lib["framework"] == "torch"]
    assert entry["torch"] == {"abi": "stable", "python": False, "target": "2.10"}
    assert entry["devices"]["trtis::add_sub"] == ["CPU", "CUDA", "Meta"]
    library = bundle / entry["path"]
    before = library.read_bytes()
    op_dir = root / "ops" / "torch" / "addsub"
    # pytest in the same interpreter that printed the version: the test ran on that torch.
    result = run_in_old_torch(
        "import pytest\n"
        f"sys.exit(pytest.main(['-q', '-rs', '-p', 'no:cacheprovider', '--rootdir', {str(op_dir)!r}, "
        f"{str(op_dir / 'test_addsub.py')!r}]))\n", bundle, op_dir)
    assert result.returncode == 0, result.stdout + result.stderr
    summary = result.stdout.strip().splitlines()[-1]
    assert re.match(r"\d+ passed", summary) and "failed" not in summary and "error" not in summary, result.stdout
    # The only test that may skip on a CPU torch is the one for the CUDA kernel.
    skips = [line for line in result.stdout.splitlines() if line.startswith("SKIPPED")]
    assert all("--gpu" in line for line in skips), result.stdout
    assert library.read_bytes() == before  # unrebuilt: the very file the 2.14.1 build made


def test_library_for_a_newer_torch_is_refused_in_2_13(tmp_path):
    root = copy_example(tmp_path, torch_target="2.14")
    data = json.loads(trtis("ops", "build", "--json", "--no-cuda", cwd=root).stdout)
    [entry] = data["manifest"]["libraries"]
    # The build loaded it into torch 2.14.1 (the registration check), so it is a good library.
    assert entry["torch"]["target"] == "2.14" and entry["ops"] == ["trtis::add_sub"]
    result = run_in_old_torch(
        "import trtis_build\n"
        "from trtis_build.core.errors import BundleError\n"
        "try:\n"
        "    trtis_build.load_bundle(framework='torch')\n"
        "except BundleError as exc:\n"
        "    print('REFUSED', exc.message)\n"
        "    print('FIX', exc.hint)\n"
        "print('REGISTERED', 'trtis::add_sub' in torch._C._dispatch_get_all_op_names())\n",
        root / "build" / "bundle", root)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert re.search(r"REFUSED refusing to load \S+/torch/libaddsub\.so: it targets torch 2\.14 or later, "
                     r"and this is torch 2\.13\.0\+cpu", out), out
    assert "FIX rebuild the bundle with this torch" in out
    assert "REGISTERED False" in out  # refused before torch saw it
