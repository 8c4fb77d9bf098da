"""Unit tests of the plan (pure function of ops + toolchain) and the name rules."""

import dataclasses
import shutil
from pathlib import Path

import pytest

from trtis_build.ops.discover import discover
from trtis_build.core.errors import NameConflictError
from trtis_build.ops.names import check_declared, compare_registered
from trtis_build.builder.plan import make_plan
from trtis_build.builder.toolchain import CudaInfo, Tool, Toolchain
from trtis_build.frameworks.tensorflow import TensorFlowInfo
from trtis_build.frameworks.tensorrt import TensorRTInfo, registry

from .conftest import EXAMPLE_TF, REPO, make_project
from .test_discover import write_op

pytestmark = pytest.mark.usefixtures("pure")

CUDA = CudaInfo(nvcc="/cuda/bin/nvcc", version="13.0", root="/cuda", include_dir="/cuda/include",
                cudart_static="/cuda/lib64/libcudart_static.a",
                sass_archs=("75", "80", "86", "87", "88", "89", "90", "100", "103", "110", "120", "121"))
TF = TensorFlowInfo(python="/py", version="2.21.0", include_dir="/tf/include", lib_dir="/tf",
                    framework_lib="libtensorflow_framework.so.2", cxx11_abi=1,
                    compile_flags=("-I/tf/include", "-D_GLIBCXX_USE_CXX11_ABI=1", "--std=c++17",
                                   "-DEIGEN_MAX_ALIGN_BYTES=64"),
                    builtin_ops=frozenset({"Add", "Sub"}))


def toolchain(cuda=CUDA, tf=TF):
    return Toolchain(python="/py", cxx=Tool("/usr/bin/g++", "12.2.0"), cmake=Tool("/usr/bin/cmake", "3.25.1"),
                     ninja=Tool("/usr/bin/ninja", "1.11.1"), cuda=cuda, frameworks={"tensorflow": tf, "tensorrt": None})


def test_default_archs_cover_sm75_to_newest_one_per_major():
    assert toolchain().default_cuda_archs() == ("75", "80", "90", "100", "110", "120")


def test_plan_for_the_example(tmp_path):
    ops = discover(make_project(tmp_path, EXAMPLE_TF))
    plan = make_plan(ops, toolchain(), output_dir=Path("/out"))
    [target] = plan.targets
    assert target.library == "tensorflow/libaddsub.so"
    assert target.harness == "kernels/tensorflow-addsub.so"
    assert plan.ptx_arch == "120"
    assert "--generate-code=arch=compute_75,code=sm_75" in plan.nvcc_flags
    assert "--generate-code=arch=compute_120,code=compute_120" in plan.nvcc_flags
    text = plan.cmake_text()
    assert "trtis_tensorflow_op(addsub" in text
    assert "[==[_GLIBCXX_USE_CXX11_ABI=1]==]" in text
    assert str(EXAMPLE_TF.name) in text


def test_cuda_arch_override_and_no_cuda(tmp_path):
    ops = discover(make_project(tmp_path, EXAMPLE_TF))
    plan = make_plan(ops, toolchain(), output_dir=Path("/out"), cuda_archs=("90", "80"))
    assert plan.cuda_archs == ("80", "90") and plan.ptx_arch == "90"
    cpu = make_plan(ops, toolchain(), output_dir=Path("/out"), no_cuda=True)
    assert not cpu.cuda_enabled and cpu.targets[0].harness is None
    assert "TRTIS_NVCC" not in cpu.variables
    no_nvcc = make_plan(ops, toolchain(cuda=None), output_dir=Path("/out"))
    assert not no_nvcc.cuda_enabled and no_nvcc.variables["TRTIS_CUDA_ENABLED"] == "OFF"


def test_ops_of_a_missing_framework_are_skipped_with_a_reason(tmp_path):
    ops = discover(make_project(tmp_path, EXAMPLE_TF))
    plan = make_plan(ops, toolchain(tf=None), output_dir=Path("/out"))
    assert plan.targets == ()
    assert plan.skipped == (("tensorflow/addsub", "TensorFlow not found (pip install 'trtis-build[tf]')"),)


def test_tensorrt_ops_without_headers_are_skipped_and_tensorflow_ops_still_build(tmp_path):
    root = make_project(tmp_path, EXAMPLE_TF)
    shutil.copytree(REPO / "ops" / "tensorrt" / "addsub", root / "ops" / "tensorrt" / "addsub")
    plan = make_plan(discover(root, default_namespace="trtis"), toolchain(), output_dir=Path("/out"))
    assert [t.key for t in plan.targets] == ["tensorflow/addsub"]
    [(key, reason)] = plan.skipped
    assert key == "tensorrt/addsub" and "--tensorrt-root" in reason and "TENSORRT_ROOT" in reason
    assert "TRTIS_AUTOLOAD_SOURCE" not in plan.variables


def test_a_tensorrt_op_gets_a_plugin_library_and_an_autoload_shim(tmp_path):
    root = make_project(tmp_path, EXAMPLE_TF)
    shutil.copytree(REPO / "ops" / "tensorrt" / "addsub", root / "ops" / "tensorrt" / "addsub")
    trt = TensorRTInfo(include_dir="/trt/include", version="10.14.1", source="test")
    tc = dataclasses.replace(toolchain(), frameworks={"tensorflow": TF, "tensorrt": trt})
    plan = make_plan(discover(root, default_namespace="trtis"), tc, output_dir=Path("/out"))
    [target] = [t for t in plan.targets if t.framework == "tensorrt"]
    assert target.library == "tensorrt/libaddsub.so"
    assert target.extras == {"autoload": "tensorrt/autoload/libaddsub.so"}
    assert Path(plan.variables["TRTIS_AUTOLOAD_SOURCE"]).is_file()
    assert "trtis_tensorrt_plugin(addsub" in plan.cmake_text()


def test_tensorrt_ops_without_a_runtime_to_check_them_are_skipped(tmp_path, monkeypatch):
    root = make_project(tmp_path, EXAMPLE_TF)
    shutil.copytree(REPO / "ops" / "tensorrt" / "addsub", root / "ops" / "tensorrt" / "addsub")
    trt = TensorRTInfo(include_dir="/trt/include", version="10.14.1", source="test")
    tc = dataclasses.replace(toolchain(), frameworks={"tensorflow": TF, "tensorrt": trt})
    # This machine has a runtime: stand in for one that has none (nothing else is faked).
    monkeypatch.setattr(registry, "has_runtime", lambda python_path=None: False)
    plan = make_plan(discover(root, default_namespace="trtis"), tc, output_dir=Path("/out"))
    assert [t.key for t in plan.targets] == ["tensorflow/addsub"]
    [(key, reason)] = plan.skipped
    assert key == "tensorrt/addsub" and "pip install 'trtis-build[trt]'" in reason


def test_paths_with_spaces_survive_the_cmake_file(tmp_path):
    root = tmp_path / "my project"
    ops = discover(make_project(root, EXAMPLE_TF))
    text = make_plan(ops, toolchain(), output_dir=root / "out dir").cmake_text()
    assert f"[==[{root / 'out dir'}]==]" in text


def test_one_tf_name_declared_by_two_ops_names_both_files(tmp_path):
    write_op(tmp_path, "one", 'version = "1"\nops = ["Same"]\n')
    write_op(tmp_path, "two", 'version = "1"\nops = ["Same"]\n')
    with pytest.raises(NameConflictError) as info:
        check_declared(discover(tmp_path))
    assert "ops/tensorflow/one/op.toml" in info.value.where
    assert "ops/tensorflow/two/op.toml" in info.value.where


def test_builtin_op_names_are_refused(tmp_path):
    write_op(tmp_path, "one", 'version = "1"\nops = ["Add"]\n')
    with pytest.raises(NameConflictError, match="built-ins"):
        check_declared(discover(tmp_path), {"tensorflow": TF})


def test_same_plugin_triple_twice_is_refused_but_namespaces_separate(tmp_path):
    plugin = 'version = "1"\n[[plugins]]\nname = "P"\nnamespace = "{ns}"\n'
    write_op(tmp_path, "a", plugin.format(ns="x"), files=("a.cc",), framework="tensorrt")
    write_op(tmp_path, "b", plugin.format(ns="y"), files=("b.cc",), framework="tensorrt")
    check_declared(discover(tmp_path))  # two namespaces: fine
    write_op(tmp_path, "c", plugin.format(ns="x"), files=("c.cc",), framework="tensorrt")
    with pytest.raises(NameConflictError, match="x::P v1"):
        check_declared(discover(tmp_path))


def test_registered_names_must_equal_declared(tmp_path):
    write_op(tmp_path, "one", 'version = "1"\nops = ["Declared"]\n')
    [op] = discover(tmp_path)
    compare_registered(op, ["Declared"], "lib.so")
    with pytest.raises(NameConflictError) as info:
        compare_registered(op, ["Declared", "Extra"], "lib.so")
    assert "registered but not declared: Extra" in info.value.message


def test_error_summary_keeps_link_errors_and_drops_warnings():
    """A link error has no file:line: it must still reach the summary, and another op's
    warnings must not stand in for it."""
    from trtis_build.builder.driver import diagnostics

    log = "\n".join([
        "other_op.cc:12:5: warning: unused variable 'x' [-Wunused-variable]",
        "/usr/bin/ld: CMakeFiles/a.dir/a.cc.o: in function `f()':",
        "a.cc:(.text+0x13a2): undefined reference to `nvinfer1::plugin::reportAssertion(char const*)'",
        "collect2: error: ld returned 1 exit status",
        "b.cc:3:1: error: expected ';' before '}' token",
    ])
    found = diagnostics(log)
    assert any("undefined reference to `nvinfer1::plugin::reportAssertion" in line for line in found)
    assert "b.cc:3:1: error: expected ';' before '}' token" in found
    assert not any("warning" in line for line in found)
    assert diagnostics("nvlink error   : Undefined reference to '_Z3fooi' in 'k.o'")  # nvlink's spelling
    # lld's and mold's spelling, with the source that referenced the symbol.
    lld = ["ld.lld: error: undefined symbol: launchClamp(float const*, float*, long)",
           ">>> referenced by gpu_clamp.cpp:41 (ops/tensorrt/gpu_clamp/gpu_clamp.cpp:41)",
           "mold: error: undefined symbol: PyLong_FromLong"]
    assert diagnostics("\n".join(lld)) == lld
    # The paragraph shows those, not the last lines of output (another job's warnings).
    from trtis_build.core.errors import BuildError

    text = BuildError("the build failed", diagnostics=found, stage="compile", command=["ninja"], returncode=1,
                      output_tail="other_op.cc:12:5: warning: unused variable 'x'", hint="fix the errors above").render()
    assert "warning" not in text and text.index("compiler errors:") < text.index("undefined reference") < text.index(
        "fix:")


def test_a_name_registered_twice_in_one_library_gets_its_own_fix():
    from trtis_build.frameworks.tensorflow import TensorFlow

    hint = TensorFlow().load_error_hint("Op with name Twice")
    assert "Twice is registered twice" in hint and "REGISTER_OP" in hint
    assert "undefined symbol" in TensorFlow().load_error_hint("undefined symbol: _ZN3foo")


def _shared_kernel_project(tmp_path):
    root = make_project(tmp_path, EXAMPLE_TF)
    shutil.copytree(REPO / "ops" / "tensorrt" / "addsub", root / "ops" / "tensorrt" / "addsub")
    trt = TensorRTInfo(include_dir="/trt/include", version="10.14.1", source="test")
    return root, dataclasses.replace(toolchain(), frameworks={"tensorflow": TF, "tensorrt": trt})


def test_kernels_listed_by_two_ops_are_compiled_once_by_the_op_that_holds_them(tmp_path):
    root, tc = _shared_kernel_project(tmp_path)
    plan = make_plan(discover(root, default_namespace="trtis"), tc, output_dir=Path("/out"))
    by_key = {t.key: t for t in plan.targets}
    assert "KERNELS_FROM" not in by_key["tensorflow/addsub"].sources
    assert by_key["tensorrt/addsub"].sources["KERNELS_FROM"] == ["tf_addsub"]
    text = plan.cmake_text()
    # The op that compiles them is defined first: CMake reads its objects when the other comes.
    assert text.index("trtis_tensorflow_op(addsub") < text.index("trtis_tensorrt_plugin(addsub")
    assert "KERNELS_FROM [==[tf_addsub]==]" in text
    # Both libraries still get their kernel library.
    assert by_key["tensorrt/addsub"].harness == "kernels/tensorrt-addsub.so"


def test_kernels_are_compiled_again_where_flags_differ_or_their_op_is_not_built(tmp_path):
    root, tc = _shared_kernel_project(tmp_path)
    op_toml = root / "ops" / "tensorrt" / "addsub" / "op.toml"
    alone = make_plan(discover(root, default_namespace="trtis"), tc, output_dir=Path("/out"),
                      frameworks=("tensorrt",))
    assert [t.key for t in alone.targets] == ["tensorrt/addsub"]
    assert "KERNELS_FROM" not in alone.targets[0].sources
    original = op_toml.read_text()
    op_toml.write_text(original.replace('version = "1.0.0"', 'version = "1.0.0"\ncuda_flags = ["-DFAST=1"]'))
    flagged = make_plan(discover(root, default_namespace="trtis"), tc, output_dir=Path("/out"))
    assert all("KERNELS_FROM" not in t.sources for t in flagged.targets)
    # Kernels without their kernel library (as where they include a framework's headers) stay apart.
    op_toml.write_text(original.replace('version = "1.0.0"', 'version = "1.0.0"\nkernel_library = false'))
    apart = make_plan(discover(root, default_namespace="trtis"), tc, output_dir=Path("/out"))
    assert all("KERNELS_FROM" not in t.sources for t in apart.targets)


def test_undefined_symbols_and_the_frameworks_hints_read_every_linker():
    from trtis_build.builder.link_errors import undefined_symbols
    from trtis_build.frameworks.tensorrt import TensorRT
    from trtis_build.frameworks.torch import Torch

    gnu = "a.cc:(.text+0x1a): undefined reference to `cudaGetDevice'\ncollect2: error: ld returned 1 exit status"
    gold = "a.cc:12: error: undefined reference to 'PyLong_FromLong'"
    lld = "ld.lld: error: undefined symbol: cudaGetDevice\n>>> referenced by a.cc:12\n" \
          "ld.lld: error: undefined symbol: getPluginRegistry\nld.lld: error: undefined symbol: cudaGetDevice"
    assert undefined_symbols(gnu) == ["cudaGetDevice"]
    assert undefined_symbols(gold) == ["PyLong_FromLong"]
    assert undefined_symbols(lld) == ["cudaGetDevice", "getPluginRegistry"]
    assert undefined_symbols("a.cc:3:1: error: expected ';'") == []
    for log in (gnu, "mold: error: undefined symbol: cudaMalloc"):
        assert "a --no-cuda build leaves out" in TensorRT().failure_hint(log, undefined_symbols(log))
    assert "REGISTER_TENSORRT_PLUGIN" in TensorRT().failure_hint(lld, undefined_symbols(lld))
    for log in (gold, "ld.lld: error: undefined symbol: pybind11::detail::get_type_info(std::type_index const&)"):
        assert "python = true" in Torch().failure_hint(log, undefined_symbols(log))
    assert Torch().failure_hint(gnu, undefined_symbols(gnu)) is None
