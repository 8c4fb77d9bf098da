"""TensorRT support: find the headers, generate each plugin op's config header, build and run
the C++ plugin check, and probe a real TensorRT plugin registry in a subprocess.

Nothing here imports TensorRT or kernel_lens (kernel_lens imports torch): headers are found
from files and package metadata, and the registry probe runs in its own interpreter because
TensorRT segfaults on some misuse (a library without getCreators, plugins alive at
deregistration) and must never take the driver down with it.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import json
import os
import platform
import re
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Mapping, Sequence

from . import process
from .discover import PluginId
from .errors import CommandError, OpSpecError, ToolchainError

MIN_MAJOR = 10  # IPluginV3 and IPluginCreatorV3One arrived in TensorRT 10.0
# What a plugin adapter includes, directly or through NvInferRuntime.h.
REQUIRED_HEADERS = ("NvInferVersion.h", "NvInferRuntime.h", "NvInferPluginBase.h")
CONFIG_HEADER = "trtis_plugin_config.h"
CHECKS_DIR = Path(__file__).parent / "checks"
CHECK_SOURCES = ("plugin_check.cc", "plugin_check_enqueue.h", "plugin_check_support.h", "plugin_check_json.h")
PROBE_SCRIPT = CHECKS_DIR / "trt_registry_probe.py"
NOT_FOUND_HINT = ("pass --tensorrt-root DIR or set TENSORRT_ROOT to a TensorRT install (the directory "
                  "holding include/NvInfer.h: a tar package, or /usr for the Debian packages); for CI "
                  "without TensorRT, `pip install --no-deps kernel-lens==2.0.1` provides TensorRT 10.14 "
                  "headers (no libraries)")


# --------------------------------------------------------------------------------------------
# Headers and version


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


# --------------------------------------------------------------------------------------------
# The generated per-op header: name, version and namespace of each plugin from op.toml


def _macro_keys(plugins: Sequence[PluginId], where: str) -> list[str]:
    keys = [re.sub(r"[^A-Za-z0-9]", "_", p.name).upper() for p in plugins]
    # One name in several versions: the version joins the key, for those plugins only.
    keys = [f"{key}_V{re.sub(r'[^A-Za-z0-9]', '_', p.version).upper()}" if keys.count(key) > 1 else key
            for key, p in zip(keys, plugins)]
    clashes = sorted({key for key in keys if keys.count(key) > 1})
    if clashes:
        raise OpSpecError(f"plugins whose names differ only in punctuation give one macro name "
                          f"TRTIS_PLUGIN_{clashes[0]}_*", where=where,
                          hint="rename one of them (letters, digits and '_' are kept; '-' and '.' become '_')")
    return keys


def plugin_config_header(op_name: str, plugins: Sequence[PluginId], *, where: str = "op.toml") -> str:
    """Text of trtis_plugin_config.h for one op. Per plugin NAME (upper-cased, punctuation
    -> '_'): TRTIS_PLUGIN_<NAME>_NAME/_VERSION/_NAMESPACE; with exactly one plugin also the
    short TRTIS_PLUGIN_NAME/_VERSION/_NAMESPACE that the templates use."""
    if not plugins:
        raise OpSpecError("a TensorRT op declares no [[plugins]]", where=where)
    q = json.dumps  # a C string literal for these ASCII names
    lines = [f"// Generated by trtis-build from the op.toml of TensorRT op {op_name!r}. Do not edit:",
             "// it is rewritten by every build, and the bundle check compares what getCreators",
             "// returns with these values.",
             "#ifndef TRTIS_PLUGIN_CONFIG_H_", "#define TRTIS_PLUGIN_CONFIG_H_", "",
             f"#define TRTIS_PLUGIN_OP {q(op_name)}", f"#define TRTIS_PLUGIN_COUNT {len(plugins)}", ""]
    for key, plugin in zip(_macro_keys(plugins, where), plugins):
        lines += [f"#define TRTIS_PLUGIN_{key}_NAME {q(plugin.name)}",
                  f"#define TRTIS_PLUGIN_{key}_VERSION {q(plugin.version)}",
                  f"#define TRTIS_PLUGIN_{key}_NAMESPACE {q(plugin.namespace)}", ""]
    if len(plugins) == 1:
        only = plugins[0]
        lines += ["// The op declares one plugin: short names for it.",
                  f"#define TRTIS_PLUGIN_NAME {q(only.name)}", f"#define TRTIS_PLUGIN_VERSION {q(only.version)}",
                  f"#define TRTIS_PLUGIN_NAMESPACE {q(only.namespace)}", ""]
    lines.append("#endif  // TRTIS_PLUGIN_CONFIG_H_")
    return "\n".join(lines) + "\n"


def write_plugin_config(directory: Path, op_name: str, plugins: Sequence[PluginId], *,
                        where: str = "op.toml") -> Path:
    """Write directory/trtis_plugin_config.h, leaving it untouched (mtime too) when its text is
    unchanged, so a no-op rebuild recompiles nothing."""
    path = Path(directory) / CONFIG_HEADER
    text = plugin_config_header(op_name, plugins, where=where)
    if not path.is_file() or path.read_text() != text:
        path.parent.mkdir(parents=True, exist_ok=True)
        staging = path.with_name(path.name + ".tmp")
        staging.write_text(text)
        os.replace(staging, path)
    return path


# --------------------------------------------------------------------------------------------
# The C++ plugin check (trtis_build/checks/plugin_check.cc)


def check_program_command(cxx: str, headers: TensorRTHeaders, cuda_include: Path, output: Path) -> list[str]:
    """g++ command for plugin_check: TensorRT and CUDA headers only (the TensorRT headers
    include cuda_runtime_api.h), no libnvinfer and no libcudart (opened with dlopen)."""
    return [cxx, "-std=c++17", "-O1", "-Wall", "-isystem", str(headers.include_dir), "-isystem",
            str(cuda_include), str(CHECKS_DIR / "plugin_check.cc"), "-ldl", "-o", str(output)]


def build_check_program(*, cxx: str, headers: TensorRTHeaders, cuda_include: Path, out_dir: Path,
                        log_path: Path | None = None) -> Path:
    """Build plugin_check into out_dir once per (sources, command); about 2 s with g++."""
    if not (Path(cuda_include) / "cuda_runtime_api.h").is_file():
        raise ToolchainError(f"no cuda_runtime_api.h in {cuda_include}: the TensorRT headers include it",
                             hint="install the CUDA toolkit headers (nvcc's include directory) or set CUDA_HOME")
    out_dir.mkdir(parents=True, exist_ok=True)
    program = out_dir / "plugin_check"
    stamp = out_dir / "plugin_check.stamp"
    digest = hashlib.sha256(" ".join(check_program_command(cxx, headers, cuda_include, program)).encode())
    for name in CHECK_SOURCES:
        digest.update((CHECKS_DIR / name).read_bytes())
    if program.is_file() and stamp.is_file() and stamp.read_text() == digest.hexdigest():
        return program
    staging = out_dir / f".plugin_check.{os.getpid()}"
    process.run(check_program_command(cxx, headers, cuda_include, staging), stage="ops check",
                log_path=log_path, failure_message="building the TensorRT plugin check program failed",
                hint="run `trtis-build doctor`; the TensorRT headers must be 10.0 or newer")
    os.replace(staging, program)
    stamp.write_text(digest.hexdigest())
    return program


@dataclass(frozen=True)
class PluginCheckResult:
    ok: bool
    failures: tuple[str, ...]
    warnings: tuple[str, ...]
    report: dict = field(repr=False, compare=False)

    @property
    def plugins(self) -> list[PluginId]:
        return [PluginId(p["name"], p["version"], p["namespace"]) for lib in self.report.get("libraries", [])
                for p in lib.get("plugins", []) if "name" in p]


def run_plugin_check(program: Path, libraries: Iterable[Path], *, expect: Iterable[PluginId] = (),
                     enqueue: bool = False, extra_args: Sequence[str] = (),
                     timeout: float = 300) -> PluginCheckResult:
    """Run plugin_check; check failures come back in the result, a crash or bad usage raises."""
    with tempfile.TemporaryDirectory(prefix="trtis-plugin-check-") as tmp:
        report_path = Path(tmp) / "report.json"
        command = [str(program), "--json", str(report_path)]
        command += [arg for plugin in expect for arg in ("--expect", f"{plugin.name}:{plugin.version}:{plugin.namespace}")]
        command += (["--enqueue"] if enqueue else []) + list(extra_args) + [str(lib) for lib in libraries]
        done = process.run(command, stage="ops check", check=False, timeout=timeout)
        if done.returncode not in (0, 1) or not report_path.is_file():
            how = f"died of signal {-done.returncode}" if done.returncode < 0 else f"exited {done.returncode}"
            raise CommandError(f"the plugin check program {how} (a crash inside a plugin method, or bad usage)",
                               stage="ops check", command=command, returncode=done.returncode,
                               output_tail="\n".join(done.output.splitlines()[-30:]),
                               hint="run the command above by hand; a crash points at the plugin's code")
        report = json.loads(report_path.read_text())
    return PluginCheckResult(ok=bool(report.get("ok")) and done.returncode == 0,
                             failures=tuple(report.get("failures", [])),
                             warnings=tuple(report.get("warnings", [])), report=report)


# --------------------------------------------------------------------------------------------
# A real TensorRT plugin registry, in a subprocess (trtis_build/checks/trt_registry_probe.py)


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
