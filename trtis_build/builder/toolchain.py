"""Find the tools a build needs: C++ compiler, CMake, Ninja, nvcc, and each framework
(frameworks/<name>: locate, detect).

Detection runs tools and imports frameworks in subprocesses, so the result is cached in the
user cache directory under a fingerprint of cheap facts (paths, file sizes and mtimes,
relevant environment). A no-op rebuild reads the cache and imports nothing.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import sys
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Mapping

from .. import frameworks
from ..core import process
from ..core.errors import ToolchainError
from ..core.files import user_cache_dir, write_text_atomic

CACHE_SCHEMA = 4
# CMake needs 3.24 for CUDA_ARCHITECTURES with -real/-virtual suffixes and CUDA 13.
MIN_CMAKE = (3, 24)
ENV_KEYS = ("CXX", "CUDACXX", "CUDA_HOME", "CUDA_PATH", "PATH")  # and each framework's env_keys
# Option `linker` (core/options.py LINKERS): -fuse-ld=<name> makes the compiler run ld.<name>.
# `auto` takes lld where it is installed: it links a TensorFlow adapter 3-4x faster than GNU ld
# (0.06 s against 0.23 s here), and links are on a cold build's critical path after each compile.
AUTO_LINKER = "lld"
# TRTIS_BUILD_CACHE_DIR / XDG_CACHE_HOME choose where the cache lives (default ~/.cache/trtis-build).


@dataclass(frozen=True)
class Tool:
    path: str
    version: str


@dataclass(frozen=True)
class CudaInfo:
    nvcc: str
    version: str
    root: str                 # toolkit root: include/ and lib64/ (static cudart) live here
    include_dir: str
    cudart_static: str
    sass_archs: tuple[str, ...]  # what this nvcc can generate, e.g. ('75', '80', ..., '121')


@dataclass(frozen=True)
class Toolchain:
    python: str
    cxx: Tool
    cmake: Tool | None
    ninja: Tool | None
    cuda: CudaInfo | None
    cxx_family: str = "gcc"      # gcc or clang: what the precompiled header's cost depends on
    linker: Tool | None = None   # None: the compiler's own linker; else -fuse-ld=linker_name
    # framework name -> what its detect() found (None: not installed)
    frameworks: Mapping[str, Any] = field(default_factory=dict)
    problems: tuple[str, ...] = ()   # what is missing, each with the command that fixes it
    fingerprint: str = ""

    def framework(self, name: str) -> Any:
        return self.frameworks.get(name)

    @property
    def linker_name(self) -> str | None:
        """The -fuse-ld= value (lld, mold, gold), or None for the compiler's own linker."""
        if self.linker is None:
            return None
        return _linker_name(self.linker.path)

    def default_cuda_archs(self) -> tuple[str, ...]:
        """One SASS target per major architecture from sm_75 up (binary compatibility covers
        the minor versions above each), e.g. 75, 80, 90, 100, 110, 120."""
        if not self.cuda:
            return ()
        lowest: dict[int, int] = {}
        for arch in self.cuda.sass_archs:
            number = int(arch)
            if number >= 75:
                major, minor = divmod(number, 10)
                lowest[major] = min(minor, lowest.get(major, minor))
        return tuple(str(major * 10 + minor) for major, minor in sorted(lowest.items()))

    def to_manifest(self) -> dict[str, Any]:
        # Versions, no paths: the same toolchain installed elsewhere gives the same manifest.
        return {
            "cxx": {"name": os.path.basename(self.cxx.path), "version": self.cxx.version},
            "linker": {"name": self.linker_name, "version": self.linker.version} if self.linker else None,
            "cmake": {"version": self.cmake.version} if self.cmake else None,
            "cuda": {"version": self.cuda.version} if self.cuda else None,
            **{seam.name: (seam.manifest_toolchain(self.framework(seam.name))
                           if self.framework(seam.name) is not None else None)
               for seam in frameworks.all()},
        }


# --- fingerprint: cheap facts only -------------------------------------------------------

def _stat_key(path: str | os.PathLike | None) -> str:
    if not path:
        return "-"
    try:
        st = os.stat(path)
    except OSError:
        return f"{path}:missing"
    return f"{os.path.realpath(path)}:{st.st_size}:{st.st_mtime_ns}"


def _which(name: str, env: Mapping[str, str]) -> str | None:
    return shutil.which(name, path=env.get("PATH", os.defpath))


def _locate(env: Mapping[str, str], python: str, options: Any) -> dict[str, Any]:
    return {
        "cxx": _find_cxx(env, options),
        "cmake": _which("cmake", env),
        "ninja": _which("ninja", env),
        "nvcc": _find_nvcc(env),
        "linker": _find_linker(env, options),
        "linker_choice": _linker_choice(options),  # auto falls back where a named linker fails
        "frameworks": {seam.name: seam.locate(env, python, options) for seam in frameworks.all()},
    }


def _find_cxx(env: Mapping[str, str], options: Any) -> str | None:
    """Option `cxx`, then $CXX (a name on PATH or a path; named but not found is an error),
    then g++, then c++."""
    chosen = getattr(options, "cxx", None)
    where = "option cxx" if chosen else "environment variable CXX"
    chosen = chosen or env.get("CXX")
    if not chosen:
        return _which("g++", env) or _which("c++", env)
    found = _which(chosen, env) if os.sep not in chosen else (chosen if os.access(chosen, os.X_OK) else None)
    if found is None:
        raise ToolchainError(f"C++ compiler {chosen!r} not found", where=where,
                             hint="install it (apt-get install g++ or clang), or name one on PATH")
    return os.path.abspath(found)


def _linker_choice(options: Any) -> str:
    return getattr(options, "linker", "auto") or "auto"


def _linker_name(path: str) -> str:
    return os.path.basename(path).removeprefix("ld.")


def _find_linker(env: Mapping[str, str], options: Any) -> str | None:
    choice = _linker_choice(options)
    if choice == "system":
        return None
    found = _which(f"ld.{AUTO_LINKER if choice == 'auto' else choice}", env)
    if found is None and choice != "auto":
        raise ToolchainError(f"linker {choice} not found (ld.{choice} is not on PATH)", where="option linker",
                             hint=f"apt-get install {'binutils' if choice == 'gold' else choice}, or set linker = \"auto\"")
    return found


def _find_nvcc(env: Mapping[str, str]) -> str | None:
    """CUDACXX, then CUDA_HOME/CUDA_PATH (explicit: no fallback when set), then PATH, then
    /usr/local/cuda."""
    if env.get("CUDACXX"):
        return env["CUDACXX"] if Path(env["CUDACXX"]).is_file() else None
    for var in ("CUDA_HOME", "CUDA_PATH"):
        if env.get(var):
            nvcc = Path(env[var], "bin", "nvcc")
            return str(nvcc) if nvcc.is_file() else None
    found = _which("nvcc", env)
    if found:
        return found
    default = Path("/usr/local/cuda/bin/nvcc")
    return str(default) if default.is_file() else None


def fingerprint(located: Mapping[str, Any], python: str, env: Mapping[str, str]) -> str:
    parts = [f"schema={CACHE_SCHEMA}", f"python={_stat_key(python)}", f"detector={_stat_key(__file__)}"]
    for key in ("cxx", "cmake", "ninja", "nvcc", "linker"):
        parts.append(f"{key}={_stat_key(located[key])}")
    parts.append(f"linker.choice={located['linker_choice']}")
    for seam in frameworks.all():
        # The framework's own module is part of its detector.
        parts.append(f"{seam.name}.detector={_stat_key(Path(sys.modules[type(seam).__module__].__file__))}")
        for key, path in sorted(located["frameworks"][seam.name].items()):
            parts.append(f"{seam.name}.{key}={_stat_key(path)}")
    keys = [*ENV_KEYS, *(key for seam in frameworks.all() for key in seam.env_keys)]
    parts += [f"env.{k}={env.get(k, '')}" for k in keys]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]


# --- detection (slow path) -----------------------------------------------------------------

def _version_line(path: str, args: list[str], pattern: str) -> str:
    out = process.capture([path, *args], stage="toolchain")
    match = re.search(pattern, out)
    return match.group(1) if match else out.strip().splitlines()[0] if out.strip() else "unknown"


def _detect_cuda(nvcc: str) -> CudaInfo:
    version = _version_line(nvcc, ["--version"], r"release (\d+\.\d+)")
    codes = process.capture([nvcc, "--list-gpu-code"], stage="toolchain").split()
    sass = tuple(sorted({c.removeprefix("sm_") for c in codes
                         if re.fullmatch(r"sm_\d+", c)}, key=int))
    # nvcc may be a wrapper script (/usr/local/bin/nvcc -> /usr/local/cuda-13.0/bin/nvcc):
    # ask the toolkit where it lives instead of trusting the path.
    root = Path(nvcc).resolve().parent.parent
    if not (root / "include" / "cuda_runtime.h").is_file():
        root = Path("/usr/local/cuda").resolve()
    lib = next((p for p in (root / "lib64" / "libcudart_static.a", root / "lib" / "libcudart_static.a",
                            root / "targets/x86_64-linux/lib/libcudart_static.a") if p.is_file()), None)
    if lib is None:
        raise ToolchainError(f"nvcc {nvcc} found, but no libcudart_static.a under {root}",
                             hint="install the CUDA runtime development files, or build with --no-cuda")
    return CudaInfo(nvcc=nvcc, version=version, root=str(root), include_dir=str(root / "include"),
                    cudart_static=str(lib), sass_archs=sass)


def detect(*, python: str, env: Mapping[str, str], options: Any = None,
           located: Mapping[str, Any] | None = None, fp: str = "") -> Toolchain:
    """Run every detection (slow: nvcc, and framework imports in subprocesses)."""
    located = located or _locate(env, python, options)
    problems = []
    if not located["cxx"]:
        raise ToolchainError("no C++ compiler found (g++ or $CXX)",
                             hint="apt-get install g++ (or set CXX)")
    cxx, cxx_family = detect_cxx(located["cxx"])
    linker = _detect_linker(located["cxx"], located["linker"], options, problems)
    cmake = ninja = None
    if located["cmake"]:
        cmake = Tool(located["cmake"], _version_line(located["cmake"], ["--version"], r"version (\S+)"))
    else:
        problems.append("CMake not found: apt-get install cmake (or pip install cmake)")
    if located["ninja"]:
        ninja = Tool(located["ninja"], _version_line(located["ninja"], ["--version"], r"(\S+)"))
    else:
        problems.append("Ninja not found: apt-get install ninja-build (or pip install ninja)")
    cuda = _detect_cuda(located["nvcc"]) if located["nvcc"] else None
    if cuda is None:
        problems.append("nvcc not found: CUDA kernels are skipped (set CUDACXX or CUDA_HOME, "
                        "or install the CUDA toolkit); CPU kernels still build")
    found = {}
    for seam in frameworks.all():
        found[seam.name] = seam.detect(located["frameworks"][seam.name], python, options)
        if found[seam.name] is None:
            problems.append(seam.missing())
    return Toolchain(python=python, cxx=cxx, cmake=cmake, ninja=ninja, cuda=cuda, cxx_family=cxx_family,
                     linker=linker, frameworks=found, problems=tuple(problems), fingerprint=fp)


def detect_cxx(path: str) -> tuple[Tool, str]:
    """The compiler and its family (gcc or clang: what a precompiled header costs differs)."""
    text = process.capture([path, "--version"], stage="toolchain")
    version = re.search(r"(\d+\.\d+\.\d+)", text)
    return Tool(path, version.group(1) if version else "unknown"), ("clang" if "clang" in text.lower() else "gcc")


def _detect_linker(cxx: str, path: str | None, options: Any, problems: list[str]) -> Tool | None:
    """The linker, once the compiler has linked a shared library with it (an old GCC does not
    know -fuse-ld=lld). `auto` falls back to the compiler's own linker; a named one must work."""
    if path is None:
        return None
    name = _linker_name(path)
    with tempfile.TemporaryDirectory(prefix="trtis-linker-") as tmp:
        source = Path(tmp, "probe.cc")
        source.write_text("int trtis_linker_probe() { return 0; }\n")
        result = process.run([cxx, f"-fuse-ld={name}", "-shared", "-fPIC", str(source), "-o", str(Path(tmp, "probe.so"))],
                             stage="toolchain", check=False, timeout=60)
    if result.returncode != 0:
        if _linker_choice(options) == "auto":
            problems.append(f"{path} found, but {cxx} cannot link with -fuse-ld={name}: using its own linker")
            return None
        raise ToolchainError(f"{cxx} cannot link with -fuse-ld={name}", where="option linker",
                             hint=f"{result.output.strip()[-300:]}\nset linker = \"system\" to use the compiler's own")
    return Tool(path, _version_line(path, ["--version"], r"(\d+\.\d+\.\d+)"))


# --- cache -----------------------------------------------------------------------------------

def _to_json(tc: Toolchain) -> dict[str, Any]:
    data = asdict(tc)
    data["frameworks"] = {name: (frameworks.get(name).info_to_json(info) if info is not None else None)
                          for name, info in tc.frameworks.items()}
    return data


def _from_json(data: dict[str, Any]) -> Toolchain:
    def tool(d):
        return Tool(**d) if d else None

    found = {seam.name: (seam.info_from_json(data["frameworks"][seam.name])
                         if data["frameworks"][seam.name] is not None else None)
             for seam in frameworks.all()}
    return Toolchain(
        python=data["python"], cxx=Tool(**data["cxx"]), cmake=tool(data["cmake"]),
        ninja=tool(data["ninja"]), cxx_family=data["cxx_family"], linker=tool(data["linker"]),
        cuda=CudaInfo(**{**data["cuda"], "sass_archs": tuple(data["cuda"]["sass_archs"])}) if data["cuda"] else None,
        frameworks=found, problems=tuple(data["problems"]), fingerprint=data["fingerprint"])


def load(*, cache_dir: Path | None = None, python: str | None = None,
         env: Mapping[str, str] | None = None, options: Any = None,
         refresh: bool = False) -> Toolchain:
    """The toolchain, from the cache when its fingerprint still matches. options: the
    resolved Options, read by the frameworks (e.g. tensorrt_root)."""
    env = os.environ if env is None else env
    python = python or sys.executable
    located = _locate(env, python, options)
    fp = fingerprint(located, python, env)
    cache_dir = cache_dir or user_cache_dir(env)
    cache = cache_dir / f"toolchain-{fp}.json"
    if not refresh and cache.is_file():
        try:
            data = json.loads(cache.read_text())
            if data.get("fingerprint") == fp:
                return _from_json(data)
        except (ValueError, KeyError, TypeError):
            pass  # unreadable cache: detect again
    toolchain = detect(python=python, env=env, options=options, located=located, fp=fp)
    cache_dir.mkdir(parents=True, exist_ok=True)
    write_text_atomic(cache, json.dumps(_to_json(toolchain), indent=1))
    return toolchain


def require_build_tools(tc: Toolchain) -> None:
    if tc.cmake is None or tc.ninja is None:
        missing = [name for name, tool in (("cmake", tc.cmake), ("ninja", tc.ninja)) if tool is None]
        raise ToolchainError(f"{' and '.join(missing)} not found on PATH",
                             hint="apt-get install cmake ninja-build, or pip install cmake ninja")
    version = tuple(int(x) for x in re.findall(r"\d+", tc.cmake.version)[:2])
    if version < MIN_CMAKE:
        raise ToolchainError(f"CMake {tc.cmake.version} is too old (need {MIN_CMAKE[0]}.{MIN_CMAKE[1]}+)",
                             where=tc.cmake.path, hint="pip install 'cmake>=3.24'")
