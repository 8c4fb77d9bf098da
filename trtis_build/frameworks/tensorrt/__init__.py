"""TensorRT plugins: op.toml's [[plugins]] (name, version, namespace), the headers
(headers.py), the generated trtis_plugin_config.h (config_header.py), a real plugin
registry in a subprocess (registry.py), the autoload shims that make a plain dlopen register
(source: trtis_server's autoload/), and the C++ plugin check program (plugin_check.py)."""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from pathlib import Path

from ..base import Framework, field_error, read_string, reject_unknown
from . import registry
from .config_header import write_plugin_config
from .headers import find_tensorrt
from .names import PluginId
from .nvinfer_plugins import collides
from .registration import registration_mode
from .test_cases import read_cases

PLUGIN_KEYS = {"name", "version", "namespace", "tests"}
AUTOLOAD_SOURCE = Path(__import__("trtis_server").__file__).parent / "autoload" / "trtis_autoload.cc"
EXPORT_MAP = Path(__file__).with_name("exports.map")  # what plugin libraries export (tensorrt.cmake)


@dataclass(frozen=True)
class TensorRTInfo:
    include_dir: str
    version: str
    source: str

    @property
    def major(self) -> str:
        return self.version.split(".")[0]


def _valid(value: str) -> bool:
    return bool(value) and all(c.isalnum() or c in "_.-" for c in value) and value.isascii()


class TensorRT(Framework):
    name = "tensorrt"
    title = "TensorRT"
    name_kind = "TensorRT plugin"
    cmake_prefix = "trt"
    cmake_function = "trtis_tensorrt_plugin"
    op_keys = frozenset({"plugins", "namespace", "registration"})
    env_keys = ("TENSORRT_ROOT",)
    base_version_keys = ("org.trtis-build.base.tensorrt.version", "TENSORRT_VERSION", "TRT_VERSION")
    skew_parts = 1
    check_name = "plugin_check"
    adapter_patterns = (re.compile(r'^\s*#\s*include\s*[<"]Nv(Infer|Onnx)\w*\.h', re.M),
                        re.compile(r"\b(getCreators|REGISTER_TENSORRT_PLUGIN|getPluginRegistry)\b"),
                        re.compile(r'^\s*#\s*include\s*[<"]trtis_plugin_config\.h', re.M))

    # ops stage --------------------------------------------------------------------------
    def declare(self, data, op_toml, *, default_namespace):
        entries = data.get("plugins")
        if not isinstance(entries, list) or not entries or not all(isinstance(e, dict) for e in entries):
            raise field_error("missing or empty [[plugins]]: the TensorRT plugins this library registers",
                              op_toml, "plugins", hint='add [[plugins]] with name = "MyPlugin" and version = "1"')
        namespace = read_string(data, "namespace", op_toml, required=False,
                                default=default_namespace)
        plugins = []
        for index, entry in enumerate(entries):
            where = f"plugins[{index}]"
            reject_unknown(entry, PLUGIN_KEYS, op_toml, prefix=f"{where}.")
            name = read_string(entry, "name", op_toml, required=True)
            version = read_string(entry, "version", op_toml, required=False, default="1")
            plugin_namespace = read_string(entry, "namespace", op_toml, required=False, default=namespace)
            for label, value in (("name", name), ("version", version)):
                if not _valid(value):
                    raise field_error(f"plugin {label} {value!r} is not valid", op_toml, f"{where}.{label}",
                                      hint="use letters, digits, '_', '-' or '.'")
            if plugin_namespace and not _valid(plugin_namespace):
                raise field_error(f"plugin namespace {plugin_namespace!r} is not valid", op_toml, f"{where}.namespace")
            plugins.append(PluginId(name, version, plugin_namespace))
        if len(set(plugins)) != len(plugins):
            raise field_error("[[plugins]] lists one (name, version, namespace) twice", op_toml, "plugins")
        return tuple(plugins)

    def op_settings(self, data, op_toml, *, declared=(), adapter_sources=()):
        """How the library registers (registration.py) and the test cases of each plugin
        (test_cases.py), in declaration order."""
        entries = data.get("plugins", [])
        tests = tuple((plugin, cases) for index, (plugin, entry) in enumerate(zip(declared, entries))
                      if (cases := read_cases(entry, op_toml, f"plugins[{index}]")))
        return {"registration": registration_mode(data, op_toml, adapter_sources), "tests": tests}

    def bare_names(self, op):
        return {plugin.name for plugin in op.declared}

    def conflict_hint(self):
        return "each name must belong to one op: rename one of them or give it another namespace"

    def builtin_conflicts(self, op, info):
        # libnvinfer_plugin's names, in the namespace it registers them in ("").
        return sorted(str(plugin) for plugin in op.declared if collides(plugin.name, plugin.namespace))

    def builtin_hint(self, name):
        return ("TensorRT's plugin library (libnvinfer_plugin, which Triton loads in every server) registers it in "
                "namespace \"\": give the op a namespace (namespace = \"myteam\" in op.toml) or rename the plugin")

    def scaffold_names(self, registered):
        if not _valid(registered):
            from ...core.errors import ScaffoldError

            raise ScaffoldError(f"plugin name {registered!r} is not valid", hint="use letters, digits, '_', '-' or '.'")
        return {"{{PLUGIN_NAME}}": registered, "{{OP_NAME}}": registered}

    # builder ----------------------------------------------------------------------------
    def locate(self, env, python, options):
        root = getattr(options, "tensorrt_root", None)
        located = {"tensorrt_root": str(root) if root else None}
        if root is None:
            import importlib.util

            spec = importlib.util.find_spec("kernel_lens")
            located["kernel_lens"] = spec.origin if spec else None
        return located

    def detect(self, located, python, options):
        root = located.get("tensorrt_root")
        found = find_tensorrt(Path(root) if root else None)
        if found is None:
            return None
        return TensorRTInfo(include_dir=str(found.include_dir), version=found.version, source=found.source)

    def missing(self):
        return ("TensorRT headers not found: pass --tensorrt-root DIR or set TENSORRT_ROOT "
                "(for CI: pip install --no-deps kernel-lens==2.0.1); TensorRT plugins are skipped")

    def info_to_json(self, info):
        return asdict(info)

    def info_from_json(self, data):
        return TensorRTInfo(**data)

    def manifest_toolchain(self, info):
        return {"version": info.version, "source": info.source}

    def skip_reason(self, op, toolchain, options):
        if toolchain.framework(self.name) is None:
            return "TensorRT headers not found (--tensorrt-root DIR or TENSORRT_ROOT)"
        if toolchain.cuda is None:
            return "TensorRT headers need the CUDA runtime headers (install the CUDA toolkit or set CUDA_HOME)"
        python_path = getattr(options, "tensorrt_python_path", None)
        if python_path:
            registry.runtime_env(python_path)  # a bad setting is an error, before compiling
        elif not registry.has_runtime():
            return ("no TensorRT Python runtime to check the plugins in a real registry before publishing "
                    "(pip install 'trtis-build[trt]', or --tensorrt-python-path DIR)")
        return None

    def cmake_variables(self, info, toolchain, build_dir):
        return {"TRTIS_TRT_INCLUDE_DIR": info.include_dir, "TRTIS_AUTOLOAD_SOURCE": str(AUTOLOAD_SOURCE)}

    def failure_hint(self, log, undefined):
        if any(symbol.startswith("getPluginRegistry") for symbol in undefined):
            return ("the code calls TensorRT's global registry (getPluginRegistry), which a plugin library loaded "
                    "with loadLibrary does not link: register with REGISTER_TENSORRT_PLUGIN (trtis-build collects "
                    "those into a generated getCreators) or return the creators from getCreators")
        if re.search(r"kernels/tensorrt-\w+\.so", log) and undefined:
            return ("the op's kernels call code of its plugin sources, so they cannot form a framework-free kernel "
                    "library: set kernel_library = false in op.toml")
        if any(re.match(r"cuda[A-Z]", symbol) for symbol in undefined):
            return ("the plugin calls the CUDA runtime, which a --no-cuda build leaves out with the CUDA sources: "
                    "build with CUDA, or guard those calls with #if TRTIS_WITH_CUDA")
        return None

    def target_arguments(self, op, build_dir, cuda_enabled):
        return {"CONFIG_HEADER_DIR": [str(build_dir / "generated" / self.name / op.name)],
                "REGISTRATION": [op.settings["registration"]]}

    def extra_outputs(self, op):
        # The shim that registers the plugin library when merely dlopened (Triton's plugins=).
        return {"autoload": f"tensorrt/autoload/lib{op.name}.so"}

    def prepare(self, ops, toolchain, build_dir):
        for op in ops:
            write_plugin_config(build_dir / "generated" / self.name / op.name, op.name, op.declared,
                                where=str(op.op_toml))

    # bundle stage -----------------------------------------------------------------------
    def probe(self, info, paths, options, early=None):
        """Each plugin library loaded alone into a real TensorRT plugin registry (the lean
        runtime is enough), in a subprocess."""
        env = registry.runtime_env(getattr(options, "tensorrt_python_path", None))
        results = {}
        for path in paths:
            probed = registry.probe_registry([path], extra_env=env)
            if probed.crash:
                results[str(path)] = {"error": probed.crash}
                continue
            [load] = probed.libraries
            if not load.loaded:
                results[str(path)] = {"error": load.refusal}
                continue
            plugins = [p.as_dict() for p in load.registered]
            results[str(path)] = {"registered": [str(p) for p in load.registered],
                                  "entry": {"ops": [], "devices": {}, "outputs": {}, "plugins": plugins}}
        return results

    def load_error_hint(self, error):
        if "getCreators" in error or "SymbolAddress" in error:
            return ("define getCreators (and setLoggerFinder) as extern \"C\" functions: the library exports them "
                    "by name (an export map), and a C++ name or a missing definition leaves TensorRT nothing to "
                    "call; the previous bundle was kept")
        return ("a plugin library must export getCreators and register nothing statically; "
                "the previous bundle was kept")

    def verify_extras(self, targets, built_dir, results, context):
        from .autoload import verify_autoload

        return verify_autoload(self, targets, built_dir, results, context)

    # testing and ops check --------------------------------------------------------------
    def test_without_python(self, options, toolchain, bundle, target, op, *, gpu=False):
        """A plugin op without a Python test: the C++ plugin check is its test."""
        import json

        from .plugin_check import check_libraries, summarize

        log = options.build_dir / f"test-{op.framework}-{op.name}.log"
        checked = check_libraries(options, toolchain, [bundle / target.library], list(op.declared),
                                  cases=op.settings["tests"], enqueue=gpu)
        log.write_text(json.dumps(checked, indent=2) + "\n")
        status, summary = summarize(checked)
        return {"passed": status in ("PASS", "PARTIAL"), "status": status, "summary": summary, "log": str(log)}

    def library_fields(self, op, entry):
        # The op's test cases travel with the bundle, so `ops check` runs them wherever it is.
        tests = [{"plugin": plugin.as_dict(), "cases": [case.as_dict() for case in cases]}
                 for plugin, cases in op.settings["tests"]]
        return {"registration": op.settings["registration"], **({"plugin_tests": tests} if tests else {})}

    def check_bundle(self, options, toolchain, bundle, libraries):
        from .plugin_check import check_libraries
        from .test_cases import PluginTestCase

        if not libraries:
            return None
        expect = [PluginId.from_dict(p) for lib in libraries for p in lib["plugins"]]
        cases = [(PluginId.from_dict(test["plugin"]), [PluginTestCase.from_dict(case) for case in test["cases"]])
                 for lib in libraries for test in lib.get("plugin_tests", [])]
        return check_libraries(options, toolchain, [bundle / lib["path"] for lib in libraries], expect, cases=cases)

    # image ------------------------------------------------------------------------------
    def image_labels(self, libraries):
        return {"tensorrt.plugins": ",".join(sorted(
            f"{p.get('namespace', '')}::{p['name']}/{p.get('version', '')}"
            for lib in libraries for p in lib.get("plugins", [])))}

    def image_warnings(self, libraries, bundle_dir):
        from trtis_server.manifest import autoload_entry

        return [f"{lib['path']} has no autoload shim (tensorrt/autoload/): Triton's plugins= and LD_PRELOAD "
                "only dlopen it, and a getCreators-only library registers nothing that way"
                for lib in libraries if not autoload_entry(lib, bundle_dir)]

    # ops list and doctor -----------------------------------------------------------------
    def list_fields(self, op):
        return {"plugins": [plugin.as_dict() for plugin in op.declared], "registration": op.settings["registration"],
                "plugin_tests": {str(plugin): len(cases) for plugin, cases in op.settings["tests"]}}

    def doctor(self, info, options):
        """The headers, and the TensorRT Python runtime the bundle's registry checks use:
        only one of the headers' major checks the autoload shims for registration."""
        python_path = getattr(options, "tensorrt_python_path", None)
        version = registry.runtime_version(python_path)
        runtime = None
        if version is not None or python_path is not None:
            runtime = {"version": version, "python_path": str(python_path or "") or None,
                       "checks_autoload_registration": bool(version and info and version.split(".")[0] == info.major)}
        return {"tensorrt": asdict(info) if info else None, "tensorrt_runtime": runtime}

    def doctor_lines(self, report):
        trt, runtime = report.get("tensorrt"), report.get("tensorrt_runtime")
        lines = [("tensorrt", f"{trt['version']} headers ({trt['include_dir']}, from {trt['source']})"
                  if trt else "not found")]
        if runtime:
            where = f" from {runtime['python_path']}" if runtime["python_path"] else ""
            lines.append(("", f"runtime for the registry checks: {runtime['version'] or 'none found'}{where}"))
            if trt and not runtime["checks_autoload_registration"]:
                lines.append(("", "autoload shims: loaded but not checked for registration (needs a TensorRT "
                                  f"{trt['version'].split('.')[0]} runtime: --tensorrt-python-path DIR)"))
        elif trt:
            lines.append(("", "runtime for the registry checks: none (pip install 'trtis-build[trt]')"))
        return lines

