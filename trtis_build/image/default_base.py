"""The default base image: used when `trtis-build server` gets no --base.

NVIDIA's Triton images need a registry and a GPU host; this base needs neither. It is put
together from what this machine already has, in three layers:

1. a minimal Debian root filesystem with python3 (mmdebstrap, from the Debian mirror);
2. the Triton server of the `server` extra (nvidia-pytriton's tritonserver, its bundled
   libraries and the Python backend with the stub for the base's Python), laid out like
   NGC images: /opt/tritonserver/{bin,lib,backends};
3. numpy and TensorFlow (for TF-op models, served through the Python backend) copied from
   the driver's own environment by their installed-file lists (RECORD).

The result is an OCI layout cached under `cache_dir()/bases/default-<key>`, where the key
hashes every input (suite, packages, versions of the copied Python distributions), so a
changed input builds a new base and an unchanged one is reused.
"""

from __future__ import annotations

import hashlib
import importlib.metadata as metadata
import importlib.util
import json
import os
import re
import shutil
import sys
import time
from pathlib import Path
from typing import Callable, Iterator, Mapping

from ..core import process
from ..core.files import scratch_path, user_cache_dir
from ..core.locks import FileLock
from ..core.errors import ImageError, ToolchainError
from . import oci

RECIPE = 1  # bump when the recipe below changes: it is part of the cache key
SUITES = {"3.11": "bookworm", "3.13": "trixie"}  # Debian release whose python3 matches ours
DEBIAN_PACKAGES = ("python3", "libstdc++6", "zlib1g", "libgomp1", "ca-certificates")
PYTHON_ROOTS = ("numpy", "tensorflow-cpu", "tensorflow")
TRITON_ROOT = "/opt/tritonserver"
DEFAULT_NAME = "trtis-build/default-base"
LABEL_PREFIX = "org.trtis-build.base."
# Building the default base takes a minute or two; a holder past this is stuck.
CACHE_LOCK_TIMEOUT_S = 1800.0


def cache_lock(path: Path, what: str, log: Callable[[str], None] = lambda _: None) -> FileLock:
    """Serializes builders of one cache entry (parallel test modules, two CI steps)."""
    return FileLock(path, what=f"another process building {what}", timeout=CACHE_LOCK_TIMEOUT_S, on_wait=log)


def _requirement_closure(roots: tuple[str, ...]) -> list[metadata.Distribution]:
    try:
        from packaging.requirements import Requirement
        from packaging.utils import canonicalize_name
    except ImportError:  # pip vendors packaging; any venv with pip has it
        from pip._vendor.packaging.requirements import Requirement  # type: ignore
        from pip._vendor.packaging.utils import canonicalize_name  # type: ignore
    installed = {canonicalize_name(d.metadata["Name"]): d for d in metadata.distributions()}
    seen: dict[str, metadata.Distribution] = {}
    todo = [canonicalize_name(r) for r in roots]
    while todo:
        name = todo.pop()
        if name in seen or name not in installed:
            continue
        seen[name] = installed[name]
        for line in installed[name].requires or []:
            requirement = Requirement(line)
            if requirement.marker and not requirement.marker.evaluate({"extra": ""}):
                continue
            todo.append(canonicalize_name(requirement.name))
    return [seen[name] for name in sorted(seen)]


def _canonical(name: str) -> str:
    """PEP 503 name: tensorflow_cpu, TensorFlow-CPU -> tensorflow-cpu."""
    return re.sub(r"[-_.]+", "-", name).lower()


def _triton_dirs() -> tuple[Path, Path]:
    spec = importlib.util.find_spec("pytriton")  # locates the package without importing it
    if spec is None or not spec.submodule_search_locations:
        raise ToolchainError("the default base needs the `server` extra (nvidia-pytriton), which is "
                             "not installed", hint="pip install 'trtis-build[server]', or give --base REF")
    package = Path(list(spec.submodule_search_locations)[0])
    server, libs = package / "tritonserver", package.parent / "nvidia_pytriton.libs"
    if not (server / "bin" / "tritonserver").is_file() or not libs.is_dir():
        raise ToolchainError(f"nvidia-pytriton at {package} has no tritonserver binary",
                             hint="reinstall nvidia-pytriton (pip install --force-reinstall nvidia-pytriton)")
    return server, libs


def recipe(env: Mapping[str, str] | None = None) -> dict:
    """Everything the default base is made of; its hash is the cache key."""
    env = os.environ if env is None else env
    python = f"{sys.version_info.major}.{sys.version_info.minor}"
    if python not in SUITES:
        raise ImageError(f"the default base needs Python {' or '.join(SUITES)} (the python3 of a Debian "
                         f"release), but trtis-build runs on Python {python}",
                         hint="run trtis-build with Python 3.11, or give --base REF")
    server, _ = _triton_dirs()
    dists = _requirement_closure(PYTHON_ROOTS)
    return {"recipe": RECIPE, "suite": SUITES[python], "python": python,
            "mirror": env.get("TRTIS_BUILD_DEBIAN_MIRROR", ""),
            "debian_packages": list(DEBIAN_PACKAGES),
            "pytriton": metadata.version("nvidia-pytriton"), "triton_dir": str(server),
            "python_packages": {_canonical(d.metadata["Name"]): d.version for d in dists}}


def default_base(*, env: Mapping[str, str] | None = None,
                 log: Callable[[str], None] = lambda _: None) -> tuple[Path, str]:
    """(layout dir, ref name) of the cached default base; builds it on first use."""
    env = os.environ if env is None else env
    spec = recipe(env)
    key = hashlib.sha256(oci.canonical_json(spec)).hexdigest()[:16]
    bases = user_cache_dir(env) / "bases"
    target = bases / f"default-{key}"
    if (target / "index.json").is_file():
        return target, "default"
    with cache_lock(bases / f"default-{key}.lock", "the default base image", log):
        if (target / "index.json").is_file():  # built by another process while we waited
            return target, "default"
        log(f"building the default base image once (cached in {target}) ...")
        started = time.monotonic()
        work = scratch_path(bases, f"default-{key}", "partial")
        shutil.rmtree(work, ignore_errors=True)
        try:
            _build(spec, work, env, log)
            os.replace(work, target)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        log(f"default base ready in {time.monotonic() - started:.0f} s")
    return target, "default"


def _build(spec: dict, work: Path, env: Mapping[str, str], log: Callable[[str], None]) -> None:
    layout = oci.Layout.create(work)
    epoch = oci.source_date_epoch(env)
    rootfs_tar = work / "rootfs.tar"
    _debian_rootfs(spec, rootfs_tar, env, log)
    log("  layer 1/3: Debian root filesystem")
    layers = [oci.write_layer(oci.tar_entries(rootfs_tar), layout.blobs, epoch=epoch, level=1, own=False)]
    rootfs_tar.unlink()
    log("  layer 2/3: Triton server (nvidia-pytriton)")
    layers.append(oci.write_layer(_triton_entries(spec), layout.blobs, epoch=epoch, level=1))
    log("  layer 3/3: Python packages (" + ", ".join(spec["python_packages"]) + ")")
    layers.append(oci.write_layer(_python_entries(spec), layout.blobs, epoch=epoch, level=1))
    config = _config(spec, layers, epoch)
    config_desc = layout.add_json(config, oci.OCI_CONFIG)
    manifest = {"schemaVersion": 2, "mediaType": oci.OCI_MANIFEST, "config": config_desc.to_json(),
                "layers": [layer.descriptor.to_json() for layer in layers]}
    desc = layout.add_json(manifest, oci.OCI_MANIFEST)
    layout.write_index([oci.Descriptor(desc.media_type, desc.digest, desc.size, {oci.REF_NAME: "default"})])
    (work / "recipe.json").write_text(json.dumps(spec, indent=2, sort_keys=True))


def _debian_rootfs(spec: dict, out: Path, env: Mapping[str, str], log: Callable[[str], None]) -> None:
    if shutil.which("mmdebstrap") is None:
        raise ToolchainError("mmdebstrap is needed to build the default base image",
                             hint="apt-get install mmdebstrap (scripts/setup.sh does), or give --base REF")
    packages = [*spec["debian_packages"], f"libpython{spec['python']}"]
    command = ["mmdebstrap", "--variant=essential", "--include=" + ",".join(packages),
               # Docs, man pages and locales are a third of the size and no server reads them.
               "--dpkgopt=path-exclude=/usr/share/man/*", "--dpkgopt=path-exclude=/usr/share/doc/*",
               "--dpkgopt=path-exclude=/usr/share/locale/*", "--dpkgopt=path-exclude=/usr/share/info/*",
               spec["suite"], str(out)]
    if spec["mirror"]:
        command.append(spec["mirror"])
    log("  mmdebstrap " + spec["suite"] + " (" + ", ".join(packages) + ")")
    extra = {"SOURCE_DATE_EPOCH": str(oci.source_date_epoch(env))}
    process.run(command, stage="image", extra_env=extra, log_path=out.with_suffix(".log"),
                failure_message="mmdebstrap could not create the base root filesystem",
                hint="it needs the Debian mirror (set TRTIS_BUILD_DEBIAN_MIRROR for another one) "
                     "and root, or give --base REF")


def _triton_entries(spec: dict) -> Iterator[oci.Entry]:
    server, libs = _triton_dirs()
    root = TRITON_ROOT.strip("/")
    skip = lambda p: "__pycache__" in p.parts  # noqa: E731
    yield from oci.parent_dirs([oci.dir_entry(root)])
    yield from oci.tree_entries(server / "bin", f"{root}/bin", skip=skip)
    yield from oci.tree_entries(server / "caches", f"{root}/caches", skip=skip)
    yield from oci.tree_entries(server / "backends", f"{root}/backends", skip=skip)
    stub = server / "python_backend_stubs" / spec["python"] / "triton_python_backend_stub"
    yield oci.file_entry(f"{root}/backends/python/triton_python_backend_stub", stub, mode=0o755)
    # The binaries' RPATH ($ORIGIN/../lib) finds these; LD_LIBRARY_PATH covers the backends.
    yield from oci.tree_entries(libs, f"{root}/lib", skip=skip)


def _python_entries(spec: dict) -> Iterator[oci.Entry]:
    prefix = f"usr/local/lib/python{spec['python']}/dist-packages"
    dists = [d for d in _requirement_closure(PYTHON_ROOTS)
             if _canonical(d.metadata["Name"]) in spec["python_packages"]]
    files: dict[str, Path] = {}
    for dist in dists:
        for item in dist.files or []:
            relative = Path(str(item))
            if ".." in relative.parts or "__pycache__" in relative.parts:
                continue  # console scripts live outside site-packages; byte code is rebuilt
            source = Path(dist.locate_file(item))
            if source.is_file() and not source.is_symlink():
                files[f"{prefix}/{relative.as_posix()}"] = source
    entries = [oci.file_entry(name, path) for name, path in files.items()]
    return iter(oci.parent_dirs(entries))


def _config(spec: dict, layers: list[oci.Layer], epoch: int) -> dict:
    versions = spec["python_packages"]
    labels = {
        "org.opencontainers.image.title": "trtis-build default Triton base (CPU)",
        "org.opencontainers.image.description": "Debian " + spec["suite"] + ", tritonserver from "
                                                 "nvidia-pytriton " + spec["pytriton"] + ", Python backend",
        LABEL_PREFIX + "python.version": spec["python"],
        LABEL_PREFIX + "pytriton.version": spec["pytriton"],
        LABEL_PREFIX + "debian.suite": spec["suite"],
    }
    tensorflow = versions.get("tensorflow-cpu") or versions.get("tensorflow")
    if tensorflow:
        labels[LABEL_PREFIX + "tensorflow.version"] = tensorflow
    created = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))
    return {
        "architecture": "amd64", "os": "linux", "created": created,
        "config": {
            "Env": [f"PATH={TRITON_ROOT}/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                    f"LD_LIBRARY_PATH={TRITON_ROOT}/lib", "PYTHONDONTWRITEBYTECODE=1"],
            "Cmd": ["tritonserver"], "WorkingDir": "/", "Labels": labels,
        },
        "rootfs": {"type": "layers", "diff_ids": [layer.diff_id for layer in layers]},
        "history": [{"created": created, "created_by": f"trtis-build default base: {what}"}
                    for what in ("mmdebstrap", "tritonserver", "python packages")],
    }
