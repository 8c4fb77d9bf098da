"""Stage 1: read `ops/<framework>/<name>/op.toml`, validate it, and find the sources.

Pure: reads files, starts nothing. Returns frozen `OpSpec`s that later stages consume.
"""

from __future__ import annotations

import os
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from .. import frameworks
from ..core.errors import OpSpecError
from ..frameworks.base import field_error as _fail
from ..frameworks.base import read_string as _string
from ..frameworks.base import read_source
from ..frameworks.base import read_string_list as _string_list
from ..frameworks.base import reject_unknown as _reject_unknown

OP_TOML = "op.toml"
# An op's directory names its library (lib<name>.so) and CMake targets (<prefix>_<name>).
OP_DIR_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,63}")
VERSION = re.compile(r"[A-Za-z0-9][A-Za-z0-9.+_-]{0,63}")

SOURCE_KEYS = ("sources", "kernel_sources", "cuda_sources", "gpu_sources")
# [harness]: how the GPU harness calls the op's CUDA launcher (validated by testing/harness.py).
COMMON_KEYS = frozenset({"name", "version", "description", "include_dirs", "cxx_flags", "cuda_flags",
                         "tests", "harness", "kernel_library", *SOURCE_KEYS})


@dataclass(frozen=True)
class OpSpec:
    name: str
    framework: str
    directory: Path
    version: str
    description: str
    declared: tuple                    # what the library registers (the framework's declare())
    sources: tuple[Path, ...]          # adapter C++: framework headers, compiled by g++
    kernel_sources: tuple[Path, ...]   # framework-free C++ kernels, g++
    cuda_sources: tuple[Path, ...]     # framework-free CUDA kernels, nvcc without framework headers
    gpu_sources: tuple[Path, ...]      # classic TF layout: *.cu.cc through nvcc WITH TF headers
    include_dirs: tuple[Path, ...]
    cxx_flags: tuple[str, ...]
    cuda_flags: tuple[str, ...]
    tests: tuple[Path, ...]
    # How the framework builds it, from op.toml keys beyond the names (the framework's
    # op_settings; e.g. PyTorch's ABI mode).
    settings: Mapping[str, Any] = field(default_factory=dict)
    # Whether the framework-free kernel library (kernels/<framework>-<op>.so, the GPU harness's)
    # is built: op.toml `kernel_library`; by default, where no kernel source includes the framework.
    kernel_library: bool = True

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
        return tuple(str(item) for item in self.declared)


SOURCE_SUFFIXES = (".cu", ".cc", ".cpp", ".cxx")


LOCAL_INCLUDE = re.compile(r'^\s*#\s*include\s*"([^"\n]+)"', re.M)
INCLUDE_SCAN_LIMIT = 400  # files read per source, following its own headers


class FrameworkReach:
    """Whether a source needs the framework: it includes the framework's headers or registers
    with it, itself or through the project's own headers (`#include "..."`, resolved beside the
    including file, then in the op's include directories, never outside the project), as
    TensorRT's plugins do with their common/ helpers. One per op: headers are read once."""

    def __init__(self, seam, include_dirs: list[Path], root: Path):
        self.seam, self.include_dirs, self.root = seam, include_dirs, root
        self.direct: dict[Path, tuple[bool, list[Path]]] = {}

    def _read(self, path: Path) -> tuple[bool, list[Path]]:
        if path not in self.direct:
            text = read_source(path)
            included = []
            for name in LOCAL_INCLUDE.findall(text):
                for base in (path.parent, *self.include_dirs):
                    candidate = (base / name).resolve()
                    if candidate.is_file() and self.root in candidate.parents:
                        included.append(candidate)
                        break
            self.direct[path] = (self.seam.is_adapter_source(text), included)
        return self.direct[path]

    def __call__(self, path: Path) -> bool:
        seen, pending = set(), [path.resolve()]
        while pending and len(seen) < INCLUDE_SCAN_LIMIT:
            current = pending.pop()
            if current in seen:
                continue
            seen.add(current)
            uses, included = self._read(current)
            if uses:
                return True
            pending += included
        return False


def _classify(path: Path, needs_framework: FrameworkReach) -> str | None:
    """Which source list a file belongs to, by what it is (op.toml can override): a C++ file
    that needs the framework (FrameworkReach) is an adapter (`sources`), compiled with the
    framework's headers whatever its name (TensorFlow's guides call theirs *_kernels.cc);
    other C++ is a framework-free kernel. A .cu file is CUDA for nvcc, which only a framework
    with such a role (TensorFlow's classic *.cu.cc) compiles with the framework's flags; TensorRT's
    get its headers there too (the plan's SYSTEM include directories)."""
    name = path.name
    if name.endswith((".cu.cc", ".cu.cpp")):
        return "gpu_sources"
    if not name.endswith(SOURCE_SUFFIXES):
        return None
    adapter = needs_framework(path)
    seam = needs_framework.seam
    if name.endswith(".cu"):
        return seam.device_adapter_role if adapter and seam.device_adapter_role else "cuda_sources"
    return "sources" if adapter else "kernel_sources"


def _candidate_files(directory: Path) -> list[Path]:
    """Every file below the op directory, in a stable order, without following directory
    links; hidden, `_`-prefixed and build directories are skipped."""
    found = []
    for current, dirs, files in os.walk(directory):
        dirs[:] = sorted(d for d in dirs if not d.startswith((".", "_")) and d not in ("build", "node_modules")
                         and not os.path.islink(os.path.join(current, d)))
        found += [Path(current) / f for f in sorted(files)]
    return found


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


def _sources(data: dict, directory: Path, op_toml: Path, root: Path,
             needs_framework: FrameworkReach) -> dict[str, list[Path]]:
    explicit = {key: _string_list(data, key, op_toml) for key in SOURCE_KEYS}
    listed = {
        key: _resolve_files(directory, names, op_toml, key, root)
        for key, names in explicit.items() if names is not None
    }
    taken = {path for paths in listed.values() for path in paths}
    found: dict[str, list[Path]] = {key: [] for key in SOURCE_KEYS}
    for path in _candidate_files(directory):
        if not path.name.endswith(SOURCE_SUFFIXES) or not path.is_file() or path.resolve() in taken:
            continue
        if root not in path.resolve().parents:  # a link found by convention: the rule for listed ones
            raise _fail(f"{path.relative_to(directory)} is a link to {path.resolve()}, outside the project "
                        f"{root}", op_toml, "sources", hint="copy the file into the project, or remove the link")
        kind = _classify(path, needs_framework)
        if kind and explicit[kind] is None:
            found[kind].append(path.resolve())
    return {key: listed.get(key, found[key]) for key in SOURCE_KEYS}


def load_op(directory: Path, framework: str, *, root: Path, default_namespace: str = "") -> OpSpec:
    """Read and validate one op directory."""
    if not OP_DIR_NAME.fullmatch(directory.name):
        raise OpSpecError(f"op directory name {directory.name!r} cannot name a library and CMake targets",
                          where=directory, hint="use ASCII letters, digits and '_', starting with a letter, "
                                                "at most 64 characters (e.g. add_sub)")
    directory = directory.resolve()
    op_toml = directory / OP_TOML
    if not op_toml.is_file():
        raise OpSpecError(f"op directory has no {OP_TOML}", where=directory,
                          hint=f"add {OP_TOML} (see `trtis-build ops add --help`) or remove the directory; a folder "
                               "of shared code is fine once an op uses it (include_dirs or sources)")
    try:
        data: dict[str, Any] = tomllib.loads(op_toml.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise _fail(f"not valid TOML: {exc}", op_toml) from None
    seam = frameworks.get(framework)
    _reject_unknown(data, COMMON_KEYS | seam.op_keys, op_toml)
    name = _string(data, "name", op_toml, required=False, default=directory.name)
    if name != directory.name:
        raise _fail(f"'name' is {name!r} but the directory is {directory.name!r}", op_toml, "name",
                    hint="rename one so that they match")
    if "harness" in data and not isinstance(data["harness"], dict):
        raise _fail("[harness] must be a table (how the GPU harness calls the kernel)", op_toml, "harness",
                    hint="write it as a [harness] section, or remove it to use the template's convention")
    version = _string(data, "version", op_toml, required=True)
    if not VERSION.fullmatch(version):
        raise _fail(f"'version' {version!r} is not a version", op_toml, "version",
                    hint='write it as version = "1.0" (letters, digits, ".", "-", "+", "_")')
    description = _string(data, "description", op_toml, required=False)
    include_dirs = [directory] + _resolve_dirs(data, directory, op_toml)
    needs_framework = FrameworkReach(seam, include_dirs, root)
    sources = _sources(data, directory, op_toml, root, needs_framework)
    if not sources["sources"]:
        raise _fail(f"no adapter source found: no C++ file below {directory.name}/ includes {seam.title}'s "
                    "headers or registers with it", op_toml, "sources",
                    hint="add the adapter (the file with the registration), or list it under 'sources'")
    # Kernels shared from another op directory bring their headers along.
    for path in sources["kernel_sources"] + sources["cuda_sources"]:
        if path.parent not in include_dirs:
            include_dirs.append(path.parent)
    kernel_library = data.get("kernel_library")
    if kernel_library is not None and not isinstance(kernel_library, bool):
        raise _fail("'kernel_library' must be true or false", op_toml, "kernel_library")
    if kernel_library is None:
        kernel_library = not any(needs_framework(path) for path in sources["kernel_sources"] + sources["cuda_sources"])
    tests = _string_list(data, "tests", op_toml)
    test_files = (_resolve_files(directory, tests, op_toml, "tests", root) if tests is not None
                  else sorted(p.resolve() for p in directory.glob("test_*.py")))
    declared = seam.declare(data, op_toml, default_namespace=default_namespace)
    return OpSpec(
        name=name, framework=framework, directory=directory, version=version,
        description=description,
        declared=declared,
        sources=tuple(sources["sources"]), kernel_sources=tuple(sources["kernel_sources"]),
        cuda_sources=tuple(sources["cuda_sources"]), gpu_sources=tuple(sources["gpu_sources"]),
        include_dirs=tuple(include_dirs),
        cxx_flags=tuple(_string_list(data, "cxx_flags", op_toml) or ()),
        cuda_flags=tuple(_string_list(data, "cuda_flags", op_toml) or ()),
        tests=tuple(test_files),
        settings=seam.op_settings(data, op_toml, declared=declared, adapter_sources=tuple(sources["sources"])),
        kernel_library=kernel_library,
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

    Directories whose name starts with '.' or '_' are skipped (scratch, __pycache__), and so
    is a directory without op.toml whose files an op uses (shared code, like the common/ folder
    beside TensorRT's plugins); any other directory without op.toml is an error."""
    ops, without_toml = [], []
    for framework in frameworks.names():
        base = root / "ops" / framework
        if not base.is_dir():
            continue
        for directory in sorted(base.iterdir()):
            if not directory.is_dir() or directory.name.startswith((".", "_")):
                continue
            if not (directory / OP_TOML).is_file():
                without_toml.append((directory, framework))
                continue
            ops.append(load_op(directory, framework, root=root.resolve(), default_namespace=default_namespace))
    for directory, framework in without_toml:
        shared = directory.resolve()
        used = any(shared == path or shared in path.parents for op in ops
                   for path in (*op.include_dirs, *op.sources, *op.kernel_sources, *op.cuda_sources, *op.gpu_sources))
        if not used:
            load_op(directory, framework, root=root.resolve(), default_namespace=default_namespace)  # raises
    return ops
