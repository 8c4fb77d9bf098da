"""Stage 1: read `ops/<framework>/<name>/op.toml`, validate it, and find the sources.

Pure: reads files, starts nothing. Returns frozen `OpSpec`s that later stages consume.
"""

from __future__ import annotations

import difflib
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import OpSpecError

FRAMEWORKS = ("tensorflow", "tensorrt")
OP_TOML = "op.toml"

# TensorFlow's own rule for op names (op_def_builder.cc): starts upper-case, then word chars.
TF_OP_NAME = re.compile(r"^[A-Z][A-Za-z0-9_]*$")
PLUGIN_FIELD = re.compile(r"^[A-Za-z0-9_.\-]+$")

SOURCE_KEYS = ("sources", "kernel_sources", "cuda_sources", "gpu_sources")
# [harness]: how the GPU harness calls the op's CUDA launcher (validated by harness.py).
_COMMON_KEYS = {"name", "version", "description", "include_dirs", "cxx_flags", "cuda_flags",
                "tests", "harness", *SOURCE_KEYS}
ALLOWED_KEYS = {
    "tensorflow": _COMMON_KEYS | {"ops"},
    "tensorrt": _COMMON_KEYS | {"plugins", "namespace"},
}
PLUGIN_KEYS = {"name", "version", "namespace"}


@dataclass(frozen=True, order=True)
class PluginId:
    """A TensorRT plugin is found by (name, version, namespace)."""

    name: str
    version: str
    namespace: str

    def __str__(self) -> str:
        return f"{self.namespace}::{self.name} v{self.version}" if self.namespace else f"{self.name} v{self.version}"


@dataclass(frozen=True)
class OpSpec:
    name: str
    framework: str
    directory: Path
    version: str
    description: str
    tf_ops: tuple[str, ...]            # TensorFlow op names the library registers
    plugins: tuple[PluginId, ...]      # TensorRT plugins the library registers
    sources: tuple[Path, ...]          # adapter C++: framework headers, compiled by g++
    kernel_sources: tuple[Path, ...]   # framework-free C++ kernels, g++
    cuda_sources: tuple[Path, ...]     # framework-free CUDA kernels, nvcc without framework headers
    gpu_sources: tuple[Path, ...]      # classic TF layout: *.cu.cc through nvcc WITH TF headers
    include_dirs: tuple[Path, ...]
    cxx_flags: tuple[str, ...]
    cuda_flags: tuple[str, ...]
    tests: tuple[Path, ...]

    @property
    def key(self) -> str:
        return f"{self.framework}/{self.name}"

    @property
    def op_toml(self) -> Path:
        return self.directory / OP_TOML

    @property
    def layout(self) -> str:
        return "classic" if self.gpu_sources else "split"

    @property
    def has_cuda(self) -> bool:
        return bool(self.cuda_sources or self.gpu_sources)

    @property
    def registered_names(self) -> tuple[str, ...]:
        return self.tf_ops if self.framework == "tensorflow" else tuple(str(p) for p in self.plugins)

    def all_sources(self) -> tuple[Path, ...]:
        return self.sources + self.kernel_sources + self.cuda_sources + self.gpu_sources


def _classify(path: Path) -> str | None:
    """Which source list a file belongs to by naming convention (op.toml can override)."""
    name = path.name
    if name.endswith((".cu.cc", ".cu.cpp")):
        return "gpu_sources"
    if name.endswith(".cu"):
        return "cuda_sources"
    if name.endswith((".cc", ".cpp", ".cxx")):
        stem = name.rsplit(".", 1)[0]
        return "kernel_sources" if stem.endswith(("_kernel", "_kernels")) else "sources"
    return None


def _fail(message: str, op_toml: Path, field: str | None = None, hint: str | None = None) -> OpSpecError:
    where = f"{op_toml}" + (f", field '{field}'" if field else "")
    return OpSpecError(message, where=where, hint=hint)


def _string(data: dict, key: str, op_toml: Path, *, required: bool, default: str = "") -> str:
    if key not in data:
        if required:
            raise _fail(f"missing required field '{key}'", op_toml, key,
                        hint=f"add `{key} = \"...\"` to {OP_TOML}")
        return default
    value = data[key]
    if not isinstance(value, str):
        raise _fail(f"'{key}' must be a string, not {type(value).__name__}", op_toml, key)
    return value


def _string_list(data: dict, key: str, op_toml: Path) -> list[str] | None:
    if key not in data:
        return None
    value = data[key]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise _fail(f"'{key}' must be a list of strings", op_toml, key,
                    hint=f'write it as {key} = ["a", "b"]')
    return value


def _resolve_files(directory: Path, names: list[str], op_toml: Path, key: str, root: Path) -> list[Path]:
    files = []
    for name in names:
        path = (directory / name).resolve()
        if not path.is_file():
            raise _fail(f"'{key}' lists {name!r}, which does not exist", op_toml, key,
                        hint=f"create {directory / name} or remove it from '{key}'")
        if root not in path.parents:
            raise _fail(f"'{key}' lists {name!r}, which is outside the project {root}", op_toml, key)
        files.append(path)
    return files


def _sources(data: dict, directory: Path, op_toml: Path, root: Path) -> dict[str, list[Path]]:
    explicit = {key: _string_list(data, key, op_toml) for key in SOURCE_KEYS}
    listed = {
        key: _resolve_files(directory, names, op_toml, key, root)
        for key, names in explicit.items() if names is not None
    }
    taken = {path for paths in listed.values() for path in paths}
    found: dict[str, list[Path]] = {key: [] for key in SOURCE_KEYS}
    for path in sorted(directory.iterdir()):
        kind = _classify(path)
        if kind and path.is_file() and path.resolve() not in taken and explicit[kind] is None:
            found[kind].append(path.resolve())
    return {key: listed.get(key, found[key]) for key in SOURCE_KEYS}


def _tf_ops(data: dict, op_toml: Path) -> tuple[str, ...]:
    names = _string_list(data, "ops", op_toml)
    if not names:
        raise _fail("missing or empty 'ops': the TensorFlow op names this library registers", op_toml,
                    "ops", hint='add ops = ["MyOpName"] (the names given to REGISTER_OP)')
    for name in names:
        if not TF_OP_NAME.match(name):
            raise _fail(f"{name!r} is not a valid TensorFlow op name", op_toml, "ops",
                        hint="op names start with an upper-case letter, then letters, digits or _")
    if len(set(names)) != len(names):
        raise _fail("'ops' lists a name twice", op_toml, "ops")
    return tuple(names)


def _plugins(data: dict, op_toml: Path, default_namespace: str) -> tuple[PluginId, ...]:
    entries = data.get("plugins")
    if not isinstance(entries, list) or not entries or not all(isinstance(e, dict) for e in entries):
        raise _fail("missing or empty [[plugins]]: the TensorRT plugins this library registers", op_toml,
                    "plugins", hint='add [[plugins]] with name = "MyPlugin" and version = "1"')
    namespace = _string(data, "namespace", op_toml, required=False, default=default_namespace)
    plugins = []
    for index, entry in enumerate(entries):
        field = f"plugins[{index}]"
        _reject_unknown(entry, PLUGIN_KEYS, op_toml, prefix=f"{field}.")
        name = _string(entry, "name", op_toml, required=True)
        version = _string(entry, "version", op_toml, required=False, default="1")
        plugin_namespace = _string(entry, "namespace", op_toml, required=False, default=namespace)
        for label, value in (("name", name), ("version", version)):
            if not PLUGIN_FIELD.match(value):
                raise _fail(f"plugin {label} {value!r} is not valid", op_toml, f"{field}.{label}",
                            hint="use letters, digits, '_', '-' or '.'")
        if plugin_namespace and not PLUGIN_FIELD.match(plugin_namespace):
            raise _fail(f"plugin namespace {plugin_namespace!r} is not valid", op_toml, f"{field}.namespace")
        plugins.append(PluginId(name, version, plugin_namespace))
    if len(set(plugins)) != len(plugins):
        raise _fail("[[plugins]] lists one (name, version, namespace) twice", op_toml, "plugins")
    return tuple(plugins)


def _reject_unknown(data: dict, allowed: set[str], op_toml: Path, prefix: str = "") -> None:
    for key in data:
        if key not in allowed:
            close = difflib.get_close_matches(key, sorted(allowed), n=1)
            hint = f"did you mean '{prefix}{close[0]}'?" if close else f"allowed: {', '.join(sorted(allowed))}"
            raise _fail(f"unknown key '{prefix}{key}'", op_toml, prefix + key, hint=hint)


def load_op(directory: Path, framework: str, *, root: Path, default_namespace: str = "") -> OpSpec:
    """Read and validate one op directory."""
    directory = directory.resolve()
    op_toml = directory / OP_TOML
    if not op_toml.is_file():
        raise OpSpecError(f"op directory has no {OP_TOML}", where=directory,
                          hint=f"add {OP_TOML} (see `trtis-build ops add --help`) or remove the directory")
    try:
        data: dict[str, Any] = tomllib.loads(op_toml.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise _fail(f"not valid TOML: {exc}", op_toml) from None
    _reject_unknown(data, ALLOWED_KEYS[framework], op_toml)
    name = _string(data, "name", op_toml, required=False, default=directory.name)
    if name != directory.name:
        raise _fail(f"'name' is {name!r} but the directory is {directory.name!r}", op_toml, "name",
                    hint="rename one so that they match")
    version = _string(data, "version", op_toml, required=True)
    description = _string(data, "description", op_toml, required=False)
    sources = _sources(data, directory, op_toml, root)
    if not sources["sources"]:
        raise _fail("no adapter source found (a .cc file with the framework registration)", op_toml,
                    "sources", hint="add the adapter .cc file or list it under 'sources'")
    include_dirs = [directory] + _resolve_dirs(data, directory, op_toml)
    # Kernels shared from another op directory bring their headers along.
    for path in sources["kernel_sources"] + sources["cuda_sources"]:
        if path.parent not in include_dirs:
            include_dirs.append(path.parent)
    tests = _string_list(data, "tests", op_toml)
    test_files = (_resolve_files(directory, tests, op_toml, "tests", root) if tests is not None
                  else sorted(p.resolve() for p in directory.glob("test_*.py")))
    return OpSpec(
        name=name, framework=framework, directory=directory, version=version,
        description=description,
        tf_ops=_tf_ops(data, op_toml) if framework == "tensorflow" else (),
        plugins=_plugins(data, op_toml, default_namespace) if framework == "tensorrt" else (),
        sources=tuple(sources["sources"]), kernel_sources=tuple(sources["kernel_sources"]),
        cuda_sources=tuple(sources["cuda_sources"]), gpu_sources=tuple(sources["gpu_sources"]),
        include_dirs=tuple(include_dirs),
        cxx_flags=tuple(_string_list(data, "cxx_flags", op_toml) or ()),
        cuda_flags=tuple(_string_list(data, "cuda_flags", op_toml) or ()),
        tests=tuple(test_files),
    )


def _resolve_dirs(data: dict, directory: Path, op_toml: Path) -> list[Path]:
    dirs = []
    for name in _string_list(data, "include_dirs", op_toml) or []:
        path = (directory / name).resolve()
        if not path.is_dir():
            raise _fail(f"'include_dirs' lists {name!r}, which is not a directory", op_toml, "include_dirs")
        dirs.append(path)
    return dirs


def discover(root: Path, *, default_namespace: str = "") -> list[OpSpec]:
    """Every op under root/ops/<framework>/, sorted by (framework, name).

    Directories whose name starts with '.' or '_' are skipped (scratch, __pycache__)."""
    ops = []
    for framework in FRAMEWORKS:
        base = root / "ops" / framework
        if not base.is_dir():
            continue
        for directory in sorted(base.iterdir()):
            if directory.is_dir() and not directory.name.startswith((".", "_")):
                ops.append(load_op(directory, framework, root=root.resolve(),
                                   default_namespace=default_namespace))
    return ops
