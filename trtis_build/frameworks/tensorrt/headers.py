"""Find the TensorRT headers to build plugins against, and read their version.

Nothing here imports TensorRT or kernel_lens (kernel_lens imports torch): headers are found
from files and package metadata."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import platform
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

from ...core.errors import ToolchainError

MIN_MAJOR = 10  # IPluginV3 and IPluginCreatorV3One arrived in TensorRT 10.0
# What a plugin adapter includes, directly or through NvInferRuntime.h.
REQUIRED_HEADERS = ("NvInferVersion.h", "NvInferRuntime.h", "NvInferPluginBase.h")
NOT_FOUND_HINT = ("pass --tensorrt-root DIR or set TENSORRT_ROOT to a TensorRT install (the directory "
                  "holding include/NvInfer.h: a tar package, or /usr for the Debian packages); for CI "
                  "without TensorRT, `pip install --no-deps kernel-lens==2.0.1` provides TensorRT 10.14 "
                  "headers (no libraries)")

@dataclass(frozen=True)
class TensorRTHeaders:
    include_dir: Path       # holds NvInferRuntime.h
    version: str            # "10.14.1"
    source: str             # how it was found: "--tensorrt-root", "TENSORRT_ROOT", "system", "kernel-lens 2.0.1"
    build: int = 0          # NV_TENSORRT_BUILD, 0 when the header has none

    @property
    def major(self) -> int:
        return int(self.version.split(".")[0])


_DEFINE = re.compile(r"^\s*#\s*define\s+([A-Za-z_]\w*)[ \t]+(.*?)\s*$", re.MULTILINE)


def _defines(text: str) -> dict[str, str]:
    text = re.sub(r"/\*.*?\*/", " ", text, flags=re.DOTALL)
    return {name: re.sub(r"//.*", "", value).strip() for name, value in _DEFINE.findall(text)}


def _resolve(defines: Mapping[str, str], name: str) -> int | None:
    """A macro's integer value, following macro-to-macro definitions (TensorRT >= 10.x writes
    `#define NV_TENSORRT_MAJOR TRT_MAJOR_ENTERPRISE`; older releases give the number)."""
    seen = set()
    value = defines.get(name)
    while value is not None and name not in seen:
        seen.add(name)
        value = value.strip().strip("()").strip()
        number = re.fullmatch(r"(\d+)[uUlL]*", value)
        if number:
            return int(number.group(1))
        if not re.fullmatch(r"[A-Za-z_]\w*", value):
            return None
        name, value = value, defines.get(value)
    return None


def parse_version(text: str) -> tuple[int, int, int, int]:
    """(major, minor, patch, build) from NvInferVersion.h's text; ValueError if absent."""
    defines = _defines(text)
    parts = [_resolve(defines, f"NV_TENSORRT_{part}") for part in ("MAJOR", "MINOR", "PATCH", "BUILD")]
    if any(part is None for part in parts[:3]):
        raise ValueError("no NV_TENSORRT_MAJOR/MINOR/PATCH with an integer value")
    return parts[0], parts[1], parts[2], parts[3] or 0  # type: ignore[return-value]


def _multiarch() -> str:
    machine = platform.machine().lower()
    return {"amd64": "x86_64", "arm64": "aarch64"}.get(machine, machine) + "-linux-gnu"


def _include_dirs_of(root: Path) -> list[Path]:
    """Where the headers sit under a root a user names: a tar package (root/include), the
    Debian layout (/usr -> /usr/include/<multiarch>), or the include directory itself."""
    return [root / "include", root / "include" / _multiarch(), root]


def standard_locations() -> list[Path]:
    """Install locations of TensorRT's Debian and tar packages, most specific first."""
    arch = _multiarch()
    found = [Path("/usr/include") / arch, Path("/usr/include"), Path("/usr/local/tensorrt/include"),
             Path("/opt/tensorrt/include")]
    for base in (Path("/usr/local"), Path("/opt")):
        # Unpacked tar packages: TensorRT-10.14.1.48/include, newest first.
        found += sorted(base.glob("TensorRT-*/include"), reverse=True)
    return found


def _kernel_lens_include() -> tuple[Path, str] | None:
    """kernel_lens's bundled TensorRT headers, located without importing the package (its
    __init__ imports torch): find_spec of a top-level name finds, it does not execute."""
    try:
        spec = importlib.util.find_spec("kernel_lens")
    except (ImportError, ValueError):
        spec = None
    locations = list(spec.submodule_search_locations or []) if spec else []
    if not locations:
        try:
            locations = [str(importlib.metadata.distribution("kernel-lens").locate_file("kernel_lens"))]
        except importlib.metadata.PackageNotFoundError:
            return None
    try:
        version = importlib.metadata.version("kernel-lens")
    except importlib.metadata.PackageNotFoundError:
        version = "?"
    for location in locations:
        include = Path(location) / "include" / "tensorrt"
        if (include / "NvInferRuntime.h").is_file():
            return include, f"kernel-lens {version}"
    return None


def headers_at(include_dir: Path, source: str) -> TensorRTHeaders:
    """Validate one include directory; ValueError says what is wrong with it."""
    missing = [name for name in REQUIRED_HEADERS if not (include_dir / name).is_file()]
    if "NvInferVersion.h" in missing:
        raise ValueError(f"no NvInferVersion.h in {include_dir}")
    try:
        major, minor, patch, build = parse_version((include_dir / "NvInferVersion.h").read_text(errors="replace"))
    except (OSError, ValueError) as exc:
        raise ValueError(f"cannot read the version from {include_dir / 'NvInferVersion.h'}: {exc}") from None
    version = f"{major}.{minor}.{patch}"
    if major < MIN_MAJOR:
        raise ValueError(f"TensorRT {version} at {include_dir} is too old: IPluginV3 plugins need "
                         f"TensorRT {MIN_MAJOR}.0 or newer")
    if missing:
        raise ValueError(f"{include_dir} lacks {', '.join(missing)}")
    return TensorRTHeaders(include_dir=include_dir.resolve(), version=version, source=source, build=build)


def _from_root(root: Path, source: str) -> TensorRTHeaders:
    problems = []
    for include in _include_dirs_of(root):
        if (include / "NvInferVersion.h").is_file():
            try:
                return headers_at(include, source)
            except ValueError as exc:
                problems.append(str(exc))
    detail = "; ".join(problems) or f"no NvInferVersion.h in {root}/include or {root}"
    raise ToolchainError(f"{source} points at {root}, which has no usable TensorRT headers: {detail}",
                         where=root, hint=NOT_FOUND_HINT)


def find_tensorrt(root: Path | None = None, *, env: Mapping[str, str] | None = None,
                  locations: Sequence[Path] | None = None,
                  use_kernel_lens: bool = True) -> TensorRTHeaders | None:
    """The TensorRT headers to build plugins against, or None when there are none.

    Order: `root` (--tensorrt-root), $TENSORRT_ROOT, the standard install locations, the
    kernel-lens package. A root the user named that holds no usable headers is an error (a
    ToolchainError), not a reason to silently take another TensorRT.
    """
    env = os.environ if env is None else env
    if root is not None:
        return _from_root(Path(root), "--tensorrt-root")
    if env.get("TENSORRT_ROOT"):
        return _from_root(Path(env["TENSORRT_ROOT"]), "TENSORRT_ROOT")
    for include in standard_locations() if locations is None else locations:
        if (include / "NvInferVersion.h").is_file():
            try:
                return headers_at(include, f"system ({include})")
            except ValueError:
                continue  # an old TensorRT here; a newer one may be further down the list
    if use_kernel_lens:
        found = _kernel_lens_include()
        if found:
            return headers_at(*found)
    return None
