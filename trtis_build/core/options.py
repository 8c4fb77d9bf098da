"""Options, resolved in one documented order: defaults < pyproject.toml
`[tool.trtis-build]` < environment (`TRTIS_BUILD_<KEY>`) < command line.

The environment is passed in as a Mapping so tests need no monkeypatching.
"""

from __future__ import annotations

import difflib
import os
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Mapping

from .errors import ConfigError

# key in pyproject/env -> (Options field, parser)
_KEYS: dict[str, str] = {
    "build-dir": "build_dir",
    "bundle-dir": "bundle_dir",
    "cuda-arch": "cuda_arch",
    "no-cuda": "no_cuda",
    "jobs": "jobs",
    "tensorrt-root": "tensorrt_root",
    "tensorrt-namespace": "tensorrt_namespace",
    "tensorrt-python-path": "tensorrt_python_path",
    "python": "python",
    "compiler-cache": "compiler_cache",
    "cxx": "cxx",
    "linker": "linker",
}
# What `compiler-cache` accepts: none, or sccache (its storage comes from its own settings).
COMPILER_CACHES = ("none", "sccache")
# What `linker` accepts: auto (lld when installed, else the compiler's own), system (the
# compiler's own), or one by name, whose program is ld.<name> (builder/toolchain.py).
LINKERS = ("auto", "system", "lld", "mold", "gold")

PATH_FIELDS = ("build_dir", "bundle_dir", "tensorrt_root", "tensorrt_python_path")
# TRTIS_BUILD_* variables that are not settings of a build (read where they are used).
ENV_ONLY = {"TRTIS_BUILD_VERBOSE", "TRTIS_BUILD_CACHE_DIR", "TRTIS_BUILD_DEBIAN_MIRROR", "TRTIS_BUILD_BASE_TORCH",
            "TRTIS_BUILD_TF_PCH"}


@dataclass(frozen=True, kw_only=True)
class Options:
    root: Path
    build_dir: Path
    bundle_dir: Path
    cuda_arch: tuple[str, ...] | None = None  # None: default list from the found nvcc
    no_cuda: bool = False
    jobs: int | None = None
    tensorrt_root: Path | None = None
    tensorrt_namespace: str = ""
    # A directory with a TensorRT Python runtime (the `tensorrt` or `tensorrt_lean` module) that
    # the registry checks import first. One of the headers' major version lets the build check
    # the autoload shims in a real registry too (they refuse another major by design).
    tensorrt_python_path: Path | None = None
    python: str | None = None  # interpreter that has TensorFlow; default: the driver's own
    compiler_cache: str = "none"  # launch g++ and nvcc through sccache (builder/compiler_cache.py)
    cxx: str | None = None  # C++ compiler (name on PATH or path); default: $CXX, then g++
    linker: str = "auto"  # what the compiler links with (-fuse-ld), see LINKERS
    sources: Mapping[str, str] = field(default_factory=dict)  # field -> where its value came from

    @property
    def ops_dir(self) -> Path:
        return self.root / "ops"

    @property
    def cmake_dir(self) -> Path:
        return self.build_dir / "cmake"


def find_project_root(start: Path) -> Path:
    """The nearest directory, from `start` upwards, with an `ops/` folder or a pyproject.toml
    that has a [tool.trtis-build] table; `start` itself when there is none."""
    start = start.resolve()
    for candidate in (start, *start.parents):
        if (candidate / "ops").is_dir():
            return candidate
        pyproject = candidate / "pyproject.toml"
        if pyproject.is_file() and "[tool.trtis-build]" in pyproject.read_text(errors="replace"):
            return candidate
    return start


def parse_arch_list(value: str | list | tuple, where: str) -> tuple[str, ...]:
    """'75;80,90' or ['75', 'sm_90'] -> ('75', '80', '90'); 'native' and 'all' are refused
    because the bundle must say exactly what it carries."""
    items = value.replace(";", ",").split(",") if isinstance(value, str) else [str(v) for v in value]
    archs = []
    for item in (i.strip() for i in items):
        if not item:
            continue
        number = item.removeprefix("sm_").removeprefix("compute_")
        if not number.isdigit():
            raise ConfigError(f"invalid CUDA architecture {item!r}", where=where,
                              hint="give compute capabilities such as 75,80,90 (or sm_90)")
        archs.append(number)
    if not archs:
        raise ConfigError("empty CUDA architecture list", where=where,
                          hint="give at least one, e.g. --cuda-arch 90, or use --no-cuda")
    return tuple(dict.fromkeys(archs))


def _convert(key: str, value: Any, where: str, root: Path) -> Any:
    name = _KEYS[key]
    if name in PATH_FIELDS:
        if not isinstance(value, (str, os.PathLike)):
            raise ConfigError(f"{key} must be a path string", where=where)
        path = Path(value).expanduser()
        return path if path.is_absolute() else root / path
    if name == "cuda_arch":
        return parse_arch_list(value, where)
    if name == "no_cuda":
        if isinstance(value, str):
            if value.lower() not in ("1", "0", "true", "false", "yes", "no", ""):
                raise ConfigError(f"{key} must be true or false, not {value!r}", where=where)
            return value.lower() in ("1", "true", "yes")
        if not isinstance(value, bool):
            raise ConfigError(f"{key} must be true or false", where=where)
        return value
    if name == "jobs":
        try:
            jobs = int(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{key} must be a positive integer, not {value!r}", where=where) from None
        if jobs < 1:
            raise ConfigError(f"{key} must be a positive integer, not {value!r}", where=where)
        return jobs
    if not isinstance(value, str):
        raise ConfigError(f"{key} must be a string", where=where)
    if name == "compiler_cache" and value not in COMPILER_CACHES:
        raise ConfigError(f"{key} must be one of {', '.join(COMPILER_CACHES)}, not {value!r}", where=where,
                          hint="sccache's own settings (SCCACHE_REDIS_ENDPOINT, SCCACHE_BUCKET, SCCACHE_DIR, ...) "
                               "choose where it stores")
    if name == "linker" and value not in LINKERS:
        raise ConfigError(f"{key} must be one of {', '.join(LINKERS)}, not {value!r}", where=where,
                          hint="auto picks lld when it is installed (apt-get install lld)")
    if name == "cxx" and not value.strip():
        raise ConfigError(f"{key} must name a C++ compiler (g++, clang++ or a path)", where=where)
    return value


def _unknown_key(key: str, where: str) -> ConfigError:
    close = difflib.get_close_matches(key, list(_KEYS), n=1)
    hint = f"did you mean {close[0]!r}?" if close else f"known keys: {', '.join(sorted(_KEYS))}"
    return ConfigError(f"unknown setting {key!r}", where=where, hint=hint)


def read_pyproject(root: Path) -> dict[str, Any]:
    path = root / "pyproject.toml"
    if not path.is_file():
        return {}
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"pyproject.toml is not valid TOML: {exc}", where=path) from None
    table = data.get("tool", {}).get("trtis-build", {})
    if not isinstance(table, dict):
        raise ConfigError("[tool.trtis-build] must be a table", where=path)
    return table


def resolve_options(*, root: Path, env: Mapping[str, str], cli: Mapping[str, Any]) -> Options:
    """Merge the layers. `cli` holds only what the user gave (None values are ignored)."""
    root = root.resolve()
    values: dict[str, Any] = {"build_dir": root / "build"}
    origin: dict[str, str] = {}
    pyproject = root / "pyproject.toml"
    for key, value in read_pyproject(root).items():
        where = f"{pyproject} [tool.trtis-build] {key}"
        if key not in _KEYS:
            raise _unknown_key(key, where)
        values[_KEYS[key]] = _convert(key, value, where, root)
        origin[_KEYS[key]] = "pyproject.toml"
    for env_name, value in env.items():
        if not env_name.startswith("TRTIS_BUILD_") or env_name in ENV_ONLY:
            continue
        key = env_name.removeprefix("TRTIS_BUILD_").lower().replace("_", "-")
        if key not in _KEYS:
            raise _unknown_key(key, f"environment variable {env_name}")
        values[_KEYS[key]] = _convert(key, value, f"environment variable {env_name}", root)
        origin[_KEYS[key]] = env_name
    if "TENSORRT_ROOT" in env and "tensorrt_root" not in values:
        values["tensorrt_root"] = Path(env["TENSORRT_ROOT"])
        origin["tensorrt_root"] = "TENSORRT_ROOT"
    known = {f.name for f in fields(Options)}
    for name, value in cli.items():
        if value is None or name not in known:
            continue
        if name == "cuda_arch":
            value = parse_arch_list(value, "--cuda-arch")
        elif name in PATH_FIELDS:
            value = Path(value).resolve()
        elif name == "jobs":  # the same rules as the file and environment layers
            value = _convert("jobs", value, "-j/--jobs", root)
        elif name in ("compiler_cache", "linker", "cxx"):
            flag = name.replace("_", "-")
            value = _convert(flag, value, f"--{flag}", root)
        values[name] = value
        origin[name] = "command line"
    values.setdefault("bundle_dir", values["build_dir"] / "bundle")
    return Options(root=root, sources=origin, **values)
