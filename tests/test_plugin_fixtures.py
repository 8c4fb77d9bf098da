"""Existing TensorRT plugin code (tests/data/plugins, fixtures written here in the styles
users bring): a plugin that registers statically, a plugin whose creation needs a GPU and
whose kernel calls helpers of a sibling common/ folder; op.toml test cases; TensorRT's own
plugin names; how a plugin library registers."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import trtis
from trtis_build.core.errors import NameConflictError, OpSpecError
from trtis_build.frameworks.tensorrt.registration import registration_mode
from trtis_build.frameworks.tensorrt.test_cases import PluginTestCase, cases_file_text, read_cases
from trtis_build.frameworks.tensorrt.names import PluginId
from trtis_build.ops.discover import discover, load_op
from trtis_build.ops.names import check_declared

FIXTURES = Path(__file__).resolve().parent / "data" / "plugins"
ROOT = Path(__file__).resolve().parent.parent


def _has_gpu() -> bool:
    return shutil.which("nvidia-smi") is not None and subprocess.run(
        ["nvidia-smi", "-L"], capture_output=True).returncode == 0


@pytest.fixture
def project(tmp_path):
    shutil.copytree(FIXTURES / "ops", tmp_path / "ops")
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    return tmp_path


@pytest.mark.compile
@pytest.mark.tensorrt
def test_existing_plugin_code_builds_checks_and_tests_with_its_op_toml_alone(project):
    """Static registration, a sibling common/ folder and a GPU-only creation, with op.toml's
    relative paths only; the test cases run; a GPU-needing plugin reads SKIP, never PASS."""
    listed = {op["name"]: op for op in json.loads(trtis("ops", "list", "--json", cwd=project).stdout)}
    assert set(listed) == {"gpu_clamp", "static_scale"}  # common/ is shared code, not an op
    clamp = listed["gpu_clamp"]
    # The kernel includes common/checks.h, which includes TensorRT: no framework-free kernel library.
    assert clamp["kernel_library"] is False and clamp["cuda_sources"] == ["ops/tensorrt/gpu_clamp/clampKernel.cu"]
    assert "ops/tensorrt/common/checks.cpp" in clamp["sources"]
    assert listed["static_scale"]["registration"] == "static" and clamp["registration"] == "getCreators"
    assert listed["static_scale"]["plugin_tests"] == {"StaticScale v1": 2}

    built = json.loads(trtis("ops", "build", "--cuda-arch", "90", "--json", cwd=project).stdout)
    libraries = {lib["op"]: lib for lib in built["manifest"]["libraries"]}
    assert libraries["static_scale"]["registration"] == "static"
    assert libraries["gpu_clamp"]["registration"] == "getCreators"
    assert [t["plugin"]["name"] for t in libraries["static_scale"]["plugin_tests"]] == ["StaticScale"]
    static_lib = project / "build" / "bundle" / libraries["static_scale"]["path"]
    symbols = subprocess.run(["nm", "-D", "--defined-only", str(static_lib)], capture_output=True, text=True,
                             check=True).stdout
    assert " T getCreators" in symbols and "getPluginRegistry" not in symbols

    tested = trtis("ops", "test", "--cuda-arch", "90", "--json", cwd=project, check=False)
    report = json.loads(tested.stdout)
    static = report["ops"]["tensorrt/static_scale"]
    assert static["status"] == "PASS" and "2 op.toml test case(s)" in static["summary"], static
    clamp_result = report["ops"]["tensorrt/gpu_clamp"]
    if _has_gpu():
        assert clamp_result["status"] == "PASS", clamp_result
    else:
        assert clamp_result["status"] == "SKIP" and not clamp_result["passed"], clamp_result
        assert "creation needs a GPU" in clamp_result["summary"] and "fixture::GpuClamp v1" in clamp_result["summary"]
        assert tested.returncode != 0  # nothing was checked for it: not a pass
        # --gpu where there is none: said before anything is built or run.
        asked = trtis("ops", "test", "--gpu", cwd=project, check=False)
        assert asked.returncode != 0 and "cannot run GPU checks" in asked.stderr
        assert "building ops" not in asked.stderr

    checked = trtis("ops", "check", cwd=project, check=False)
    assert checked.returncode == 0, checked.stderr
    assert "plugin check: ok" in checked.stderr and "{" not in checked.stderr  # lines, not a raw dict
    if not _has_gpu():
        assert "needs a GPU, not checked here" in checked.stderr and "GpuClamp" in checked.stderr

    # A test case that disagrees with the plugin fails, naming the case and both shapes.
    op_toml = project / "ops" / "tensorrt" / "static_scale" / "op.toml"
    op_toml.write_text(op_toml.read_text().replace('outputs = ["float32[4,5]"]', 'outputs = ["float32[4,6]"]'))
    failed = json.loads(trtis("ops", "test", "--cuda-arch", "90", "--json", cwd=project, check=False).stdout)
    summary = failed["ops"]["tensorrt/static_scale"]["summary"]
    assert failed["ops"]["tensorrt/static_scale"]["status"] == "FAIL"
    assert "(test case 1): output 0 is float32[4,5], op.toml expects float32[4,6]" in summary
    op_toml.write_text(op_toml.read_text().replace("scale = 3.0", "scale = 3.0, bias = 1"))
    failed = json.loads(trtis("ops", "test", "--cuda-arch", "90", "--json", cwd=project, check=False).stdout)
    assert ("op.toml gives field 'bias', which the creator does not declare (its fields: scale)"
            in failed["ops"]["tensorrt/static_scale"]["summary"])
    # Without a test case the plugin is only created, cloned and serialized: PARTIAL, not PASS.
    op_toml.write_text(op_toml.read_text().split("[[plugins.tests]]")[0])
    partial = json.loads(trtis("ops", "test", "--cuda-arch", "90", "--json", cwd=project, check=False).stdout)
    entry = partial["ops"]["tensorrt/static_scale"]
    assert entry["status"] == "PARTIAL" and entry["passed"] and "1 without a test case" in entry["summary"], entry


def _op(tmp_path: Path, sources: dict[str, str], toml: str = "") -> Path:
    directory = tmp_path / "ops" / "tensorrt" / "p"
    directory.mkdir(parents=True)
    for name, text in sources.items():
        (directory / name).parent.mkdir(parents=True, exist_ok=True)
        (directory / name).write_text(text)
    (directory / "op.toml").write_text(f'version = "1"\n{toml}[[plugins]]\nname = "P"\n')
    return directory


STATIC = '#include <NvInferRuntime.h>\nREGISTER_TENSORRT_PLUGIN(PCreator);\n'
DYNAMIC = ('#include <NvInferRuntime.h>\n'
           'extern "C" nvinfer1::IPluginCreatorInterface* const* getCreators(int32_t& n) { n = 0; return nullptr; }\n')


def test_how_a_library_registers_is_read_from_its_sources_and_contradictions_are_refused(tmp_path):
    op_toml = tmp_path / "op.toml"
    static, dynamic = tmp_path / "s.cc", tmp_path / "d.cc"
    static.write_text(STATIC + "// getCreators() { in a comment }\n")
    dynamic.write_text(DYNAMIC + "/* REGISTER_TENSORRT_PLUGIN(X) in a comment */\n")
    assert registration_mode({}, op_toml, [static]) == "static"
    assert registration_mode({}, op_toml, [dynamic]) == "getCreators"
    with pytest.raises(OpSpecError, match="registers its plugins two ways") as both:
        registration_mode({}, op_toml, [static, dynamic])
    assert "s.cc" in str(both.value) and "d.cc" in str(both.value)
    with pytest.raises(OpSpecError, match="needs TensorRT's global registry"):
        registration_mode({"registration": "getCreators"}, op_toml, [static])
    with pytest.raises(OpSpecError, match="no adapter source uses REGISTER_TENSORRT_PLUGIN"):
        registration_mode({"registration": "static"}, op_toml, [dynamic])
    with pytest.raises(OpSpecError, match="'registration' is 'auto'"):
        registration_mode({"registration": "auto"}, op_toml, [dynamic])


def test_op_toml_test_cases_are_validated_and_written_for_the_check_program(tmp_path):
    op_toml = tmp_path / "op.toml"
    entry = {"tests": [{"inputs": ["float32[2, 3]", "int32[]"], "fields": {"scale": 2.5, "axes": [0, 1],
                                                                          "mode": "fast"},
                        "outputs": ["float32[2,3]"]}]}
    [case] = read_cases(entry, op_toml, "plugins[0]")
    assert case.inputs == ("float32[2,3]", "int32[]") and case.fields == (
        ("scale", ("2.5",)), ("axes", ("0", "1")), ("mode", ("fast",)))
    text = cases_file_text([(PluginId("P", "1", "ns"), [case])])
    assert text.splitlines() == ["case\tP\t1\tns", "inputs\tfloat32[2,3];int32[]", "field\tscale\t2.5",
                                 "field\taxes\t0\t1", "field\tmode\tfast", "outputs\tfloat32[2,3]", "end"]
    assert PluginTestCase.from_dict(case.as_dict()) == case
    for bad, message in (({"inputs": ["float33[2]"]}, "not TYPE"), ({"inputs": []}, "non-empty list"),
                         ({"inputs": ["float32[2]"], "fields": {"on": True}}, "boolean"),
                         ({"inputs": ["float32[2]"], "fields": {"s": "a\tb"}}, "tab"),
                         ({"inputs": ["float32[2]"], "shapes": []}, "unknown key 'plugins\\[0\\].tests\\[0\\].shapes'")):
        with pytest.raises(OpSpecError, match=message):
            read_cases({"tests": [bad]}, op_toml, "plugins[0]")
    with pytest.raises(OpSpecError, match="not named lists of strings"):
        PluginTestCase.from_dict({"inputs": ["float32[2]"], "fields": {"x": "1\n"}})


def test_tensorrts_own_plugin_names_are_refused_in_the_empty_namespace(tmp_path):
    directory = _op(tmp_path, {"p.cc": DYNAMIC}, 'namespace = ""\n')
    (directory / "op.toml").write_text(
        'version = "1"\nnamespace = ""\n[[plugins]]\nname = "EfficientNMS_TRT"\nversion = "1"\n')
    op = load_op(directory, "tensorrt", root=tmp_path)
    with pytest.raises(NameConflictError, match="EfficientNMS_TRT v1") as refused:
        check_declared([op])
    assert "libnvinfer_plugin" in refused.value.hint and "namespace" in refused.value.hint
    (directory / "op.toml").write_text(
        'version = "1"\nnamespace = "myteam"\n[[plugins]]\nname = "EfficientNMS_TRT"\nversion = "1"\n')
    check_declared([load_op(directory, "tensorrt", root=tmp_path)])  # another namespace: no collision


@pytest.mark.tensorrt
def test_a_built_in_plugin_name_is_refused_before_compiling_and_the_bundle_kept(project):
    # A plugin that calls CUDA unguarded cannot be built --no-cuda, and the error says why.
    failed = trtis("ops", "build", "--no-cuda", cwd=project, check=False)
    assert failed.returncode != 0 and "a --no-cuda build leaves out" in failed.stderr, failed.stderr
    shutil.rmtree(project / "ops" / "tensorrt" / "gpu_clamp")
    shutil.rmtree(project / "ops" / "tensorrt" / "common")  # shared code no op uses any more: an error
    trtis("ops", "build", "--no-cuda", cwd=project)
    manifest = (project / "build" / "bundle" / "manifest.json").read_bytes()
    op_toml = project / "ops" / "tensorrt" / "static_scale" / "op.toml"
    op_toml.write_text(op_toml.read_text().replace('name = "StaticScale"', 'name = "ScatterND"'))
    refused = trtis("ops", "build", "--no-cuda", cwd=project, check=False)
    assert refused.returncode != 0 and "ScatterND v1" in refused.stderr and "libnvinfer_plugin" in refused.stderr
    assert (project / "build" / "bundle" / "manifest.json").read_bytes() == manifest
    # Registering through libnvinfer's global registry by hand: the link error says what to do.
    source = project / "ops" / "tensorrt" / "static_scale" / "staticScalePlugin.cpp"
    op_toml.write_text(op_toml.read_text().replace('name = "ScatterND"', 'name = "StaticScale"'))
    source.write_text(source.read_text().replace(
        "REGISTER_TENSORRT_PLUGIN(StaticScalePluginCreator);",
        'static bool registered = getPluginRegistry()->registerCreator(*new StaticScalePluginCreator, "");'))
    refused = trtis("ops", "build", "--no-cuda", cwd=project, check=False)
    assert refused.returncode != 0
    assert re.search(r"(undefined reference to `|undefined symbol: )getPluginRegistry", refused.stderr), refused.stderr
    assert "register with REGISTER_TENSORRT_PLUGIN" in refused.stderr, refused.stderr
    assert (project / "build" / "bundle" / "manifest.json").read_bytes() == manifest


def test_sources_reach_the_framework_through_the_projects_own_headers(tmp_path):
    (tmp_path / "ops" / "tensorrt" / "shared").mkdir(parents=True)
    (tmp_path / "ops" / "tensorrt" / "shared" / "helpers.h").write_text('#include "deeper.h"\n')
    (tmp_path / "ops" / "tensorrt" / "shared" / "deeper.h").write_text("#include <NvInferRuntime.h>\n")
    directory = _op(tmp_path, {"p.cc": DYNAMIC, "uses_helpers.cc": '#include "helpers.h"\nint f() { return 1; }\n',
                               "plain.cc": '#include "plain.h"\nint g() { return 2; }\n', "plain.h": "int g();\n",
                               "cycle.h": '#include "cycle.h"\n', "loops.cc": '#include "cycle.h"\n'},
                    'include_dirs = ["../shared"]\n')
    op = load_op(directory, "tensorrt", root=tmp_path)
    assert {p.name for p in op.sources} == {"p.cc", "uses_helpers.cc"}
    assert {p.name for p in op.kernel_sources} == {"plain.cc", "loops.cc"} and op.kernel_library is True
    # shared/ has no op.toml and an op uses it: shared code, not an op.
    assert [o.name for o in discover(tmp_path)] == ["p"]
    (tmp_path / "ops" / "tensorrt" / "stray").mkdir()
    with pytest.raises(OpSpecError, match="no op.toml"):
        discover(tmp_path)
