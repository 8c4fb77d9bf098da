"""The default base image: used when `trtis-build server` gets no --base.

NVIDIA's Triton images need a registry and a GPU host; this base needs neither. It is put
together from what this machine already has, in three layers:

1. a minimal Debian root filesystem with python3 (mmdebstrap, from the Debian mirror);
2. the Triton server of the `server` extra (nvidia-pytriton's tritonserver, its bundled
   libraries and the Python backend with the stub for the base's Python), laid out like
   NGC images: /opt/tritonserver/{bin,lib,backends};
3. numpy and TensorFlow (for TF-op models, served through the Python backend) copied from
   the driver's own environment by their installed-file lists (RECORD);
4. only for a bundle with torch op libraries: a CPU torch and its requirements
   (default_torch.py says which torch and how it is checked), on top of the same three.

The result is an OCI layout cached under `cache_dir()/bases/default-<key>`, where the key
hashes every input (suite, packages, versions of the copied Python distributions, the
torch's files), so a changed input builds a new base and an unchanged one is reused.
"""

from __future__ import annotations

import hashlib
import importlib.metadata as metadata
import importlib.util
import json
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Callable, Collection, Iterator, Mapping

from ..core import process
from ..core.files import scratch_path, user_cache_dir
from ..core.locks import FileLock
from ..core.errors import ImageError, ToolchainError
from . import default_torch, oci, pydist

RECIPE = 1  # bump when the recipe below changes: it is part of the cache key
SUITES = {"3.11": "bookworm", "3.13": "trixie"}  # Debian release whose python3 matches ours
HEARTBEAT_S = 10.0
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
    return pydist.closure(roots)


_canonical = pydist.canonical


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


def default_base(*, env: Mapping[str, str] | None = None, log: Callable[[str], None] = lambda _: None,
                 needs: Collection[str] = (), torch: str | None = None) -> tuple[Path, str]:
    """(layout dir, ref name) of the cached default base; builds it on first use. `needs`:
    the frameworks of the bundle's op libraries; with "torch" the base gains a CPU torch
    (`torch`: default_torch's SPEC, else $TRTIS_BUILD_BASE_TORCH, else its pinned version)."""
    env = os.environ if env is None else env
    spec = recipe(env)
    if "torch" not in needs:
        return _cached(spec, env, log, "the default base image",
                       lambda work: _build(spec, work, env, log)), "default"
    cache = user_cache_dir(env)
    source = default_torch.resolve(default_torch.choose(torch, env), cache=cache / "torch",
                                   python=spec["python"], log=log)
    deps = default_torch.requirements(source, spec["python_packages"])
    with_torch = {**spec, "torch": default_torch.recipe(source, deps)}

    def build(work: Path) -> None:
        below = _cached(spec, env, log, "the default base image", lambda w: _build(spec, w, env, log))
        _add_torch(below, with_torch, source, deps, work, env, log)

    return _cached(with_torch, env, log, f"the default base image with torch {source.version}", build), "default"


def _key(spec: dict) -> str:
    return hashlib.sha256(oci.canonical_json(spec)).hexdigest()[:16]


def _cached(spec: dict, env: Mapping[str, str], log: Callable[[str], None], what: str,
            build: Callable[[Path], None]) -> Path:
    """cache/bases/default-<key of spec>, built by `build(work)` into a scratch directory
    renamed into place (a killed build leaves no base behind)."""
    key = _key(spec)
    bases = user_cache_dir(env) / "bases"
    target = bases / f"default-{key}"
    if (target / "index.json").is_file():
        return target
    with cache_lock(bases / f"default-{key}.lock", what, log):
        if (target / "index.json").is_file():  # built by another process while we waited
            return target
        log(f"building {what} once (cached in {target}) ...")
        started = time.monotonic()
        work = scratch_path(bases, f"default-{key}", "partial")
        shutil.rmtree(work, ignore_errors=True)
        try:
            build(work)
            os.replace(work, target)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        log(f"{what} ready in {time.monotonic() - started:.0f} s")
    return target


def _build(spec: dict, work: Path, env: Mapping[str, str], log: Callable[[str], None]) -> None:
    layout = oci.Layout.create(work)
    epoch = oci.source_date_epoch(env)
    rootfs_tar = work / "rootfs.tar"
    _debian_rootfs(spec, rootfs_tar, env, log)
    log("  layer 1/3: Debian root filesystem")
    layers = [oci.write_layer(oci.tar_entries(rootfs_tar), layout.blobs, epoch=epoch, level=1, own=False,
                              log=log, what="layer 1/3")]
    rootfs_tar.unlink()
    log("  layer 2/3: Triton server (nvidia-pytriton)")
    layers.append(oci.write_layer(_triton_entries(spec), layout.blobs, epoch=epoch, level=1, log=log, what="layer 2/3"))
    log("  layer 3/3: Python packages (" + ", ".join(spec["python_packages"]) + ")")
    layers.append(oci.write_layer(_python_entries(spec), layout.blobs, epoch=epoch, level=1, log=log, what="layer 3/3"))
    _finish(layout, spec, [layer.descriptor for layer in layers], [layer.diff_id for layer in layers], epoch)


def _add_torch(below: Path, spec: dict, source: "default_torch.TorchSource", deps: list,
               work: Path, env: Mapping[str, str], log: Callable[[str], None]) -> None:
    """The default base `below` (its blobs linked, not copied) plus one layer with torch."""
    base = oci.Layout(below)
    _, manifest = base.find_manifest("default")
    config = base.read_json(manifest["config"]["digest"])
    layers = oci.manifest_layers(manifest)
    layout = oci.Layout.create(work)
    for item in layers:
        layout.link_blob(base.verified_blob(item), item.digest)
    epoch = oci.source_date_epoch(env)
    names = ", ".join(pydist.canonical(d.metadata["Name"]) for d in deps)
    log(f"  layer 4/4: torch {source.version} from {source.directory}" + (f" (with {names})" if names else ""))
    prefix = f"usr/local/lib/python{spec['python']}/dist-packages"
    layer = oci.write_layer(default_torch.entries(source, deps, prefix), layout.blobs, epoch=epoch, level=1,
                            log=log, what="layer 4/4")
    _finish(layout, spec, [*layers, layer.descriptor], [*config["rootfs"]["diff_ids"], layer.diff_id], epoch)


def _finish(layout: oci.Layout, spec: dict, layers: list[oci.Descriptor], diff_ids: list[str], epoch: int) -> None:
    config_desc = layout.add_json(_config(spec, diff_ids, epoch), oci.OCI_CONFIG)
    manifest = {"schemaVersion": 2, "mediaType": oci.OCI_MANIFEST, "config": config_desc.to_json(),
                "layers": [layer.to_json() for layer in layers]}
    desc = layout.add_json(manifest, oci.OCI_MANIFEST)
    layout.write_index([oci.Descriptor(desc.media_type, desc.digest, desc.size, {oci.REF_NAME: "default"})])
    (layout.root / "recipe.json").write_text(json.dumps(spec, indent=2, sort_keys=True))


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
    # mmdebstrap is quiet for minutes at a time (downloads, dpkg): a line every 10 s.
    process.run(command, stage="image", extra_env=extra, log_path=out.with_suffix(".log"),
                heartbeat=(HEARTBEAT_S, lambda took, last: log(f"  mmdebstrap: {took:.0f} s" + (f", {last}" if last else ""))),
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
    entries = [oci.file_entry(name, path) for name, path in pydist.record_files(dists, prefix).items()]
    return iter(oci.parent_dirs(entries))


def _config(spec: dict, diff_ids: list[str], epoch: int) -> dict:
    versions = spec["python_packages"]
    torch = spec.get("torch")
    labels = {
        "org.opencontainers.image.title": "trtis-build default Triton base (CPU)",
        "org.opencontainers.image.description": "Debian " + spec["suite"] + ", tritonserver from "
                                                 "nvidia-pytriton " + spec["pytriton"] + ", Python backend"
                                                 + (", torch " + torch["version"] if torch else ""),
        LABEL_PREFIX + "python.version": spec["python"],
        LABEL_PREFIX + "pytriton.version": spec["pytriton"],
        LABEL_PREFIX + "debian.suite": spec["suite"],
    }
    tensorflow = versions.get("tensorflow-cpu") or versions.get("tensorflow")
    if tensorflow:
        labels[LABEL_PREFIX + "tensorflow.version"] = tensorflow
    if torch:  # read by the version-skew guard of `trtis-build server`
        labels[LABEL_PREFIX + "torch.version"] = torch["version"]
    created = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))
    return {
        "architecture": "amd64", "os": "linux", "created": created,
        "config": {
            "Env": [f"PATH={TRITON_ROOT}/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                    f"LD_LIBRARY_PATH={TRITON_ROOT}/lib", "PYTHONDONTWRITEBYTECODE=1"],
            "Cmd": ["tritonserver"], "WorkingDir": "/", "Labels": labels,
        },
        "rootfs": {"type": "layers", "diff_ids": list(diff_ids)},
        "history": [{"created": created, "created_by": f"trtis-build default base: {what}"}
                    for what in ("mmdebstrap", "tritonserver", "python packages", *(("torch",) if torch else ()))],
    }
