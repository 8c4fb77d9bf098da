"""Find the tools a build needs: C++ compiler, CMake, Ninja, nvcc, TensorFlow, TensorRT.

Detection runs tools and imports TensorFlow in a subprocess, so the result is cached in
<build>/toolchain.json under a fingerprint of cheap facts (paths, file sizes and mtimes,
relevant environment). A no-op rebuild reads the cache and imports nothing.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import re
import shutil
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Mapping

from . import process
from .errors import ToolchainError

CACHE_SCHEMA = 2
PROBES = Path(__file__).parent / "probes"
JSON_MARK = "@@TRTIS-JSON@@"
# CMake needs 3.24 for CUDA_ARCHITECTURES with -real/-virtual suffixes and CUDA 13.
MIN_CMAKE = (3, 24)
ENV_KEYS = ("CXX", "CUDACXX", "CUDA_HOME", "CUDA_PATH", "TENSORRT_ROOT", "PATH")
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
class TensorFlowInfo:
    python: str
    version: str
    include_dir: str
    lib_dir: str
    framework_lib: str        # e.g. libtensorflow_framework.so.2
    cxx11_abi: int
    compile_flags: tuple[str, ...]
    builtin_ops: frozenset[str] = field(repr=False, default=frozenset())


@dataclass(frozen=True)
class TensorRTInfo:
    include_dir: str
    version: str
    source: str


@dataclass(frozen=True)
class Toolchain:
    python: str
    cxx: Tool
    cmake: Tool | None
    ninja: Tool | None
    cuda: CudaInfo | None
    tensorflow: TensorFlowInfo | None
    tensorrt: TensorRTInfo | None
    problems: tuple[str, ...] = ()   # what is missing, each with the command that fixes it
    fingerprint: str = ""

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
        return {
            "fingerprint": self.fingerprint,
            "python": self.python,
            "cxx": asdict(self.cxx),
            "cmake": asdict(self.cmake) if self.cmake else None,
            "cuda": ({"version": self.cuda.version, "nvcc": self.cuda.nvcc}
                     if self.cuda else None),
            "tensorflow": ({"version": self.tensorflow.version,
                            "cxx11_abi": self.tensorflow.cxx11_abi,
                            "framework_lib": self.tensorflow.framework_lib}
                           if self.tensorflow else None),
            "tensorrt": ({"version": self.tensorrt.version, "source": self.tensorrt.source}
                         if self.tensorrt else None),
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


def _find_tensorflow_dir(python: str) -> str | None:
    """The installed tensorflow package directory, found without importing it."""
    if os.path.realpath(python) == os.path.realpath(sys.executable):
        spec = importlib.util.find_spec("tensorflow")
        return str(Path(spec.origin).parent) if spec and spec.origin else None
    out = process.capture([python, "-c", "import importlib.util as u; s = u.find_spec('tensorflow');"
                           "print(s.origin if s and s.origin else '')"], stage="toolchain", check=False)
    origin = out.strip().splitlines()[-1] if out.strip() else ""
    return str(Path(origin).parent) if origin.endswith("__init__.py") else None


def _which(name: str, env: Mapping[str, str]) -> str | None:
    return shutil.which(name, path=env.get("PATH", os.defpath))


def _locate(env: Mapping[str, str], python: str, tensorrt_root: Path | None) -> dict[str, str | None]:
    return {
        "cxx": env.get("CXX") or _which("g++", env) or _which("c++", env),
        "cmake": _which("cmake", env),
        "ninja": _which("ninja", env),
        "nvcc": _find_nvcc(env),
        "tensorflow_dir": _find_tensorflow_dir(python),
        "tensorrt_root": str(tensorrt_root) if tensorrt_root else None,
    }


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


def fingerprint(located: Mapping[str, str | None], python: str, env: Mapping[str, str]) -> str:
    parts = [f"schema={CACHE_SCHEMA}", f"python={_stat_key(python)}",
             f"detector={_stat_key(__file__)}", f"trt_support={_stat_key(Path(__file__).with_name('tensorrt.py'))}"]
    for key, path in sorted(located.items()):
        parts.append(f"{key}={_stat_key(path)}")
    tf_dir = located.get("tensorflow_dir")
    if tf_dir:
        parts.append(f"tf_init={_stat_key(Path(tf_dir, '__init__.py'))}")
    trt_lens = importlib.util.find_spec("kernel_lens") if not located.get("tensorrt_root") else None
    parts.append(f"kernel_lens={trt_lens.origin if trt_lens else '-'}")
    parts += [f"env.{k}={env.get(k, '')}" for k in ENV_KEYS]
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


def _run_probe(python: str, script: str, *args: str, stage: str) -> Any:
    out = process.capture([python, str(PROBES / script), *args], stage=stage,
                          extra_env={"TF_CPP_MIN_LOG_LEVEL": "3"})
    if JSON_MARK not in out:
        raise ToolchainError(f"{script} printed no result", hint="run `trtis-build doctor`")
    return json.loads(out.rsplit(JSON_MARK, 1)[1])


def _detect_tensorflow(python: str, tf_dir: str) -> TensorFlowInfo:
    data = _run_probe(python, "tf_probe.py", "info", stage="toolchain")
    link_flags = data["link_flags"]
    framework_lib = next((f.removeprefix("-l:") for f in link_flags if f.startswith("-l:")),
                         "libtensorflow_framework.so.2")
    return TensorFlowInfo(python=python, version=data["version"], include_dir=data["include_dir"],
                          lib_dir=data["lib_dir"], framework_lib=framework_lib,
                          cxx11_abi=data["cxx11_abi"], compile_flags=tuple(data["compile_flags"]),
                          builtin_ops=frozenset(data["builtin_ops"]))


def _detect_tensorrt(tensorrt_root: str | None) -> TensorRTInfo | None:
    try:
        from . import tensorrt as trt_support
    except ImportError:  # TensorRT support module not present in this build of the tool
        return None
    found = trt_support.find_tensorrt(Path(tensorrt_root) if tensorrt_root else None)
    if found is None:
        return None
    return TensorRTInfo(include_dir=str(found.include_dir), version=found.version, source=found.source)


def detect(*, python: str, env: Mapping[str, str], tensorrt_root: Path | None = None,
           located: Mapping[str, str | None] | None = None, fp: str = "") -> Toolchain:
    """Run every detection (slow: nvcc, and a TensorFlow import in a subprocess)."""
    located = located or _locate(env, python, tensorrt_root)
    problems = []
    if not located["cxx"]:
        raise ToolchainError("no C++ compiler found (g++ or $CXX)",
                             hint="apt-get install g++ (or set CXX)")
    cxx = Tool(located["cxx"], _version_line(located["cxx"], ["--version"], r"(\d+\.\d+\.\d+)"))
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
    tensorflow = _detect_tensorflow(python, located["tensorflow_dir"]) if located["tensorflow_dir"] else None
    if tensorflow is None:
        problems.append(f"TensorFlow not found for {python}: pip install 'trtis-build[tf]' "
                        "(tensorflow-cpu==2.21.0); TensorFlow ops are skipped")
    tensorrt = _detect_tensorrt(located["tensorrt_root"])
    if tensorrt is None:
        problems.append("TensorRT headers not found: pass --tensorrt-root DIR or set TENSORRT_ROOT "
                        "(for CI: pip install --no-deps kernel-lens==2.0.1); TensorRT plugins are skipped")
    return Toolchain(python=python, cxx=cxx, cmake=cmake, ninja=ninja, cuda=cuda,
                     tensorflow=tensorflow, tensorrt=tensorrt, problems=tuple(problems),
                     fingerprint=fp)


# --- cache -----------------------------------------------------------------------------------

def _to_json(tc: Toolchain) -> dict[str, Any]:
    data = asdict(tc)
    if tc.tensorflow:
        data["tensorflow"]["builtin_ops"] = sorted(tc.tensorflow.builtin_ops)
    return data


def _from_json(data: dict[str, Any]) -> Toolchain:
    def tool(d):
        return Tool(**d) if d else None

    tf = data.get("tensorflow")
    return Toolchain(
        python=data["python"], cxx=Tool(**data["cxx"]), cmake=tool(data["cmake"]),
        ninja=tool(data["ninja"]),
        cuda=CudaInfo(**{**data["cuda"], "sass_archs": tuple(data["cuda"]["sass_archs"])}) if data["cuda"] else None,
        tensorflow=TensorFlowInfo(**{**tf, "compile_flags": tuple(tf["compile_flags"]),
                                     "builtin_ops": frozenset(tf["builtin_ops"])}) if tf else None,
        tensorrt=TensorRTInfo(**data["tensorrt"]) if data.get("tensorrt") else None,
        problems=tuple(data["problems"]), fingerprint=data["fingerprint"])


def user_cache_dir(env: Mapping[str, str]) -> Path:
    """Shared by every project of this user: the fingerprint says when an entry is stale."""
    if env.get("TRTIS_BUILD_CACHE_DIR"):
        return Path(env["TRTIS_BUILD_CACHE_DIR"])
    return Path(env.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "trtis-build"


def load(*, cache_dir: Path | None = None, python: str | None = None,
         env: Mapping[str, str] | None = None, tensorrt_root: Path | None = None,
         refresh: bool = False) -> Toolchain:
    """The toolchain, from the cache when its fingerprint still matches."""
    env = os.environ if env is None else env
    python = python or sys.executable
    located = _locate(env, python, tensorrt_root)
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
    toolchain = detect(python=python, env=env, tensorrt_root=tensorrt_root, located=located, fp=fp)
    cache_dir.mkdir(parents=True, exist_ok=True)
    tmp = cache.with_suffix(".tmp")
    tmp.write_text(json.dumps(_to_json(toolchain), indent=1))
    os.replace(tmp, cache)
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
