"""The CPU torch of the default base (default_base.py), added only when the bundle holds
torch op libraries: the TensorFlow-only default base stays as it is for every other bundle.

Which torch (the first given): `trtis-build server --base-torch SPEC`, $TRTIS_BUILD_BASE_TORCH,
else DEFAULT_VERSION. SPEC is one of
  - a version, `2.13.0`: pip fetches `torch==2.13.0+cpu` (PyTorch's CPU build) with
    --no-deps into the user cache (torch/torch-2.13.0+cpu/), once. pip's own configuration
    applies (index URLs, find-links, proxies); on plain PyPI add PyTorch's CPU index,
    PIP_EXTRA_INDEX_URL=https://download.pytorch.org/whl/cpu;
  - a wheel file (torch-2.13.0+cpu-cp311-...whl): installed by pip into the user cache, once
    per file (path, size, modification time);
  - a directory holding torch/ and one torch-*.dist-info (`pip install --target DIR`, or a
    site-packages with a CPU torch): used in place.

What a user who checks their images gets:
  - a pinned default: an image is rebuilt from the same torch until they choose another, and
    org.trtis-build.base.torch.version says which one it is (the version-skew guard of
    `trtis-build server` reads it: a stable-ABI op needs its torch_target or newer, an
    exact-ABI op the release it was built with);
  - never a CUDA torch: one with torch/lib/libtorch_cuda.so (a CUDA wheel is several GB with
    its nvidia-* libraries, and the default base is a CPU image) is refused, as is a torch
    built for another Python than the base's python3;
  - no trust in a directory's files: each is checked against its RECORD hash before it goes
    into the layer, and the base's cache key hashes the RECORD lines of what goes in, so
    another torch (or another build of one version) makes another base;
  - torch's requirements (filelock, sympy, mpmath, networkx, jinja2, markupsafe, fsspec,
    typing-extensions, setuptools: what its metadata declares) copied from trtis-build's
    own environment by RECORD like numpy, skipping those the base has already; one that is
    missing there, or too old for torch's specifier, is an error naming the pip command.

The layer goes on top of the default base's three, which stay byte for byte the same (a
registry stores them once for both bases).
"""

from __future__ import annotations

import base64
import hashlib
import importlib.metadata as metadata
import os
import re
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping

from ..core import process
from ..core.errors import ImageError
from ..core.files import scratch_path
from ..core.locks import FileLock
from . import oci, pydist

DEFAULT_VERSION = "2.13.0"   # >= every torch_target the torch framework accepts by default (2.10)
ENV_VARIABLE = "TRTIS_BUILD_BASE_TORCH"  # read here, not a build setting (core.options.ENV_ONLY)
VERSION = re.compile(r"\d+\.\d+(\.\d+)?(\+[a-z0-9.]+)?")
CPU_HINT = ("give a CPU torch: --base-torch VERSION (fetched as torch==VERSION+cpu; on plain PyPI set "
            "PIP_EXTRA_INDEX_URL=https://download.pytorch.org/whl/cpu), a CPU wheel, or a directory from "
            "`pip install --target DIR torch==VERSION+cpu`; or give --base REF with a torch of its own")
LOCK_TIMEOUT_S = 1800.0


@dataclass(frozen=True)
class TorchSource:
    directory: Path                    # holds torch/ and the dist-info
    dist: metadata.Distribution
    version: str                       # 2.13.0+cpu
    given: str                         # what the user named (for messages)

    def files(self) -> list[metadata.PackagePath]:
        """The RECORD entries that go into the image (no console scripts, no byte code)."""
        return [item for item in self.dist.files or []
                if ".." not in Path(str(item)).parts and "__pycache__" not in Path(str(item)).parts]

    def key(self) -> str:
        """What identifies this torch for the cache: the RECORD lines (path, hash, size)."""
        lines = sorted(f"{item},{item.hash.mode if item.hash else ''}={item.hash.value if item.hash else ''},"
                       f"{item.size or ''}" for item in self.files())
        return hashlib.sha256("\n".join(lines).encode()).hexdigest()


def choose(given: str | None, env: Mapping[str, str]) -> str:
    return given or env.get(ENV_VARIABLE) or DEFAULT_VERSION


def resolve(spec: str, *, cache: Path, python: str, log: Callable[[str], None] = lambda _: None) -> TorchSource:
    """The CPU torch that SPEC names (see the module doc), installed into `cache` if needed."""
    path = Path(spec).expanduser()
    if VERSION.fullmatch(spec) and not path.exists():
        pinned = spec if "+" in spec else f"{spec}+cpu"
        directory = _install(f"torch=={pinned}", cache / f"torch-{pinned}", spec, python, log)
    elif path.is_file() and path.name.endswith(".whl"):
        st = path.stat()
        key = hashlib.sha256(f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}".encode()).hexdigest()[:16]
        directory = _install(str(path.resolve()), cache / f"wheel-{key}", spec, python, log)
    elif path.is_dir():
        directory = path.resolve()
    else:
        raise ImageError(f"the default base's torch {spec!r} is not a version, a wheel file or a directory",
                         where=f"--base-torch or ${ENV_VARIABLE}",
                         hint=f"give e.g. {DEFAULT_VERSION}, torch-{DEFAULT_VERSION}+cpu-cp311-...whl, or a directory "
                              "with torch/ and its dist-info (pip install --target DIR ...)")
    return inspect(directory, spec, python)


def inspect(directory: Path, given: str, python: str) -> TorchSource:
    """Check that `directory` holds one CPU torch for `python` (e.g. "3.11")."""
    infos = sorted(directory.glob("torch-*.dist-info"))
    if len(infos) != 1 or not (directory / "torch" / "__init__.py").is_file():
        what = "several torch dist-info directories" if len(infos) > 1 else "no torch/ with its torch-*.dist-info"
        raise ImageError(f"{directory} has {what}, so it is not one torch install", where=directory,
                         hint="give a directory made by `pip install --target DIR torch==VERSION+cpu`, "
                              "or a version or wheel (--base-torch)")
    dist = metadata.PathDistribution(infos[0])
    version = dist.version
    if (directory / "torch" / "lib" / "libtorch_cuda.so").exists():
        raise ImageError(f"{directory} holds a CUDA build of torch ({version}, torch/lib/libtorch_cuda.so); with "
                         "its CUDA libraries it is several GB, and the default base is a CPU image",
                         where=directory, hint=CPU_HINT)
    tag = f"cpython-{python.replace('.', '')}-"
    extensions = [p.name for p in (directory / "torch").glob("_C.cpython-*.so")]
    if not any(tag in name for name in extensions):
        raise ImageError(f"the torch in {directory} ({version}) is built for another Python "
                         f"({', '.join(extensions) or 'no torch/_C extension'}), the base's python3 is {python}",
                         where=directory, hint=f"give a torch wheel for CPython {python} (cp{python.replace('.', '')})")
    return TorchSource(directory, dist, version, given)


def _install(requirement: str, target: Path, given: str, python: str, log: Callable[[str], None]) -> Path:
    """pip install --no-deps --target, into a scratch directory renamed into place once checked."""
    if target.is_dir():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(target.with_name(target.name + ".lock"), what=f"another process fetching {requirement}",
                    timeout=LOCK_TIMEOUT_S, on_wait=log)
    with lock:
        if target.is_dir():
            return target
        work = scratch_path(target.parent, target.name, "partial")
        shutil.rmtree(work, ignore_errors=True)
        log(f"  fetching the default base's CPU torch: pip install --no-deps --target {target} {requirement}")
        try:
            process.run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-compile", "--only-binary=:all:",
                         "--no-input", "--disable-pip-version-check", "--no-warn-script-location",
                         "--target", str(work), requirement],
                        stage="image", log_path=target.with_name(target.name + ".log"),
                        failure_message=f"pip could not fetch {requirement} for the default base",
                        hint=f"pip found no such CPU torch; {CPU_HINT}")
            inspect(work, given, python)  # a CUDA wheel or another Python's never enters the cache
            os.replace(work, target)
        finally:
            shutil.rmtree(work, ignore_errors=True)
    return target


def requirements(source: TorchSource, present: Mapping[str, str]) -> list[metadata.Distribution]:
    """torch's requirements from our environment, less those the base has (`present`:
    canonical name -> version, the default base's python_packages)."""
    problems: list[str] = []
    needed = pydist.closure(source.dist.requires or [], strict=True, problems=problems)
    if problems:
        raise ImageError(f"torch {source.version} of the default base needs {', '.join(problems)}, which the "
                         f"environment of trtis-build ({sys.prefix}) lacks; they are copied from it",
                         hint="pip install " + " ".join(f"'{p.split(' (')[0]}'" for p in problems))
    return [d for d in needed if pydist.canonical(d.metadata["Name"]) not in present]


def recipe(source: TorchSource, deps: list[metadata.Distribution]) -> dict:
    """The default base recipe's torch part (part of its cache key)."""
    return {"version": source.version, "files_sha256": source.key(),
            "python_packages": {pydist.canonical(d.metadata["Name"]): d.version for d in deps}}


def _verify(source: TorchSource) -> None:
    """Every torch file as its RECORD says: a file changed behind pip's back is named here."""
    for item in source.files():
        if not item.hash or item.hash.mode != "sha256":
            continue
        path = Path(source.dist.locate_file(item))
        if not path.is_file():
            raise ImageError(f"{path} is missing, but torch's RECORD lists it", where=source.directory,
                             hint="the torch install is incomplete: reinstall it "
                                  "(pip install --force-reinstall --no-deps --target DIR torch==VERSION+cpu)")
        digest = hashlib.sha256()
        try:
            with open(path, "rb") as handle:
                while chunk := handle.read(1 << 20):
                    digest.update(chunk)
        except OSError as error:
            raise ImageError(f"cannot read {path}: {error.strerror}", where=path,
                             hint="reinstall that torch (pip install --force-reinstall --target ...)") from None
        expected = base64.urlsafe_b64encode(digest.digest()).rstrip(b"=").decode()
        if expected != item.hash.value:
            raise ImageError(f"{path} does not match the hash torch's RECORD lists for it", where=path,
                             hint="the torch install was changed after pip installed it: reinstall it "
                                  "(pip install --force-reinstall --no-deps --target DIR torch==VERSION+cpu)")


def entries(source: TorchSource, deps: list[metadata.Distribution], prefix: str) -> list[oci.Entry]:
    """The torch layer: torch's files and its requirements' under `prefix` (dist-packages)."""
    _verify(source)
    files = pydist.record_files([source.dist, *deps], prefix)
    return oci.parent_dirs([oci.file_entry(name, path) for name, path in files.items()])
