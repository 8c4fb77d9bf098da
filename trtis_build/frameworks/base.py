"""The one interface every framework implements (frameworks/<name>/__init__.py), and the
op.toml value readers the frameworks and the ops stage share.

The pipeline stages iterate over `frameworks.all()` and call these methods; they never
name a framework. A framework's part of a stage above this layer (serving) sits in a module
named after that stage (frameworks/<name>/serving.py) and is imported only by that stage.

Values the methods receive:
- `op`: an ops.discover.OpSpec (op.declared holds what this framework's `declare` returned);
- `info`: what this framework's `detect` returned (None when the framework is not installed);
- `toolchain`: the builder's Toolchain (compilers, CUDA, every framework's info).
"""

from __future__ import annotations

import difflib
import json
import importlib.util
import os
import re
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Mapping

from ..core import process
from ..core.errors import NameConflictError, OpSpecError, ToolchainError

if TYPE_CHECKING:  # types only: the stages above pass these in
    from ..builder.toolchain import Toolchain
    from ..ops.discover import OpSpec


# --- op.toml values ------------------------------------------------------------------------

def field_error(message: str, op_toml: Path, field: str | None = None, hint: str | None = None) -> OpSpecError:
    where = f"{op_toml}" + (f", field '{field}'" if field else "")
    return OpSpecError(message, where=where, hint=hint)


def read_string(data: Mapping, key: str, op_toml: Path, *, required: bool, default: str = "") -> str:
    if key not in data:
        if required:
            raise field_error(f"missing required field '{key}'", op_toml, key,
                              hint=f"add `{key} = \"...\"` to {op_toml.name}")
        return default
    value = data[key]
    if not isinstance(value, str):
        raise field_error(f"'{key}' must be a string, not {type(value).__name__}", op_toml, key)
    return value


def read_string_list(data: Mapping, key: str, op_toml: Path) -> list[str] | None:
    if key not in data:
        return None
    value = data[key]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise field_error(f"'{key}' must be a list of strings", op_toml, key,
                          hint=f'write it as {key} = ["a", "b"]')
    return value


def reject_unknown(data: Mapping, allowed: Iterable[str], op_toml: Path, prefix: str = "") -> None:
    allowed = sorted(allowed)
    for key in data:
        if key not in allowed:
            close = difflib.get_close_matches(key, allowed, n=1)
            hint = f"did you mean '{prefix}{close[0]}'?" if close else f"allowed: {', '.join(allowed)}"
            raise field_error(f"unknown key '{prefix}{key}'", op_toml, prefix + key, hint=hint)


def find_package_dir(python: str, package: str) -> str | None:
    """An installed package's directory for the build's Python, found without importing it
    (a framework import takes seconds; the toolchain fingerprint must stay cheap)."""
    if os.path.realpath(python) == os.path.realpath(sys.executable):
        spec = importlib.util.find_spec(package)
        return str(Path(spec.origin).parent) if spec and spec.origin else None
    out = process.capture([python, "-c", f"import importlib.util as u; s = u.find_spec({package!r});"
                           "print(s.origin if s and s.origin else '')"], stage="toolchain", check=False)
    origin = out.strip().splitlines()[-1] if out.strip() else ""
    return str(Path(origin).parent) if origin.endswith("__init__.py") else None


SOURCE_READ_LIMIT = 1 << 20  # bytes of a source read to decide what it is


def read_source(path: Path) -> str:
    """The start of a source file as text, for deciding its role or how it registers ("" when
    it cannot be read: the compiler then says why)."""
    try:
        with open(path, "rb") as handle:
            return handle.read(SOURCE_READ_LIMIT).decode(errors="replace")
    except OSError:
        return ""


def camel_case(name: str) -> str:
    return "".join(part[:1].upper() + part[1:] for part in name.split("_") if part)


# A probe script prints its JSON result after this mark (whatever the framework logged before).
JSON_MARK = "@@TRTIS-JSON@@"


# Loading a library runs its static initializers: one that blocks must not hang the build
# (which holds the tree's lock). Importing a framework takes seconds; this is generous.
PROBE_TIMEOUT_S = float(os.environ.get("TRTIS_BUILD_PROBE_TIMEOUT", "300"))


def run_library_probe(title: str, python: str, script: Path, paths: list[Path], early: Any,
                      extra_env: Mapping[str, str]) -> dict:
    """A framework's probe script over the built libraries (`script registered LIB...`), or
    the early probe started beside the compiler (its `serve` mode reads them on stdin)."""
    failure = f"loading the built libraries into {title} crashed"
    if early is None:
        out = process.capture([python, str(script), "registered", *map(str, paths)], stage="bundle",
                              extra_env=extra_env, failure_message=failure, timeout=PROBE_TIMEOUT_S)
    else:
        out = early.finish("".join(f"{path}\n" for path in paths), failure_message=failure,
                           timeout=PROBE_TIMEOUT_S)
    return probe_result(out, title, "registered")


def probe_result(output: str, title: str, what: str) -> Any:
    if JSON_MARK not in output:
        raise ToolchainError(f"the {title} probe printed no result ({what})", hint="run `trtis-build doctor`")
    return json.loads(output.rsplit(JSON_MARK, 1)[1])


# --- the interface ---------------------------------------------------------------------------

class Framework:
    """Defaults suit a framework that needs nothing beyond compiling and probing."""

    name = ""                 # ops/<name>/, the bundle's <name>/ folder, manifest "framework"
    title = ""                # "TensorFlow", for messages
    name_kind = ""            # what op.toml declares: "TensorFlow op", "TensorRT plugin"
    cmake_prefix = ""         # CMake target names: <prefix>_<op>
    cmake_function = ""       # the function of <name>.cmake that the plan calls per op
    op_keys: frozenset[str] = frozenset()   # op.toml keys beyond the common ones
    env_keys: tuple[str, ...] = ()          # environment variables its detection reads
    # Image version checks: where a base declares this framework's version (labels, then
    # environment variables) and how many version parts must agree with the bundle's.
    base_version_keys: tuple[str, ...] = ()
    skew_parts = 1
    check_name: str | None = None   # `ops check` report key of check_bundle's result, if any
    # What makes a C++ source an adapter (compiled with the framework's headers): an include of
    # them or a registration macro. Anything else is a framework-free kernel.
    adapter_patterns: tuple[re.Pattern, ...] = ()
    device_adapter_role: str | None = None  # where a .cu that includes the framework goes, if anywhere

    @property
    def directory(self) -> Path:
        return Path(__file__).parent / self.name

    @property
    def templates(self) -> Path:
        return self.directory / "templates"

    @property
    def cmake_file(self) -> Path:
        return self.directory / f"{self.name}.cmake"

    # ops stage --------------------------------------------------------------------------
    def declare(self, data: Mapping[str, Any], op_toml: Path, *, default_namespace: str) -> tuple:
        """What op.toml says the library registers; each item's str() is its unique name.
        default_namespace: the project's namespace for frameworks whose names have one."""
        raise NotImplementedError

    def op_settings(self, data: Mapping[str, Any], op_toml: Path, *, declared: tuple = (),
                    adapter_sources: tuple[Path, ...] = ()) -> dict[str, Any]:
        """How this op is built and tested, from op.toml keys beyond its names (op.settings);
        `declared` is what declare() returned, `adapter_sources` the op's adapter files."""
        return {}

    def default_registered_name(self, name: str) -> str:
        """What `ops add NAME` registers when no --op-name is given."""
        return camel_case(name)

    def owned_names(self, op: "OpSpec") -> list[tuple[str, str]]:
        """(kind, name) pairs that exactly one op of the tree may declare."""
        return [(self.name_kind, name) for name in op.registered_names]

    def is_adapter_source(self, text: str) -> bool:
        return any(pattern.search(text) for pattern in self.adapter_patterns)

    def builtin_conflicts(self, op: "OpSpec", info: Any) -> list[str]:
        """Declared names that shadow the framework's own (checked before compiling)."""
        return sorted(name for name in op.registered_names if self.is_builtin(name, info))

    def builtin_hint(self, name: str) -> str:
        """How to fix a declared name that builtin_conflicts found."""
        return f"choose a name with a project prefix, e.g. 'MyTeam{name}'"

    def is_builtin(self, registered: str, info: Any) -> bool:
        """Whether a name is one of the framework's own (`ops add --op-name` must not take it)."""
        return False

    def scaffold_names(self, registered: str) -> dict[str, str]:
        """Template tokens for `ops add --op-name`, after validating the name."""
        return {}

    def bare_names(self, op: "OpSpec") -> set[str]:
        """The declared names without qualifiers (what `ops add --op-name` may not reuse)."""
        return set(op.registered_names)

    def conflict_hint(self) -> str:
        return "each name must belong to one op: rename one of them"

    # builder ----------------------------------------------------------------------------
    def locate(self, env: Mapping[str, str], python: str, options: Any) -> dict[str, str | None]:
        """Cheap facts (paths) for the toolchain fingerprint: nothing is imported or run."""
        return {}

    def detect(self, located: Mapping[str, str | None], python: str, options: Any) -> Any:
        """The framework's build facts (headers, flags...), or None when it is not installed."""
        return None

    def missing(self) -> str:
        """The problem line (with the command that fixes it) when detect found nothing."""
        return f"{self.title} not found: {self.title} ops are skipped"

    def info_to_json(self, info: Any) -> dict:
        raise NotImplementedError

    def info_from_json(self, data: dict) -> Any:
        raise NotImplementedError

    def manifest_toolchain(self, info: Any) -> dict | None:
        """What the manifest's toolchain section records of this framework."""
        return None

    def skip_reason(self, op: "OpSpec", toolchain: "Toolchain", options: Any) -> str | None:
        """Why this op cannot be built with this toolchain, or None."""
        if toolchain.framework(self.name) is None:
            return f"{self.title} not found"
        return None

    def cmake_variables(self, info: Any, toolchain: "Toolchain", build_dir: Path) -> dict:
        return {}

    def plan_variables(self, ops: list["OpSpec"], options: Any, toolchain: Any, cuda_enabled: bool) -> dict:
        """Variables decided from all the planned ops of this framework at once (e.g. whether a
        precompiled header pays for them)."""
        return {}

    def target_arguments(self, op: "OpSpec", build_dir: Path, cuda_enabled: bool) -> dict[str, list[str]]:
        """Arguments of this framework's CMake function beyond the common source lists."""
        return {}

    def extra_outputs(self, op: "OpSpec") -> dict[str, str]:
        """Further libraries the build makes per op: kind -> path inside the bundle."""
        return {}

    def failure_hint(self, log: str, undefined: list[str]) -> str | None:
        """A fix for a failed compile or link of this framework's ops, read from the build log
        and the symbols its links left undefined (builder/link_errors.py, any linker)."""
        return None

    def prepare(self, ops: list["OpSpec"], toolchain: "Toolchain", build_dir: Path) -> None:
        """Generated files the compile needs (written only when their text changes)."""

    # bundle stage -----------------------------------------------------------------------
    def start_early_probe(self, info: Any) -> Any:
        """A probe process started while the compiler runs (None: no early start)."""
        return None

    def probe(self, info: Any, paths: list[Path], options: Any, early: Any = None) -> dict[str, dict]:
        """Load each library where this framework really registers (a fresh process); per
        path: {"registered": [names], "entry": manifest fields} or {"error": why}."""
        raise NotImplementedError

    def allowed_needed(self, info: Any) -> set[str]:
        """Shared libraries a library of this framework may need besides the C/C++ runtime."""
        return set()

    def check_registered(self, op: "OpSpec", entry: dict, library: str) -> None:
        """Further checks of what a library registers, after its names matched op.toml's."""

    @staticmethod
    def refuse_changed_builtins(op: "OpSpec", entry: dict, library: str, hint: str) -> None:
        """A library may add kernels only to what it defines: the probe lists the operators it
        changed that it does not own (a kernel added to a built-in changes every model in the
        process that uses it), and any one of them refuses the library."""
        changed = entry.pop("changed_builtins", [])
        if changed:
            raise NameConflictError(
                f"{library} changes operators it does not own: {', '.join(changed[:5])}"
                + (f" and {len(changed) - 5} more" if len(changed) > 5 else ""), where=str(op.op_toml),
                hint=f"{hint}; the previous bundle was kept")

    def library_fields(self, op: "OpSpec", entry: dict) -> dict[str, Any]:
        """Manifest fields of this framework's library entries beyond the common ones."""
        return {}

    def load_error_hint(self, error: str) -> str:
        """How to fix a library its framework refused to load (`error`: what the framework said)."""
        return "fix the undefined symbol or ABI mismatch; the previous bundle was kept"

    def verify_extras(self, targets: list, built_dir: Path, results: dict, context: Any) -> dict[str, dict]:
        """Checks of extra_outputs before publishing; key -> manifest fields to add."""
        return {}

    # testing and ops check --------------------------------------------------------------
    def test_without_python(self, options: Any, toolchain: "Toolchain", bundle: Path, target: Any,
                            op: "OpSpec", *, gpu: bool = False) -> dict | None:
        """The test of an op that has no test_*.py, as a report entry, or None (`gpu`: `ops test
        --gpu`, on a machine with one)."""
        return None

    def check_bundle(self, options: Any, toolchain: "Toolchain", bundle: Path, libraries: list[dict]) -> dict | None:
        """`ops check`'s framework part over this framework's manifest entries."""
        return None

    def load_bundle(self, path: Path | str | None) -> Any:
        """Load the bundle's libraries of this framework into this process (trtis_build.load_bundle)."""
        raise ValueError(f"{self.title} libraries are not loaded into a Python process")

    # image ------------------------------------------------------------------------------
    def image_labels(self, libraries: list[dict]) -> dict[str, str]:
        """Labels (after org.trtis-build.) naming what this framework's libraries register."""
        return {}

    def image_warnings(self, libraries: list[dict], bundle_dir: Path) -> list[str]:
        """What composing an image with these manifest entries should warn about."""
        return []

    def base_skew(self, built: str, declared: str, libraries: list[dict]) -> str | None:
        """Why a base image declaring version `declared` of this framework cannot run these
        manifest entries of the bundle (built against `built`), or None when it can. The
        reason names both versions and, where it differs from a rebuild, the fix.
        Default: the first `skew_parts` version parts must agree."""
        if built.split(".")[:self.skew_parts] != declared.split(".")[:self.skew_parts]:
            return f"bundle built with {built}, base has {declared}"
        return None

    # ops list and doctor -----------------------------------------------------------------
    def list_fields(self, op: "OpSpec") -> dict[str, Any]:
        """`ops list --json` fields of what the op declares (e.g. TensorFlow's "ops")."""
        return {}

    def doctor(self, info: Any, options: Any) -> dict[str, Any]:
        """`doctor --json` keys this framework reports (its name: the facts, or None)."""
        return {self.name: None if info is None else {"found": True}}

    def doctor_lines(self, report: dict) -> list[tuple[str, str]]:
        """(label, text) lines of `doctor` from the whole report."""
        return [(self.name, "found" if report.get(self.name) else "not found")]
