"""Load a bundle's PyTorch operator libraries into this process, safely.

torch allows one TORCH_LIBRARY per namespace in a process: a second library (another version
of the op, or another op that took the name) fails or, for kernels, silently replaces the
first. The guard here refuses such a load up front, naming the namespace and its owner; it
also refuses a library built for a newer torch (stable ABI) or another torch (exact ABI)."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path

from trtis_server.manifest import ManifestError, read

from ...core.errors import BundleError, ToolchainError
from ...core.files import sha256_file
from ..tensorflow.loader import default_bundle_path
from . import incompatibility

_LOCK = threading.Lock()
_LOADED: dict[str, str] = {}   # sha256 -> path of a library loaded through this loader
_OWNERS: dict[str, str] = {}   # namespace -> path of the library that defined it


@dataclass
class LoadedTorchBundle:
    path: Path
    manifest: dict
    libraries: dict[str, str] = field(default_factory=dict)   # "torch/addsub" -> library path
    operators: dict[str, str] = field(default_factory=dict)   # "trtis::add_sub" -> library path

    def op(self, name: str):
        """torch's handle of an operator, e.g. bundle.op('trtis::add_sub') is
        torch.ops.trtis.add_sub (call it, or take .default for opcheck)."""
        import torch

        if name not in self.operators:
            raise KeyError(f"{name!r} is not an operator of this bundle (it has: {', '.join(sorted(self.operators))})")
        namespace, _, operator = name.partition("::")
        return getattr(getattr(torch.ops, namespace), operator.split(".")[0])


def _torch():
    try:
        import torch
    except ImportError as exc:
        raise ToolchainError("torch is not installed in this Python",
                             hint="pip install 'trtis-build[torch]'") from exc
    return torch


def load_library(path: Path, entry: dict, built_with: str | None = None) -> None:
    """Load one torch op library after checking its hash, its torch and its namespaces."""
    torch = _torch()
    path = Path(path).resolve()
    if not path.is_file():
        raise BundleError(f"op library {path} does not exist", where=path,
                          hint="rebuild the bundle with `trtis-build ops build`")
    sha = sha256_file(path)
    if entry.get("sha256") and sha != entry["sha256"]:
        raise BundleError(f"{path.name} does not match its manifest (sha256 {sha[:12]}..., expected "
                          f"{entry['sha256'][:12]}...)", where=path,
                          hint="the file was changed after the bundle was built: rebuild it")
    problem = incompatibility(entry, built_with, torch.__version__)
    if problem:
        raise BundleError(f"refusing to load {path}: {problem}", where=path,
                          hint="rebuild the bundle with this torch, or run it with a torch it supports")
    with _LOCK:
        if sha in _LOADED:
            return
        existing = {name.split("::")[0] for name in torch._C._dispatch_get_all_op_names()}
        taken = sorted(set(entry.get("namespaces", [])) & existing)
        if taken:
            owners = sorted({_OWNERS.get(ns, "torch or a library loaded without trtis-build") for ns in taken})
            raise BundleError(
                f"refusing to load {path}: torch namespace(s) {', '.join(taken)} are already registered in this "
                f"process (by {'; '.join(owners)})", where=path,
                hint="load each op library once per process; torch allows one library per namespace")
        torch.ops.load_library(str(path))
        _LOADED[sha] = str(path)
        for namespace in entry.get("namespaces", []):
            _OWNERS[namespace] = str(path)


def load_bundle(path: Path | str | None = None) -> LoadedTorchBundle:
    """Load every PyTorch library of the bundle at `path` (default $TRTIS_BUNDLE or build/bundle)."""
    path = Path(path) if path is not None else default_bundle_path()
    try:
        manifest = read(path)
    except ManifestError as exc:
        raise BundleError(str(exc), where=path, hint="build the bundle with `trtis-build ops build`") from None
    built_with = (manifest.get("toolchain", {}).get("torch") or {}).get("version")
    loaded = LoadedTorchBundle(path=path, manifest=manifest)
    for library in manifest["libraries"]:
        if library["framework"] != "torch":
            continue
        load_library(path / library["path"], library, built_with)
        loaded.libraries[f"torch/{library['op']}"] = str(path / library["path"])
        for name in library["ops"]:
            loaded.operators[name] = str(path / library["path"])
    return loaded
