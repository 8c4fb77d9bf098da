"""PyTorch op libraries in server images.

Unit tests (no process starts): the torch version-skew rule of `trtis-build server` (a
stable-ABI library needs its torch_target or newer, an exact-ABI one its build's release) and
the checks on the default base's CPU torch (a CUDA torch, another Python's, or a changed file
is refused). Then one real composition: the example torch op built with g++ against the
driver's torch 2.14.1, `trtis-build server` with the default base (which gains a CPU torch
2.13 for this bundle), and inside the image's own root filesystem (umoci + bubblewrap) the
launcher's check and the image's python3 loading the library with torch.ops.load_library and
computing trtis::add_sub. The default base is cached ($TRTIS_BUILD_CACHE_DIR or
~/.cache/trtis-build): cold it is built once (Debian + Triton + TensorFlow, then the torch
layer), warm this module takes about a minute."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from trtis_build.core.errors import ImageError
from trtis_build.image import compose as image
from trtis_build.image import default_base, default_torch, oci
from trtis_build.image import run as imagerun
from trtis_build.image.base import BaseImage

from .conftest import REPO, trtis, write_small_base

TORCH_213 = Path(os.environ.get("TRTIS_TEST_TORCH213_PATH", REPO / ".venv" / "torch-2.13"))
BUILT = "2.14.1+cu130"
OPS = "opt/tritonserver/ops"


def torch_manifest(*libraries: dict, built: str = BUILT) -> dict:
    return {"toolchain": {"torch": {"version": built}}, "libraries": list(libraries)}


def stable(target: str = "2.10", path: str = "torch/liba.so") -> dict:
    return {"framework": "torch", "path": path, "torch": {"abi": "stable", "target": target, "python": False}}


def exact(path: str = "torch/libx.so") -> dict:
    return {"framework": "torch", "path": path, "torch": {"abi": "exact", "python": False}}


def base_with_torch(version: str, key: str = "org.trtis-build.base.torch.version") -> BaseImage:
    config = {"config": {"Labels": {key: version}} if key.startswith("org.") else {"Env": [f"{key}={version}"]}}
    return BaseImage("base", "sha256:" + "0" * 64, {"layers": []}, config, None)


def skew_of(manifest: dict, base: BaseImage) -> list[dict]:
    return image.version_skew(image.bundle_versions(manifest), image.base_versions(base.config, {}),
                              manifest["libraries"])


# ---------------------------------------------------------------- the skew rule

def test_stable_abi_refuses_only_an_older_base(pure):
    manifest = torch_manifest(stable("2.12"))
    assert skew_of(manifest, base_with_torch("2.12.0")) == []          # equal to the target
    assert skew_of(manifest, base_with_torch("2.13.0+cpu")) == []      # newer: the stable ABI's promise
    assert skew_of(manifest, base_with_torch("2.15.0a0+e000cf0", "PYTORCH_VERSION")) == []  # NGC's form
    [older] = skew_of(manifest, base_with_torch("2.11.0"))
    assert older["framework"] == "torch" and older["base"] == "2.11.0"
    assert "targets torch 2.12 or later, and this is torch 2.11.0" in older["reason"]
    assert 'lower torch_target to "2.11"' in older["reason"]
    # Below 2.10 no torch_target helps: only a newer base does.
    [ancient] = skew_of(torch_manifest(stable("2.10")), base_with_torch("2.9.1"))
    assert "use a base with torch 2.10 or newer" in ancient["reason"] and "lower" not in ancient["reason"]


def test_exact_abi_needs_the_build_release(pure):
    manifest = torch_manifest(exact())
    assert skew_of(manifest, base_with_torch("2.14.1+cpu")) == []      # +cpu / +cu130: one release
    for other in ("2.14.0", "2.15.1", "2.13.0+cpu"):
        [mismatch] = skew_of(manifest, base_with_torch(other))
        assert "built against torch 2.14.1+cu130" in mismatch["reason"] and f"this is torch {other}" in mismatch["reason"]
        assert "use a base with torch 2.14.1" in mismatch["reason"]
    # One bundle, both kinds: each library is judged by its own rule, all named at once.
    [both] = skew_of(torch_manifest(stable("2.10", "torch/libs.so"), exact("torch/libe.so")), base_with_torch("2.13.0"))
    assert "libe.so" in both["reason"] and "libs.so" not in both["reason"]


def test_torch_skew_is_an_error_that_names_versions_and_fix(tmp_path, pure):
    manifest = torch_manifest(stable("2.14"))
    settings = image.ComposeSettings(bundle_dir=tmp_path, tag="x")
    with pytest.raises(ImageError) as error:
        image.check_skew(manifest, base_with_torch("2.13.0+cpu"), settings, log=lambda _: None)
    text = error.value.render()
    assert "torch: torch/liba.so: it targets torch 2.14 or later" in text and "use a base with torch 2.14 or newer" in text
    assert "this is torch 2.13.0+cpu" in text and "(label org.trtis-build.base.torch.version)" in text
    assert 'lower torch_target to "2.13"' in text and "--allow-version-skew" in text
    allowed = image.ComposeSettings(bundle_dir=tmp_path, tag="x", allow_version_skew=True)
    notes: list[str] = []
    [skew] = image.check_skew(manifest, base_with_torch("2.13.0+cpu"), allowed, log=notes.append)
    assert skew["base"] == "2.13.0+cpu" and any("torch skew allowed" in note for note in notes)
    # TensorFlow keeps its own rule through the same seam: the same major.minor.
    tf = {"toolchain": {"tensorflow": {"version": "2.21.0"}}, "libraries": [{"framework": "tensorflow"}]}
    assert image.version_skew(image.bundle_versions(tf), {"tensorflow": ("2.21.3", "label")}, tf["libraries"]) == []
    assert image.version_skew(image.bundle_versions(tf), {"tensorflow": ("2.22.0", "label")}, tf["libraries"])


# ---------------------------------------------------------------- the default base's torch

@pytest.mark.skipif(not (TORCH_213 / "torch").is_dir(), reason=f"no CPU torch at {TORCH_213} (scripts/setup.sh)")
def test_the_default_base_takes_only_a_cpu_torch_for_its_python(tmp_path, pure):
    cpu = default_torch.resolve(str(TORCH_213), cache=tmp_path / "cache", python="3.11")
    assert cpu.version == "2.13.0+cpu" and cpu.directory == TORCH_213.resolve()
    assert not (tmp_path / "cache").exists()  # a directory is used in place
    with pytest.raises(ImageError, match="built for another Python"):
        default_torch.inspect(TORCH_213, "dir", "3.13")
    cuda_site = next((Path(p) for p in sys.path if (Path(p) / "torch" / "lib" / "libtorch_cuda.so").is_file()),
                     None)
    if cuda_site is not None:  # the driver's own CUDA torch (scripts/setup.sh installs 2.14.1+cu130)
        with pytest.raises(ImageError, match="CUDA build of torch") as error:
            default_torch.inspect(cuda_site, "site", "3.11")
        assert "download.pytorch.org/whl/cpu" in error.value.render()
    with pytest.raises(ImageError, match="not a version, a wheel file or a directory"):
        default_torch.resolve("latest", cache=tmp_path, python="3.11")
    # Another torch's files, another base: the key hashes the RECORD lines of what goes in.
    assert len(cpu.key()) == 64 and cpu.key() == default_torch.inspect(TORCH_213, "again", "3.11").key()


@pytest.mark.skipif(not (TORCH_213 / "torch").is_dir(), reason=f"no CPU torch at {TORCH_213} (scripts/setup.sh)")
def test_a_changed_torch_file_is_named_before_it_goes_in(tmp_path, pure):
    """A torch directory is trusted only as far as its RECORD: a changed or missing file is
    named before any layer is written. (Hard links: the original files are not touched.)"""
    copy = tmp_path / "torch-dir"
    shutil.copytree(TORCH_213, copy, copy_function=os.link)
    version = copy / "torch" / "version.py"
    text = version.read_text()
    version.unlink()  # a new file, not the linked original
    version.write_text(text.replace("debug = False", "debug = True"))
    source = default_torch.inspect(copy, "copy", "3.11")
    with pytest.raises(ImageError, match=r"torch/version\.py does not match the hash torch's RECORD lists"):
        default_torch.entries(source, [], "usr/local/lib/python3.11/dist-packages")
    version.unlink()
    with pytest.raises(ImageError, match=r"torch/version\.py is missing, but torch's RECORD lists it"):
        default_torch.entries(source, [], "usr/local/lib/python3.11/dist-packages")


# ---------------------------------------------------------------- a real image

TOOLS = ("skopeo", "umoci", "bwrap", "mmdebstrap")
MISSING = [tool for tool in TOOLS if shutil.which(tool) is None]
REAL_IMAGE_MARKS = (
    pytest.mark.image, pytest.mark.compile, pytest.mark.torch,
    pytest.mark.skipif(importlib.util.find_spec("torch") is None, reason="torch not installed (the torch extra)"),
    pytest.mark.skipif(bool(MISSING), reason=f"not installed: {', '.join(MISSING)} (scripts/setup.sh installs them)"),
    pytest.mark.skipif(os.geteuid() != 0, reason="mmdebstrap and umoci unpack need root"),
    pytest.mark.skipif(importlib.util.find_spec("pytriton") is None, reason="nvidia-pytriton not installed"),
)


def real_image(function):
    for mark in REAL_IMAGE_MARKS:
        function = mark(function)
    return function


IN_IMAGE = """
import json, os, torch
[library] = os.environ["TRTIS_TORCH_OP_LIBRARIES"].split(":")
torch.ops.load_library(library)
x = torch.tensor([1.0, 2.0, 3.0, 4.5])
y = torch.tensor([0.5, 0.25, 8.0, -1.0])
total, difference = torch.ops.trtis.add_sub(x, y)
assert torch.equal(total, x + y) and torch.equal(difference, x - y), (total, difference)
print(json.dumps({"version": torch.__version__, "file": torch.__file__, "library": library,
                  "sum": total.tolist(), "difference": difference.tolist()}))
"""


def standalone_torch_op(root: Path) -> Path:
    """The example torch op with its kernels beside it (no TensorFlow op to build)."""
    directory = root / "ops" / "torch" / "addsub"
    shutil.copytree(REPO / "ops" / "torch" / "addsub", directory, ignore=shutil.ignore_patterns("__pycache__"))
    for kernel in ("addsub_kernel.h", "addsub_kernel.cc", "addsub_kernel.cu"):
        shutil.copy(REPO / "ops" / "tensorflow" / "addsub" / kernel, directory / kernel)
    toml = directory / "op.toml"
    toml.write_text("".join(line for line in toml.read_text().splitlines(True)
                            if not line.startswith(("kernel_sources", "cuda_sources"))))
    return root


@pytest.fixture(scope="module")
def torch_image(tmp_path_factory):
    root = standalone_torch_op(tmp_path_factory.mktemp("torch-image"))
    trtis("ops", "build", "--no-cuda", cwd=root)
    out = root / "img"
    result = trtis("server", "--no-build", "--out", str(out), "--tag", "trtis-torch:1", "--json", cwd=root,
                   env={"SOURCE_DATE_EPOCH": "1700000000"})
    return {"root": root, "out": out, "json": json.loads(result.stdout)}


@pytest.fixture(scope="module")
def torch_rootfs(torch_image, tmp_path_factory):
    return imagerun.unpack(torch_image["out"], "1", tmp_path_factory.mktemp("torch-unpacked") / "bundle")


def in_image(rootfs: Path, out: Path, *args: str, hide: tuple[str, ...] = ()) -> subprocess.CompletedProcess:
    """The image's entrypoint with `args` in its own root filesystem; `hide`: empty those paths."""
    command = imagerun.sandbox_command(rootfs, imagerun.image_config(out, "1"), list(args))
    split = command.index("--")
    for path in hide:
        command[split:split] = ["--tmpfs", path]
    return subprocess.run(command, capture_output=True, text=True, timeout=180)


@real_image
def test_default_base_gains_a_cpu_torch_for_torch_ops(torch_image):
    result = torch_image["json"]
    assert result["version_skew"] == []                              # 2.13 >= the library's target 2.10
    layout = oci.Layout.open(torch_image["out"])
    _, manifest = layout.find_manifest("1")
    labels = layout.read_json(manifest["config"]["digest"])["config"]["Labels"]
    assert labels["org.trtis-build.base.torch.version"] == "2.13.0+cpu"
    assert labels["org.trtis-build.toolchain.torch.version"] == BUILT
    assert labels["org.trtis-build.torch.ops"] == "trtis::add_sub"
    # The torch base is the TensorFlow-only default base plus one layer: its layers are shared.
    plain, _ = default_base.default_base()
    _, plain_manifest = oci.Layout(plain).find_manifest("default")
    plain_layers = [item["digest"] for item in plain_manifest["layers"]]
    layers = [item["digest"] for item in manifest["layers"]]
    assert layers[:len(plain_layers)] == plain_layers and len(layers) == len(plain_layers) + 2  # + torch, + bundle


@real_image
def test_the_image_runs_the_torch_op(torch_image, torch_rootfs):
    check = in_image(torch_rootfs, torch_image["out"], "--trtis-check")
    assert check.returncode == 0, check.stderr
    assert "1 libraries checked" in check.stdout
    # The launcher checks, sets TRTIS_TORCH_OP_LIBRARIES, then runs the image's python3.
    ran = in_image(torch_rootfs, torch_image["out"], "python3", "-c", IN_IMAGE)
    assert ran.returncode == 0, ran.stdout + ran.stderr
    report = json.loads(ran.stdout.strip().splitlines()[-1])
    # The image's own CPU torch 2.13, not the 2.14.1 the library was compiled against.
    assert report["version"] == "2.13.0+cpu"
    assert report["file"].startswith("/usr/local/lib/python3.11/dist-packages/torch/")
    assert report["library"] == f"/{OPS}/torch/libaddsub.so"
    assert report["sum"] == [1.5, 2.25, 11.0, 3.5] and report["difference"] == [0.5, 1.75, -5.0, 5.5]


@real_image
def test_the_launcher_names_a_missing_torch(torch_image, torch_rootfs):
    """Without the image's torch the check fails before Triton starts, naming the library."""
    hidden = "/usr/local/lib/python3.11/dist-packages/torch"
    result = in_image(torch_rootfs, torch_image["out"], "--trtis-check", hide=(hidden,))
    assert result.returncode == 3
    assert "libaddsub.so needs libtorch_cpu.so, which is not in the image" in result.stderr


@real_image
def test_an_older_base_torch_is_refused(torch_image, tmp_path):
    """The real CLI on the same bundle and a base whose label says torch 2.9: exit 10, both
    versions and the fix named, nothing written."""
    base, _ = write_small_base(tmp_path / "base", labels={"org.trtis-build.base.torch.version": "2.9.1"})
    out = tmp_path / "out"
    result = trtis("server", "--no-build", "--base", f"oci:{base.root}:1", "--out", str(out), cwd=torch_image["root"],
                   check=False)
    assert result.returncode == 10, result.stderr
    assert "torch/libaddsub.so: it targets torch 2.10 or later" in result.stderr
    assert "and this is torch 2.9.1: use a base with torch 2.10 or newer (label " \
           "org.trtis-build.base.torch.version)" in result.stderr
    assert "Traceback" not in result.stderr and not out.exists()
    refused = trtis("server", "--no-build", "--base", f"oci:{base.root}:1", "--base-torch", "2.13.0", "--out",
                    str(out), cwd=torch_image["root"], check=False)
    assert refused.returncode == 2 and "--base-torch shapes the default base only" in refused.stderr
