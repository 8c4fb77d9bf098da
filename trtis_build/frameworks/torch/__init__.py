"""PyTorch custom operators: op.toml's `ops` (schemas), torch's headers and libraries (found
by a probe process, cached with the toolchain), the LibTorch stable ABI by default, and the
registry probe (probe.py: a fresh torch process that loads each library and reports the
schemas it defines and any change it makes to torch's own operators).

Loading a bundle's libraries into a process: loader.py. Serving forms: serving.py."""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ...core import process
from ...core.errors import NameConflictError, OpSpecError, ScaffoldError
from ..base import (PROBE_TIMEOUT_S, Framework, field_error, find_package_dir, probe_result, read_string,
                    read_string_list, run_library_probe)

PROBE = Path(__file__).with_name("probe.py")
QUIET = {"TORCH_CPP_LOG_LEVEL": "ERROR"}
# The oldest torch a stable-ABI library is built for (TORCH_TARGET_VERSION): the stable
# headers compile only what that release already had, so the library loads in it and later.
DEFAULT_TARGET = "2.10"
ABI_MODES = ("stable", "exact")
SETTINGS_KEYS = {"abi", "torch_target", "python"}
# "ns::name[.overload](args) -> returns": what torch.library's def() takes, qualified.
SCHEMA = re.compile(r"^(?P<namespace>[A-Za-z_][A-Za-z0-9_]*)::(?P<name>[A-Za-z_][A-Za-z0-9_]*)"
                    r"(?:\.(?P<overload>[A-Za-z0-9_]+))?\s*\((?P<args>.*)\)\s*->\s*(?P<returns>\S.*)$", re.S)
IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")
# Namespaces that are torch's whatever the installed build registers (the probe adds those
# it finds in a fresh `import torch`).
RESERVED_NAMESPACES = frozenset({"aten", "prim", "prims", "_prims", "quantized", "_quantized", "torch",
                                 "c10d", "_c10d_functional", "_c10d_functional_autograd", "inductor",
                                 "higher_order", "mkldnn", "onednn", "profiler", "debugprims", "rngprims",
                                 "_test", "cuda", "cpu", "mps", "xpu", "meta", "autograd"})
# The libraries a torch op library may need: torch's C++ core. libtorch_python only where
# op.toml allows it (Triton's PyTorch backend has no Python).
TORCH_LIBS = frozenset({"libtorch_cpu.so", "libc10.so", "libtorch.so"})
PYTHON_LIB = "libtorch_python.so"


@dataclass(frozen=True)
class TorchOp:
    """One operator a library defines: torch's qualified name and the schema it is given."""

    namespace: str
    name: str
    overload: str
    schema: str

    def __str__(self) -> str:
        return f"{self.namespace}::{self.name}" + (f".{self.overload}" if self.overload else "")

    def as_dict(self) -> dict:
        return {"name": str(self), "schema": self.schema}


def parse_schema(text: str) -> TorchOp | None:
    match = SCHEMA.match(text.strip())
    if not match or match["args"].count("(") != match["args"].count(")"):
        return None
    return TorchOp(match["namespace"], match["name"], match["overload"] or "", " ".join(text.split()))


def same_schema(a: str, b: str) -> bool:
    """Schemas equal up to spacing (torch prints them with its own spaces)."""
    return re.sub(r"\s+", "", a) == re.sub(r"\s+", "", b)


def target_hex(version: str) -> str:
    """'2.10' -> the TORCH_TARGET_VERSION value torch's stable/version.h expects."""
    major, minor = (int(part) for part in version.split(".")[:2])
    return f"0x{major:02x}{minor:02x}000000000000"


def version_tuple(version: str) -> tuple[int, int]:
    parts = re.findall(r"\d+", version)
    return (int(parts[0]), int(parts[1])) if len(parts) >= 2 else (0, 0)


def release(version: str) -> tuple[int, int, int] | None:
    """major.minor.patch of a torch version: 2.14.1+cu130 and 2.14.1+cpu are one release, and
    NGC's 2.5.0a0+e000cf0 is 2.5.0."""
    match = re.match(r"\s*v?(\d+)\.(\d+)(?:\.(\d+))?", version or "")
    return tuple(int(part or 0) for part in match.groups()) if match else None


def incompatibility(entry: dict, built_with: str | None, running: str) -> str | None:
    """Why a library of this manifest entry cannot load into torch `running`, or None: a
    stable-ABI library loads in its target and every later torch; an exact one only in the
    release it was built with."""
    abi = entry.get("torch") or {}
    if abi.get("abi") == "exact":
        if built_with and release(built_with) != release(running):
            return (f"it was built against torch {built_with} with the full C++ API (abi = \"exact\"), "
                    f"and this is torch {running}")
        return None
    target = abi.get("target", DEFAULT_TARGET)
    have = release(running)
    if have is None or have[:2] < version_tuple(target):
        return f"it targets torch {target} or later, and this is torch {running}"
    return None


@dataclass(frozen=True)
class TorchInfo:
    python: str
    version: str            # e.g. 2.14.1+cu130
    include_dir: str
    lib_dir: str
    cxx11_abi: int
    cuda: str | None        # the CUDA torch was built with (None: a CPU build)
    has_stable_abi: bool    # torch/csrc/stable/library.h is shipped
    builtin_namespaces: frozenset[str] = field(repr=False, default=frozenset())

    @property
    def api_include_dir(self) -> str:
        return str(Path(self.include_dir, "torch", "csrc", "api", "include"))


class Torch(Framework):
    name = "torch"
    title = "PyTorch"
    name_kind = "PyTorch operator"
    cmake_prefix = "torch"
    cmake_function = "trtis_torch_op"
    op_keys = frozenset({"ops", *SETTINGS_KEYS})
    base_version_keys = ("org.trtis-build.base.torch.version", "PYTORCH_VERSION", "TORCH_VERSION")
    skew_parts = 2
    adapter_patterns = (re.compile(r'^\s*#\s*include\s*[<"](torch|ATen|c10)/', re.M),
                        re.compile(r"\b(STABLE_)?TORCH_LIBRARY(_IMPL|_FRAGMENT)?\s*\("))

    # ops stage --------------------------------------------------------------------------
    def declare(self, data, op_toml, *, default_namespace):
        schemas = read_string_list(data, "ops", op_toml)
        if not schemas:
            raise field_error("missing or empty 'ops': the operator schemas this library defines", op_toml, "ops",
                              hint='add ops = ["myteam::my_op(Tensor x) -> Tensor"] (the schemas given to m.def)')
        ops = []
        for text in schemas:
            op = parse_schema(text)
            if op is None:
                raise field_error(f"{text!r} is not an operator schema", op_toml, "ops",
                                  hint='write "namespace::name(Tensor x, float alpha) -> Tensor", as torch.library '
                                       "takes it, with the namespace")
            ops.append(op)
        if len({str(op) for op in ops}) != len(ops):
            raise field_error("'ops' lists one operator twice", op_toml, "ops",
                              hint="give each overload its own name: ns::op.overload(...)")
        return tuple(ops)

    def op_settings(self, data, op_toml, *, declared=(), adapter_sources=()):
        abi = read_string(data, "abi", op_toml, required=False, default="stable")
        if abi not in ABI_MODES:
            raise field_error(f"'abi' is {abi!r}", op_toml, "abi",
                              hint='"stable" (STABLE_TORCH_LIBRARY, loads in every torch from torch_target on) '
                                   'or "exact" (TORCH_LIBRARY code, tied to the torch it was built against)')
        target = read_string(data, "torch_target", op_toml, required=False, default=DEFAULT_TARGET)
        if not re.fullmatch(r"2\.\d{1,2}", target) or version_tuple(target) < (2, 10):
            raise field_error(f"'torch_target' is {target!r}", op_toml, "torch_target",
                              hint='the oldest torch the library must load in, "2.10" or later (the first '
                                   "release whose stable ABI registers operators)")
        python = data.get("python", False)
        if not isinstance(python, bool):
            raise field_error("'python' must be true or false", op_toml, "python")
        return {"abi": abi, "torch_target": target, "python": python}

    def default_registered_name(self, name):
        return f"{name}::{name}"

    def owned_names(self, op):
        """An operator, and its whole namespace: TORCH_LIBRARY(ns) may be defined once per process."""
        namespaces = sorted({item.namespace for item in op.declared})
        return ([(self.name_kind, name) for name in op.registered_names]
                + [("PyTorch namespace", namespace) for namespace in namespaces])

    def conflict_hint(self):
        return ("a torch namespace belongs to one op directory (torch allows one TORCH_LIBRARY per namespace "
                "in a process): move the operators into one op or give one a namespace of its own")

    def builtin_conflicts(self, op, info):
        return sorted(str(item) for item in op.declared if self._reserved(item.namespace, info))

    def is_builtin(self, registered, info):
        return self._reserved(registered.split("::")[0], info)

    @staticmethod
    def _reserved(namespace: str, info) -> bool:
        return namespace in RESERVED_NAMESPACES or (info is not None and namespace in info.builtin_namespaces)

    def bare_names(self, op):
        return {*op.registered_names, *(f"{item.namespace}::{item.namespace}" for item in op.declared)}

    def scaffold_names(self, registered):
        namespace, _, name = registered.partition("::")
        if not (IDENTIFIER.fullmatch(namespace) and IDENTIFIER.fullmatch(name)):
            raise ScaffoldError(f"operator name {registered!r} is not namespace::name",
                                hint="give it as myteam::my_op (letters, digits and '_')")
        return {"{{OP_NAMESPACE}}": namespace, "{{OP_NAME}}": name, "{{OP_QUALIFIED}}": registered}

    # builder ----------------------------------------------------------------------------
    def locate(self, env, python, options):
        package = find_package_dir(python, "torch")
        located = {"torch_dir": package}
        if package:
            located["torch_version"] = str(Path(package, "version.py"))
        return located

    def detect(self, located, python, options):
        if not located.get("torch_dir"):
            return None
        out = process.capture([python, str(PROBE), "info"], stage="toolchain", extra_env=QUIET,
                              timeout=PROBE_TIMEOUT_S)
        data = probe_result(out, self.title, "info")
        return TorchInfo(python=python, version=data["version"], include_dir=data["include_dir"],
                         lib_dir=data["lib_dir"], cxx11_abi=data["cxx11_abi"], cuda=data["cuda"],
                         has_stable_abi=data["has_stable_abi"],
                         builtin_namespaces=frozenset(data["builtin_namespaces"]))

    def missing(self):
        return "PyTorch not found for the build's Python: pip install 'trtis-build[torch]'; PyTorch ops are skipped"

    def info_to_json(self, info):
        data = asdict(info)
        data["builtin_namespaces"] = sorted(info.builtin_namespaces)
        return data

    def info_from_json(self, data):
        return TorchInfo(**{**data, "builtin_namespaces": frozenset(data["builtin_namespaces"])})

    def manifest_toolchain(self, info):
        return {"version": info.version, "cxx11_abi": info.cxx11_abi, "cuda": info.cuda}

    def skip_reason(self, op, toolchain, options):
        info = toolchain.framework(self.name)
        if info is None:
            return "PyTorch not found (pip install 'trtis-build[torch]')"
        if op.settings["abi"] == "stable":
            if not info.has_stable_abi or version_tuple(info.version) < (2, 10):
                return (f"the installed torch {info.version} has no stable ABI for operators (2.10 or later; "
                        "or set abi = \"exact\" in op.toml)")
            if version_tuple(info.version) < version_tuple(op.settings["torch_target"]):
                raise OpSpecError(f"torch_target {op.settings['torch_target']} is newer than the installed torch "
                                  f"{info.version}, whose headers build the library", where=op.op_toml,
                                  hint="lower torch_target, or install a torch at least that new")
        return None

    def cmake_variables(self, info, toolchain, build_dir):
        return {"TRTIS_TORCH_INCLUDE_DIR": info.include_dir, "TRTIS_TORCH_API_INCLUDE_DIR": info.api_include_dir,
                "TRTIS_TORCH_LIB_DIR": info.lib_dir, "TRTIS_TORCH_CXX11_ABI": str(info.cxx11_abi)}

    def target_arguments(self, op, build_dir, cuda_enabled):
        settings = op.settings
        return {"ABI": [settings["abi"]], "TARGET_VERSION": [target_hex(settings["torch_target"])],
                "PYTHON": ["ON" if settings["python"] else "OFF"]}

    def failure_hint(self, log, undefined):
        if "TORCH_STABLE_ONLY" in log or "should not be included when" in log:
            return ("the adapter includes a torch header outside the stable ABI: use torch/csrc/stable/* and "
                    "torch/headeronly/*, or set abi = \"exact\" in op.toml (the library is then tied to this torch)")
        if any(re.match(r"_?Py|pybind11", symbol) for symbol in undefined):
            return ("the op calls Python (pybind11 or the CPython API), which Triton's PyTorch backend does not have: "
                    "register with TORCH_LIBRARY instead of a Python module, or set python = true in op.toml "
                    "if the op is only served through the Python backend")
        return None

    # bundle stage -----------------------------------------------------------------------
    def start_early_probe(self, info):
        """torch's ~2.5 s import, started while the compiler runs (see TensorFlow's)."""
        return process.Pending([info.python, str(PROBE), "serve"], stage="bundle", extra_env=QUIET)

    def probe(self, info, paths, options, early=None):
        results = {}
        found_by_path = run_library_probe(self.title, info.python, PROBE, paths, early, QUIET)
        for path, found in found_by_path.items():
            if "error" in found:
                results[path] = {"error": found["error"]}
                continue
            results[path] = {"registered": sorted(found["schemas"]),
                             "entry": {"ops": sorted(found["schemas"]), "devices": found["devices"],
                                       "outputs": found["outputs"], "plugins": [], "schemas": found["schemas"],
                                       "changed_builtins": found["changed"]}}
        return results

    def allowed_needed(self, info):
        return set(TORCH_LIBS | {PYTHON_LIB}) if info else set()

    def load_error_hint(self, error):
        return ("link only torch's C++ libraries, and register each namespace once (STABLE_TORCH_LIBRARY); "
                "the previous bundle was kept")

    def check_registered(self, op, entry, library):
        """The schemas must be op.toml's; torch's own operators must be left as they were (a
        kernel added for aten::add changes every model in the process); libtorch_python only
        where op.toml allows it."""
        self.refuse_changed_builtins(op, entry, library, "register kernels only for the operators this op defines "
                                                         "(no TORCH_LIBRARY_IMPL for aten or another op's namespace)")
        registered = entry.get("schemas", {})
        for item in op.declared:
            actual = registered.get(str(item), "")
            if not same_schema(actual, item.schema):
                raise NameConflictError(f"{library} defines {actual!r}, but op.toml declares {item.schema!r}",
                                        where=str(op.op_toml),
                                        hint="make them one: copy the registered schema into op.toml's 'ops' "
                                             "(or fix m.def); the previous bundle was kept")
        if PYTHON_LIB in entry.get("needed", []) and not op.settings["python"]:
            raise OpSpecError(f"{library} needs {PYTHON_LIB}: it loads only in a Python process, not in Triton's "
                              "PyTorch backend or a server without torch's Python bindings", where=op.op_toml,
                              hint="drop the pybind/Python code (register with TORCH_LIBRARY), or set python = true "
                                   "in op.toml if the op is only served through the Python backend; "
                                   "the previous bundle was kept")

    def library_fields(self, op, entry):
        info = {"abi": op.settings["abi"], "python": op.settings["python"]}
        if op.settings["abi"] == "stable":
            info["target"] = op.settings["torch_target"]
        return {"schemas": entry.get("schemas", {}), "torch": info,
                "namespaces": sorted({item.namespace for item in op.declared})}

    def load_bundle(self, path):
        from .loader import load_bundle

        return load_bundle(path)

    # ops list and doctor -----------------------------------------------------------------
    def list_fields(self, op):
        return {"ops": [item.as_dict() for item in op.declared], **op.settings}

    def doctor(self, info, options):
        if info is None:
            return {"torch": None}
        return {"torch": {"version": info.version, "include_dir": info.include_dir, "lib_dir": info.lib_dir,
                          "cuda": info.cuda, "stable_abi": info.has_stable_abi,
                          "cxx11_abi_flag": f"-D_GLIBCXX_USE_CXX11_ABI={info.cxx11_abi}"}}

    def doctor_lines(self, report):
        found = report.get("torch")
        if not found:
            return [("torch", "not found")]
        build = f"CUDA {found['cuda']}" if found["cuda"] else "CPU build"
        return [("torch", f"{found['version']}  ({build}; stable ABI {'yes' if found['stable_abi'] else 'no'})"),
                ("", f"include: {found['include_dir']}"), ("", f"library: {found['lib_dir']}")]

    # image ------------------------------------------------------------------------------
    def image_labels(self, libraries):
        return {"torch.ops": ",".join(sorted(op for lib in libraries for op in lib.get("ops", [])))}

    def base_skew(self, built, declared, libraries):
        """Per library, by the loader's rule (incompatibility), with the image's fixes."""
        if release(declared) is None:
            return f"the base declares torch {declared!r}, which is not a version (give --base-version torch=X.Y.Z)"
        problems = []
        for library in libraries:
            reason = incompatibility(library, built, declared)
            if reason is None:
                continue
            path = library.get("path", library.get("op", "?"))
            if (library.get("torch") or {}).get("abi") == "exact":
                fix = f"use a base with torch {built.split('+')[0]}, or build the op on the stable ABI (abi = \"stable\")"
            else:
                have = release(declared)
                fix = f"use a base with torch {library['torch'].get('target', DEFAULT_TARGET)} or newer" + (
                    f", or lower torch_target to \"{have[0]}.{have[1]}\" in op.toml and rebuild"
                    if have[:2] >= version_tuple(DEFAULT_TARGET) else "")
            problems.append(f"{path}: {reason}: {fix}")
        return "; ".join(problems) or None
