"""Load a bundle's TensorFlow op libraries into this process, safely.

TensorFlow accepts a second library that registers an existing op name without a word and
then fails every call ("Multiple OpKernel registrations match NodeDef"). The guard here
refuses such a load up front, naming the op and where it came from."""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType

from trtis_server.manifest import ManifestError, read

from ...core.errors import BundleError, ToolchainError
from ...core.files import sha256_file

_LOCK = threading.Lock()
# sha256 of a loaded library -> (path it was loaded from, module): loading identical bytes
# twice (the bundle copy and a model's copy) is harmless and returns the first module.
_LOADED: dict[str, tuple[str, ModuleType]] = {}
# op name -> library path that registered it through this loader
_OWNERS: dict[str, str] = {}


@dataclass
class LoadedBundle:
    path: Path
    manifest: dict
    modules: dict[str, ModuleType] = field(default_factory=dict)     # "tensorflow/addsub" -> module
    op_modules: dict[str, ModuleType] = field(default_factory=dict)  # "TRTISExampleAddSub" -> module

    def op(self, name: str):
        """The Python wrapper function of a TF op, e.g. bundle.op('TRTISExampleAddSub'); a
        namespaced 'Team>MyOp' is TensorFlow's team_my_op."""
        module = self.op_modules[name]
        import re

        flat = name.replace(">", "_")
        snake = re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", "_", flat).lower()
        return getattr(module, snake)


def default_bundle_path() -> Path:
    return Path(os.environ.get("TRTIS_BUNDLE", "build/bundle"))


def _tensorflow():
    try:
        import tensorflow as tf
        from tensorflow.python.framework import op_def_registry
    except ImportError as exc:
        raise ToolchainError("TensorFlow is not installed in this Python",
                             hint="pip install 'trtis-build[tf]' (tensorflow-cpu==2.21.0)") from exc
    return tf, op_def_registry


def load_library(path: Path, op_names: list[str], expected_sha256: str | None = None) -> ModuleType:
    """Load one TF op library after checking its hash and that none of its ops exists yet."""
    tf, op_def_registry = _tensorflow()
    path = Path(path).resolve()
    if not path.is_file():
        raise BundleError(f"op library {path} does not exist", where=path,
                          hint="rebuild the bundle with `trtis-build ops build`")
    sha = sha256_file(path)
    if expected_sha256 and sha != expected_sha256:
        raise BundleError(f"{path.name} does not match its manifest (sha256 {sha[:12]}..., "
                          f"expected {expected_sha256[:12]}...)", where=path,
                          hint="the file was changed after the bundle was built: rebuild it")
    with _LOCK:
        if sha in _LOADED:
            return _LOADED[sha][1]
        taken = [name for name in op_names if op_def_registry.get(name) is not None]
        if taken:
            owners = sorted({_OWNERS.get(name, "TensorFlow or a library loaded without trtis-build")
                             for name in taken})
            raise BundleError(
                f"refusing to load {path}: op(s) {', '.join(taken)} are already registered in this "
                f"process (by {'; '.join(owners)})", where=path,
                hint="load each op library once; two libraries registering one op name make "
                     "every call of that op fail in TensorFlow")
        module = tf.load_op_library(str(path))
        _LOADED[sha] = (str(path), module)
        for name in op_names:
            _OWNERS[name] = str(path)
        return module


def load_bundle(path: Path | str | None = None) -> LoadedBundle:
    """Load every TensorFlow library of the bundle at `path` (default $TRTIS_BUNDLE or
    build/bundle). TensorRT plugin libraries are not loaded here."""
    path = Path(path) if path is not None else default_bundle_path()
    try:
        manifest = read(path)
    except ManifestError as exc:
        raise BundleError(str(exc), where=path, hint="build the bundle with `trtis-build ops build`") from None
    loaded = LoadedBundle(path=path, manifest=manifest)
    for library in manifest["libraries"]:
        if library["framework"] != "tensorflow":
            continue
        module = load_library(path / library["path"], library["ops"], library["sha256"])
        loaded.modules[f"tensorflow/{library['op']}"] = module
        for name in library["ops"]:
            loaded.op_modules[name] = module
    return loaded
