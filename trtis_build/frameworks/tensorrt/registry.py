"""A real TensorRT plugin registry, probed in a subprocess (registry_probe.py): TensorRT
segfaults on some misuse (a library without getCreators, plugins alive at deregistration)
and must never take the driver down with it."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import os
import re
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Mapping

from ...core import process
from ...core.errors import ToolchainError
from .names import PluginId

PROBE_SCRIPT = Path(__file__).with_name("registry_probe.py")

@dataclass(frozen=True)
class LibraryLoad:
    path: str
    loaded: bool                       # IPluginRegistry::loadLibrary returned a handle
    registered: tuple[PluginId, ...]   # what the load added to the registry
    errors: tuple[str, ...]            # TensorRT's error recorder during the load
    messages: tuple[str, ...] = ()     # dlopen mode: what the library printed on stderr

    @property
    def refusal(self) -> str | None:
        """TensorRT's reason for refusing the library, when it did."""
        if self.loaded:
            return None
        named = [e for e in self.errors if "already" in e or "Cannot register" in e]
        return (named or list(self.errors) or ["loadLibrary returned no handle and recorded no error"])[0]


@dataclass(frozen=True)
class RegistryProbe:
    module: str                        # the Python module used: tensorrt, tensorrt_lean, ...
    version: str
    libraries: tuple[LibraryLoad, ...]
    lookups: tuple[tuple[PluginId, bool], ...]   # get_creator(name, version, namespace) found?
    crash: str | None = None           # the probe died: during which step

    def found(self, plugin: PluginId) -> bool:
        return dict(self.lookups).get(plugin, False)


def runtime_env(python_path: Path | None) -> dict[str, str] | None:
    """Environment for the registry probes that puts a chosen TensorRT Python runtime first
    (the tensorrt-python-path setting), or None for the interpreter's own."""
    if python_path is None:
        return None
    path = Path(python_path)
    if not has_runtime(path):
        raise ToolchainError(f"tensorrt-python-path {path} holds no TensorRT Python runtime "
                             "(no tensorrt or tensorrt_lean package in it)", where=path,
                             hint="install one there, e.g. pip install --no-deps --target DIR "
                                  "tensorrt-lean-cu12-libs==10.16.1.11 tensorrt-lean-cu12-bindings==10.16.1.11, "
                                  "or unset the setting")
    inherited = os.environ.get("PYTHONPATH")
    return {"PYTHONPATH": os.pathsep.join([str(path.resolve())] + ([inherited] if inherited else []))}


RUNTIME_MODULES = ("tensorrt", "tensorrt_lean", "tensorrt_dispatch")  # as trt_registry_probe.py tries them


def has_runtime(python_path: Path | None = None) -> bool:
    """Whether the registry probe will find a TensorRT Python module (found, not imported):
    in `python_path` (a module or its *_bindings package, which the module imports), else here."""
    if python_path is not None:
        return any((Path(python_path) / name).is_dir()
                   for module in RUNTIME_MODULES for name in (module, f"{module}_bindings"))
    for name in RUNTIME_MODULES:
        try:
            if importlib.util.find_spec(name) is not None:
                return True
        except (ImportError, ValueError):
            continue
    return False


def runtime_version(python_path: Path | None = None) -> str | None:
    """Version of the TensorRT Python runtime the registry checks would import (from package
    metadata: nothing is imported), in `python_path` when given, else in this interpreter."""
    search = [str(python_path)] if python_path else None
    found = {}
    for dist in importlib.metadata.distributions(**({"path": search} if search else {})):
        name = (dist.metadata["Name"] or "").lower().replace("-", "_")
        if re.fullmatch(r"tensorrt(_lean|_dispatch)?(_cu\d+)?(_bindings)?", name):
            found[name] = dist.version
    bindings = [version for name, version in sorted(found.items()) if name.endswith("_bindings")]
    return (bindings or list(found.values()) or [None])[0]


def _probe_events(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    events = []
    for line in path.read_text().splitlines():
        try:
            events.append(json.loads(line))
        except json.JSONDecodeError:
            break  # a crash cut the last line short
    return events


def probe_registry(libraries: Iterable[Path], *, lookups: Iterable[PluginId] = (),
                   python: str | None = None, module: str | None = None, dlopen: bool = False,
                   extra_env: Mapping[str, str] | None = None, timeout: float = 120) -> RegistryProbe:
    """Load `libraries` in order into TensorRT's plugin registry in a fresh interpreter and
    report what each registered, what each refused with TensorRT's reason, and which
    `lookups` get_creator finds afterwards. dlopen=True opens them the way Triton's plugins=
    does (plain dlopen: only self-registering libraries such as the autoload shims register).
    `extra_env` can select another TensorRT runtime (PYTHONPATH). Never creates a Runtime."""
    libraries = [str(Path(lib).resolve()) for lib in libraries]
    with tempfile.TemporaryDirectory(prefix="trtis-trt-probe-") as tmp:
        events_path = Path(tmp) / "events.jsonl"
        command = [python or sys.executable, str(PROBE_SCRIPT), "--output", str(events_path)]
        command += ["--module", module] if module else []
        command += ["--dlopen"] if dlopen else []
        command += [arg for p in lookups for arg in ("--lookup", f"{p.name}:{p.version}:{p.namespace}")]
        done = process.run(command + libraries, stage="tensorrt registry", check=False, timeout=timeout,
                           extra_env=extra_env)
        events = _probe_events(events_path)
    start = next((e for e in events if e["event"] == "start"), None)
    if start is None:
        error = next((e["message"] for e in events if e["event"] == "error"), done.output.strip()[-2000:])
        raise ToolchainError(f"the TensorRT Python runtime could not be used: {error}",
                             hint="pip install tensorrt-lean-cu13 (or tensorrt) into the environment that "
                                  "runs trtis-build")
    loads = tuple(LibraryLoad(e["path"], e["loaded"], tuple(PluginId(*t) for t in e["registered"]),
                              tuple(e["errors"]), tuple(e.get("messages", ())))
                  for e in events if e["event"] == "load")
    found = tuple((PluginId(*e["plugin"]), e["found"]) for e in events if e["event"] == "lookup")
    crash = None
    if not any(e["event"] == "done" for e in events):
        last = events[-1]
        step = f"loading {last['path']}" if last["event"] == "loading" else f"after {last['event']}"
        how = f"died of signal {-done.returncode}" if done.returncode < 0 else f"exited {done.returncode}"
        tail = done.output.strip()[-500:]
        crash = f"the TensorRT registry probe {how} while {step}" + (f": {tail}" if tail else "")
    return RegistryProbe(module=start["module"], version=start["version"], libraries=loads, lookups=found,
                         crash=crash)
