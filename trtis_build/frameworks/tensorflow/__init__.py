"""TensorFlow custom ops: op.toml's `ops`, TensorFlow's compile and link flags (found by a
probe process, cached with the toolchain), the classic layout's CUDA header shim, the
registry probe (probe.py, a fresh TensorFlow process) and the doctor lines.

Serving forms (SavedModel -> Triton model) are in serving.py; `load_bundle` in loader.py."""

from __future__ import annotations

import os
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ...core import process
from ...core.errors import ConfigError, ScaffoldError
from ..base import (PROBE_TIMEOUT_S, Framework, field_error, find_package_dir, probe_result, read_string_list,
                    run_library_probe)

PROBE = Path(__file__).with_name("probe.py")
# TensorFlow's rule for op names: an upper-case start, then word characters, optionally under
# '>'-separated namespaces ("Team>ZeroOut", as in TensorFlow's own examples).
OP_NAME = re.compile(r"^(?:[A-Za-z][A-Za-z0-9_]*>)*[A-Z][A-Za-z0-9_]*$")
QUIET = {"TF_CPP_MIN_LOG_LEVEL": "3"}
# A precompiled header of TensorFlow's op headers (tensorflow.cmake) is written once, on one
# core, before any adapter that uses it; adapters without it compile in parallel meanwhile. What
# writing it costs depends on the compiler (2 cores here, in adapter compiles, benchmarks/tf_pch_bench.py):
#   GCC 12:   about 2.6 (12 s: GCC saves its whole 390 MB heap image), an adapter then 0.27
#   clang 14: about 1.3 (an AST file, templates instantiated once), an adapter then 0.13
# It pays where each parallel job has more adapters than writing costs over what each then
# saves (2.6 / 0.73 and 1.3 / 0.87 adapters): from about 4 adapter sources per job with GCC,
# 2 with clang, and never for one op.
PCH_SOURCES_PER_JOB = {"gcc": 4, "clang": 2}
PCH_MIN_SOURCES = {"gcc": 8, "clang": 4}


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


_KERNEL_DEVICE = re.compile(r"Device\(\s*(?:::)?(?:tensorflow::)?(DEVICE_[A-Z]+)\s*\)")


def gpu_only(op) -> bool:
    """Whether the op's sources register kernels for the GPU only (read, not compiled: so that
    a CPU-only build skips it with that reason instead of failing to link its CUDA code)."""
    devices = set()
    for source in (*op.sources, *op.kernel_sources, *op.gpu_sources):
        try:
            devices |= set(_KERNEL_DEVICE.findall(Path(source).read_text(errors="replace")))
        except OSError:
            continue
    return "DEVICE_GPU" in devices and "DEVICE_CPU" not in devices


def pch_flavor(op, cuda_enabled: bool) -> str | None:
    """Which precompiled header the op's adapter can take: `cuda` (its adapter is built with
    TRTIS_WITH_CUDA and includes the stream executor), `cpu`, or None: flags of its own could
    make a header invalid, and GPU sources define GOOGLE_CUDA, which changes TensorFlow's headers."""
    if op.cxx_flags or op.gpu_sources:
        return None
    return "cuda" if cuda_enabled and op.cuda_sources else "cpu"


class TensorFlow(Framework):
    name = "tensorflow"
    title = "TensorFlow"
    name_kind = "TensorFlow op"
    cmake_prefix = "tf"
    cmake_function = "trtis_tensorflow_op"
    op_keys = frozenset({"ops"})
    base_version_keys = ("org.trtis-build.base.tensorflow.version", "TF_VERSION", "TENSORFLOW_VERSION")
    skew_parts = 2  # the framework library's C++ ABI changes with the minor version
    adapter_patterns = (re.compile(r'^\s*#\s*include\s*[<"](tensorflow|unsupported/Eigen|third_party/eigen3)/', re.M),
                        re.compile(r"\bREGISTER_(OP|KERNEL_BUILDER)\s*\("))
    device_adapter_role = "gpu_sources"  # nvcc with TensorFlow's headers (the classic layout)

    # ops stage --------------------------------------------------------------------------
    def declare(self, data, op_toml, *, default_namespace):
        names = read_string_list(data, "ops", op_toml)
        if not names:
            raise field_error("missing or empty 'ops': the TensorFlow op names this library registers",
                              op_toml, "ops", hint='add ops = ["MyOpName"] (the names given to REGISTER_OP)')
        for name in names:
            if not OP_NAME.match(name):
                raise field_error(f"{name!r} is not a valid TensorFlow op name", op_toml, "ops",
                                  hint="op names start with an upper-case letter, then letters, digits or _ "
                                       "(namespaces before it end in '>': 'Team>MyOp')")
        if len(set(names)) != len(names):
            raise field_error("'ops' lists a name twice", op_toml, "ops")
        return tuple(names)

    def is_builtin(self, registered, info):
        return info is not None and registered in info.builtin_ops

    def conflict_hint(self) -> str:
        return "each name must belong to one op: rename one of them"

    def scaffold_names(self, registered):
        if not OP_NAME.match(registered):
            raise ScaffoldError(f"registered name {registered!r} is not a valid TensorFlow op name",
                                hint="start with an upper-case letter, then letters, digits or _")
        return {"{{OP_NAME}}": registered}

    # builder ----------------------------------------------------------------------------
    def locate(self, env, python, options):
        package = find_package_dir(python, "tensorflow")
        located = {"tensorflow_dir": package}
        if package:
            located["tensorflow_init"] = str(Path(package, "__init__.py"))
        return located

    def detect(self, located, python, options):
        if not located.get("tensorflow_dir"):
            return None
        out = process.capture([python, str(PROBE), "info"], stage="toolchain", extra_env=QUIET,
                              timeout=PROBE_TIMEOUT_S)
        data = probe_result(out, self.title, "info")
        framework_lib = next((f.removeprefix("-l:") for f in data["link_flags"] if f.startswith("-l:")),
                             "libtensorflow_framework.so.2")
        return TensorFlowInfo(python=python, version=data["version"], include_dir=data["include_dir"],
                              lib_dir=data["lib_dir"], framework_lib=framework_lib,
                              cxx11_abi=data["cxx11_abi"], compile_flags=tuple(data["compile_flags"]),
                              builtin_ops=frozenset(data["builtin_ops"]))

    def missing(self):
        return ("TensorFlow not found for the build's Python: pip install 'trtis-build[tf]' "
                "(tensorflow-cpu==2.21.0); TensorFlow ops are skipped")

    def info_to_json(self, info):
        data = asdict(info)
        data["builtin_ops"] = sorted(info.builtin_ops)
        return data

    def info_from_json(self, data):
        return TensorFlowInfo(**{**data, "compile_flags": tuple(data["compile_flags"]),
                                 "builtin_ops": frozenset(data["builtin_ops"])})

    def manifest_toolchain(self, info):
        return {"version": info.version, "cxx11_abi": info.cxx11_abi, "framework_lib": info.framework_lib}

    def skip_reason(self, op, toolchain, options):
        if toolchain.framework(self.name) is None:
            return "TensorFlow not found (pip install 'trtis-build[tf]')"
        if (toolchain.cuda is None or getattr(options, "no_cuda", False)) and gpu_only(op):
            return ("it has only GPU kernels (REGISTER_KERNEL_BUILDER with DEVICE_GPU, none with DEVICE_CPU) "
                    "and CUDA is off here" + (" (--no-cuda)" if toolchain.cuda is not None else " (no nvcc)"))
        return None

    def cmake_variables(self, info, toolchain, build_dir):
        return {
            "TRTIS_TF_INCLUDE_DIR": info.include_dir,
            "TRTIS_TF_LIB_DIR": info.lib_dir,
            "TRTIS_TF_FRAMEWORK_LIB": info.framework_lib,
            "TRTIS_TF_DEFINITIONS": [flag[2:] for flag in info.compile_flags if flag.startswith("-D")],
            "TRTIS_TF_SHIM_DIR": str(build_dir / "tf-shim"),
        }

    def target_arguments(self, op, build_dir, cuda_enabled):
        flavor = pch_flavor(op, cuda_enabled)
        return {"GPU_SOURCES": [str(p) for p in op.gpu_sources], "PCH": [flavor] if flavor else []}

    def plan_variables(self, ops, options, toolchain, cuda_enabled):
        """TRTIS_TF_PCH: the precompiled headers (flavors, see pch_flavor) that pay for the
        adapters sharing them. Not with a compiler cache: sccache does not cache compiles that
        use a precompiled header, and a warm cache is faster than any header."""
        choice = os.environ.get("TRTIS_BUILD_TF_PCH", "auto").lower()  # on/off force it (benchmarks)
        if choice not in ("auto", "on", "off"):
            raise ConfigError(f"TRTIS_BUILD_TF_PCH must be auto, on or off, not {choice!r}",
                              where="environment variable TRTIS_BUILD_TF_PCH")
        sources: dict[str, int] = {}
        for op in ops:
            flavor = pch_flavor(op, cuda_enabled)
            if flavor:
                sources[flavor] = sources.get(flavor, 0) + len(op.sources)
        jobs = getattr(options, "jobs", None) or os.cpu_count() or 1
        needed = max(PCH_MIN_SOURCES[toolchain.cxx_family], PCH_SOURCES_PER_JOB[toolchain.cxx_family] * jobs)
        pays = choice == "auto" and getattr(options, "compiler_cache", "none") == "none"
        return {"TRTIS_TF_PCH": sorted(flavor for flavor, count in sources.items()
                                       if choice == "on" or (pays and count >= needed))}

    def prepare(self, ops, toolchain, build_dir):
        """TensorFlow's GPU headers include CUDA through third_party/gpus/...; the CPU wheel
        does not ship that path. Point it at the found CUDA toolkit (classic layout only)."""
        if toolchain.cuda is None or not any(op.gpu_sources for op in ops):
            return
        link = build_dir / "tf-shim" / "third_party" / "gpus" / "cuda" / "include"
        if not link.is_symlink() or os.readlink(link) != toolchain.cuda.include_dir:
            link.parent.mkdir(parents=True, exist_ok=True)
            if link.is_symlink() or link.exists():
                link.unlink()
            link.symlink_to(toolchain.cuda.include_dir)

    # bundle stage -----------------------------------------------------------------------
    def start_early_probe(self, info):
        """The registry probe started before the libraries exist: the build starts it when
        the compiler starts, so TensorFlow's ~2 s import runs on a core the compiler leaves
        idle (one TensorFlow-heavy adapter is a cold build's critical path)."""
        return process.Pending([info.python, str(PROBE), "serve"], stage="bundle", extra_env=QUIET)

    def probe(self, info, paths, options, early=None):
        results = {}
        found_by_path = run_library_probe(self.title, info.python, PROBE, paths, early, QUIET)
        for path, found in found_by_path.items():
            if "error" in found:
                results[path] = {"error": found["error"]}
                continue
            results[path] = {"registered": found["ops"],
                             "entry": {"ops": found["ops"], "devices": found["devices"],
                                       "outputs": found["outputs"], "plugins": [],
                                       "changed_builtins": found.get("changed", [])}}
        return results

    def check_registered(self, op, entry, library):
        self.refuse_changed_builtins(op, entry, library,
                                     "register kernels only for the ops this library defines (REGISTER_KERNEL_BUILDER "
                                     "with a name of op.toml's `ops`), never for a TensorFlow built-in")

    def allowed_needed(self, info):
        return {info.framework_lib} if info else set()

    def load_error_hint(self, error):
        # TensorFlow's whole message for a second REGISTER_OP of a name is "Op with name X".
        if error.startswith("Op with name "):
            return (f"{error.removeprefix('Op with name ')} is registered twice in this library (TensorFlow refuses "
                    "a second REGISTER_OP of one name): keep one REGISTER_OP per op, and check that no source is "
                    "compiled into the library twice; the previous bundle was kept")
        return super().load_error_hint(error)

    def load_bundle(self, path):
        from .loader import load_bundle

        return load_bundle(path)

    # ops list and doctor -----------------------------------------------------------------
    def list_fields(self, op):
        return {"ops": list(op.declared)}

    def doctor(self, info, options):
        if info is None:
            return {"tensorflow": None}
        return {"tensorflow": {"version": info.version, "include_dir": info.include_dir, "lib_dir": info.lib_dir,
                               "framework_lib": info.framework_lib,
                               "cxx11_abi_flag": f"-D_GLIBCXX_USE_CXX11_ABI={info.cxx11_abi}"}}

    def doctor_lines(self, report):
        tf = report.get("tensorflow")
        if not tf:
            return [("tensorflow", "not found")]
        return [("tensorflow", f"{tf['version']}  {tf['cxx11_abi_flag']}"),
                ("", f"include: {tf['include_dir']}"),
                ("", f"library: {tf['lib_dir']}/{tf['framework_lib']}")]

    # image ------------------------------------------------------------------------------
    def image_labels(self, libraries):
        return {"tensorflow.ops": ",".join(sorted(op for lib in libraries for op in lib.get("ops", [])))}
