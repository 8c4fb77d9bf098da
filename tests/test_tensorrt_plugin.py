"""The addsub TensorRT plugin built for real (g++, nvcc, static cudart), checked by the C++
plugin check program and loaded into the real TensorRT lean runtime's plugin registry.

No GPU and no full TensorRT here: the check program plays TensorRT's part for everything but
enqueue, and the registry runs from tensorrt-lean-cu13 in subprocesses. Library paths come
from the `libraries` fixture; swap its body for `trtis-build ops build` to test the bundle."""

from __future__ import annotations

import importlib.util
import json
import re
import shutil
import sys
from pathlib import Path

import pytest

from trtis_build.core import process
from trtis_build.frameworks.tensorrt import config_header, headers, plugin_check, registry
from trtis_build.frameworks.tensorrt.names import PluginId
from trtis_build.ops.discover import load_op
from trtis_build.core.errors import CommandError

from .conftest import TRT10_ENV, needs_trt10
from .trt_build import build_autoload, build_plugin, cuda_home, nvcc_path

REPO = Path(__file__).resolve().parent.parent
ADDSUB = PluginId("TRTISExampleAddSub", "1", "trtis")
HEADERS = headers.find_tensorrt()
HAS_LEAN = any(importlib.util.find_spec(m) for m in ("tensorrt", "tensorrt_lean"))

pytestmark = [
    pytest.mark.compile, pytest.mark.tensorrt,
    pytest.mark.skipif(HEADERS is None, reason="no TensorRT headers (pip install --no-deps kernel-lens==2.0.1)"),
    pytest.mark.skipif(cuda_home() is None, reason="no CUDA headers (the TensorRT headers include them)"),
]
needs_nvcc = pytest.mark.skipif(nvcc_path() is None, reason="nvcc not found")
needs_registry = pytest.mark.skipif(not HAS_LEAN, reason="no TensorRT Python runtime (pip install tensorrt-lean-cu13)")

# Libraries a plugin library may need: the C and C++ runtimes only (static cudart inside).
ALLOWED_NEEDED = {"libc.so.6", "libstdc++.so.6", "libm.so.6", "libgcc_s.so.1", "libdl.so.2",
                  "libpthread.so.0", "librt.so.1", "ld-linux-x86-64.so.2", "ld-linux-aarch64.so.1"}
ALLOWED_VERSIONS = re.compile(r"^(GLIBC|GLIBCXX|CXXABI|GCC)_[0-9.]+$")
# Both entry points (loadLibrary refuses a library without setLoggerFinder), then a fault.
CRASHING_LIBRARY = """
#define EXPORT extern "C" __attribute__((visibility("default")))
EXPORT void* const* getCreators(int& n) { n = 1; return *(void* const* volatile*)8; }
EXPORT void setLoggerFinder(void*) {}
"""


@pytest.fixture(scope="module")
def addsub_op():
    return load_op(REPO / "ops" / "tensorrt" / "addsub", "tensorrt", root=REPO, default_namespace="trtis")


@pytest.fixture(scope="module")
def libraries(addsub_op, tmp_path_factory):
    """name -> plugin library. Built by hand with the build contract's flags (tests/trt_build.py)."""
    out = tmp_path_factory.mktemp("trt")
    libs = {"nocuda": build_plugin(addsub_op, out / "nocuda", HEADERS, cuda=False)}
    if nvcc_path() is not None:
        libs["addsub"] = build_plugin(addsub_op, out / "cuda", HEADERS)
        # The same sources under another namespace: what a second project's library looks like.
        libs["other_ns"] = build_plugin(addsub_op, out / "other", HEADERS,
                                        plugins=(PluginId("TRTISExampleAddSub", "1", "other"),))
        libs["copy"] = out / "copy" / "libaddsub.so"
        libs["copy"].parent.mkdir()
        shutil.copy(libs["addsub"], libs["copy"])
    return libs


@pytest.fixture(scope="module")
def check_program(tmp_path_factory):
    return plugin_check.build_check_program(cxx="g++", headers=HEADERS, cuda_include=cuda_home() / "include",
                                        out_dir=tmp_path_factory.mktemp("check"))


def dynamic_symbols(library: Path) -> tuple[set[str], list[tuple[str, str]]]:
    defined = process.capture(["nm", "-D", "--defined-only", str(library)], stage="test")
    undefined = process.capture(["nm", "-D", "--undefined-only", str(library)], stage="test")
    names = {line.split()[-1] for line in defined.splitlines() if line.strip()}
    needs = []  # (symbol, version); weak references ("w") have no version
    for line in undefined.splitlines():
        kind, symbol = line.split()[-2:]
        name, _, version = symbol.partition("@")
        needs.append((name, version.lstrip("@") if kind != "w" else "weak"))
    return names, needs


@pytest.mark.parametrize("which", ["addsub", "nocuda"])
def test_exports_and_nothing_undefined_beyond_the_c_runtimes(libraries, which):
    if which not in libraries:
        pytest.skip("nvcc not found")
    names, needs = dynamic_symbols(libraries[which])
    entry_points = {"getCreators", "setLoggerFinder", "trtis_plugin_check_inputs", "trtis_plugin_reference"}
    assert entry_points <= names
    # -fvisibility=hidden: besides the entry points only the kernel file's own extern "C" API
    # (trtis_addsub_*, exported on purpose for the harness) is visible, and no class of ours.
    # Template statics of libstdc++'s headers (std::__detail::...) keep default visibility.
    plain = {n for n in names if not n.startswith("_")}
    assert not {n for n in plain - entry_points if not n.startswith("trtis_addsub_")}
    demangled = process.capture(["c++filt", *sorted(n for n in names if n.startswith("_Z"))], stage="test")
    assert not [n for n in demangled.splitlines() if "std::" not in n and "__gnu_cxx::" not in n]
    bad = [(n, v) for n, v in needs if v != "weak" and not ALLOWED_VERSIONS.match(v)]
    assert not bad, f"undefined symbols outside libc/libstdc++/libgcc: {bad[:10]}"
    needed = re.findall(r"\(NEEDED\)\s+Shared library: \[(.+?)\]",
                        process.capture(["readelf", "-d", str(libraries[which])], stage="test"))
    assert set(needed) <= ALLOWED_NEEDED, needed


@pytest.mark.parametrize("which", ["addsub", "nocuda"])
def test_check_program_passes(libraries, check_program, which):
    if which not in libraries:
        pytest.skip("nvcc not found")
    result = plugin_check.run_plugin_check(check_program, [libraries[which]], expect=[ADDSUB])
    assert result.ok, result.failures
    assert result.plugins == [ADDSUB]
    [lib] = result.report["libraries"]
    assert lib["exports"] == {"getCreators": True, "setLoggerFinder": True, "trtis_plugin_check_inputs": True,
                              "trtis_plugin_reference": True}
    [plugin] = lib["plugins"]
    assert plugin["interface"] == "PLUGIN CREATOR_V3ONE 1.0"
    assert plugin["nb_outputs"] == 2
    assert plugin["outputs"] == [{"type": "float32", "shape": [2, 3, 257]}] * 2
    assert plugin["serialized_fields"] == 0 and plugin["workspace_bytes"] == 0
    assert not result.warnings


def test_check_program_compares_with_op_toml_both_ways(libraries, check_program):
    result = plugin_check.run_plugin_check(check_program, [libraries["nocuda"]],
                                       expect=[PluginId("TRTISExampleAddSub", "1", "elsewhere")])
    assert not result.ok
    text = "\n".join(result.failures)
    assert "elsewhere::TRTISExampleAddSub v1 is declared in op.toml but no library's getCreators returns it" in text
    assert "trtis::TRTISExampleAddSub v1 is returned by getCreators but not declared in op.toml" in text


@pytest.mark.parametrize("inputs, failure, logged", [
    ("float32[2,3];float32[2,4]", "getOutputShapes failed", "x and y must have one shape (dimension 1: 3 vs 4)"),
    ("int32[5];int32[5]", "getOutputDataTypes failed", "x and y must be float32"),
    ("float32[5]", "getOutputDataTypes failed", "expects 2 inputs and 2 outputs"),
])
def test_check_program_reports_what_the_plugin_refuses(libraries, check_program, inputs, failure, logged):
    result = plugin_check.run_plugin_check(check_program, [libraries["nocuda"]], extra_args=["--inputs", inputs])
    assert not result.ok and failure in "\n".join(result.failures)
    # The plugin's own message reached TensorRT's logger through setLoggerFinder.
    assert any(logged in line for line in result.report["log"]), result.report["log"]


def test_enqueue_without_a_gpu_fails_clearly_after_the_other_checks(libraries, check_program):
    result = plugin_check.run_plugin_check(check_program, [libraries["nocuda"]], enqueue=True)
    assert not result.ok
    assert any(f.startswith("--enqueue: needs a CUDA runtime and a GPU") for f in result.failures)
    assert result.plugins == [ADDSUB]  # the structural checks still ran


def test_check_program_crash_is_an_error_with_the_command(tmp_path, check_program):
    source = tmp_path / "crash.cc"
    source.write_text(CRASHING_LIBRARY)
    library = tmp_path / "libcrash.so"
    process.run(["g++", "-shared", "-fPIC", "-o", str(library), str(source)], stage="test")
    with pytest.raises(CommandError, match="died of signal 11") as error:
        plugin_check.run_plugin_check(check_program, [library])
    assert str(library) in error.value.command


# --- the real TensorRT registry (tensorrt-lean), each probe in its own interpreter -----------------

@needs_registry
@needs_nvcc
def test_registry_loads_the_library_and_finds_the_triple(libraries):
    probe = registry.probe_registry([libraries["addsub"]], lookups=[ADDSUB, PluginId(ADDSUB.name, "1", "")])
    assert probe.crash is None and probe.module in ("tensorrt", "tensorrt_lean")
    [load] = probe.libraries
    assert load.loaded and load.registered == (ADDSUB,) and load.refusal is None
    assert probe.found(ADDSUB)
    assert not probe.found(PluginId(ADDSUB.name, "1", ""))  # the namespace is part of the key


@needs_registry
@needs_nvcc
def test_one_plugin_name_in_two_namespaces_loads_side_by_side(libraries):
    other = PluginId(ADDSUB.name, "1", "other")
    probe = registry.probe_registry([libraries["addsub"], libraries["other_ns"]], lookups=[ADDSUB, other])
    assert [load.loaded for load in probe.libraries] == [True, True]
    assert [load.registered for load in probe.libraries] == [(ADDSUB,), (other,)]
    assert probe.found(ADDSUB) and probe.found(other)


@needs_registry
@needs_nvcc
def test_the_same_triple_twice_is_refused_with_tensorrts_reason(libraries):
    probe = registry.probe_registry([libraries["addsub"], libraries["copy"]], lookups=[ADDSUB])
    first, second = probe.libraries
    assert first.loaded and not second.loaded and second.registered == ()
    assert "plugin creator of TRTISExampleAddSub exists already" in second.refusal
    assert probe.found(ADDSUB)  # the first library's plugin is still there


@needs_registry
def test_a_library_without_getcreators_is_refused_not_a_crash(tmp_path, libraries):
    source = tmp_path / "empty.cc"
    source.write_text('extern "C" int unrelated() { return 0; }\n')
    library = tmp_path / "libempty.so"
    process.run(["g++", "-shared", "-fPIC", "-o", str(library), str(source)], stage="test")
    probe = registry.probe_registry([library, libraries["nocuda"]], lookups=[ADDSUB])
    empty, nocuda = probe.libraries
    assert not empty.loaded and "getCreators" in empty.refusal
    assert nocuda.loaded and probe.found(ADDSUB)  # a CPU-only build registers the same way


@needs_registry
def test_loadlibrary_refuses_a_library_without_setloggerfinder(tmp_path):
    # Why plugin_check fails a library that lacks it: TensorRT's loader looks both up first.
    source = tmp_path / "nofinder.cc"
    source.write_text('extern "C" __attribute__((visibility("default"))) void* const* getCreators(int& n)'
                      ' { n = 0; return nullptr; }\n')
    library = tmp_path / "libnofinder.so"
    process.run(["g++", "-shared", "-fPIC", "-o", str(library), str(source)], stage="test")
    [load] = registry.probe_registry([library]).libraries
    assert not load.loaded and "setLoggerFinder" in load.refusal


@needs_registry
def test_a_crash_inside_tensorrt_is_reported_with_the_library(tmp_path):
    source = tmp_path / "crash.cc"
    source.write_text(CRASHING_LIBRARY)
    library = tmp_path / "libcrash.so"
    process.run(["g++", "-shared", "-fPIC", "-o", str(library), str(source)], stage="test")
    probe = registry.probe_registry([library])
    assert probe.crash == f"the TensorRT registry probe died of signal 11 while loading {library}"


def test_report_is_json_with_a_header_version(libraries, check_program):
    completed = process.run([str(check_program), str(libraries["nocuda"])], stage="test", check=False)
    report = json.loads(completed.output.splitlines()[0])
    assert report["tensorrt_headers"] == HEADERS.version and report["ok"] is True


# --- Triton's plugins= and LD_PRELOAD only dlopen: the autoload shim ------------------------------

@needs_registry
@needs_nvcc
def test_plain_dlopen_registers_nothing(libraries):
    # What Triton's TensorRT backend does with plugins=: dlopen(RTLD_NOW | RTLD_LOCAL), no getCreators.
    probe = registry.probe_registry([libraries["addsub"]], lookups=[ADDSUB], dlopen=True)
    assert probe.libraries[0].loaded and probe.libraries[0].registered == () and not probe.found(ADDSUB)


@pytest.fixture(scope="module")
def autoload(libraries):
    if "addsub" not in libraries:
        pytest.skip("nvcc not found")
    return {"addsub": build_autoload(libraries["addsub"], HEADERS),
            "copy": build_autoload(libraries["copy"], HEADERS),
            "other_ns": build_autoload(libraries["other_ns"], HEADERS)}


@needs_trt10
def test_autoload_shim_registers_its_sibling_on_dlopen(autoload):
    other = PluginId(ADDSUB.name, "1", "other")
    probe = registry.probe_registry([autoload["addsub"], autoload["other_ns"]], lookups=[ADDSUB, other],
                                    dlopen=True, extra_env=TRT10_ENV)
    assert probe.version.startswith("10.") and probe.crash is None
    first, second = probe.libraries
    assert first.registered == (ADDSUB,) and second.registered == (other,)
    assert probe.found(ADDSUB) and probe.found(other)
    assert first.messages == (f"trtis-build autoload: registered the plugins of {autoload['addsub'].parent.parent}"
                              f"/libaddsub.so with libnvinfer_lean.so.10",)


@needs_trt10
def test_autoload_shim_reports_a_duplicate_triple(autoload):
    probe = registry.probe_registry([autoload["addsub"], autoload["copy"]], lookups=[ADDSUB], dlopen=True,
                                    extra_env=TRT10_ENV)
    first, second = probe.libraries
    assert first.registered == (ADDSUB,) and second.registered == ()
    assert "refused" in second.messages[0] and "same (name, version, namespace)" in second.messages[0]
    assert any("exists already" in e for e in second.errors)  # TensorRT's own reason, via the recorder


@needs_registry
def test_autoload_shim_refuses_another_tensorrt_major(autoload):
    probe = registry.probe_registry([autoload["addsub"]], lookups=[ADDSUB], dlopen=True)
    if probe.version.startswith("10."):
        pytest.skip("the default TensorRT runtime here is 10.x")
    [load] = probe.libraries
    assert probe.crash is None and load.registered == () and not probe.found(ADDSUB)
    assert "built against TensorRT 10 headers" in load.messages[0] and "--tensorrt-root" in load.messages[0]


def test_autoload_shim_without_tensorrt_says_how_to_load_instead(autoload):
    done = process.run([sys.executable, "-c", f"import ctypes; ctypes.CDLL({str(autoload['addsub'])!r})"],
                       stage="test")
    assert "no TensorRT library is loaded in this process" in done.output
    assert "IPluginRegistry::loadLibrary" in done.output
