"""`trtis-build ops add NAME --framework tensorrt`: the templates render into an op that
builds and passes the plugin check and the real registry with no edits, with and without
CUDA; and they stay in step with the TensorFlow templates and the shipped example."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest

from trtis_build.frameworks.tensorrt import config_header, headers, plugin_check, registry
from trtis_build.frameworks.tensorrt.names import PluginId
from trtis_build.ops.discover import load_op
from trtis_build.ops.scaffold import KERNEL_TEMPLATES, render_template

from .trt_build import build_plugin, cuda_home, nvcc_path

REPO = Path(__file__).resolve().parent.parent
KERNEL_FILES = ("{{name}}_kernel.h.in", "{{name}}_kernel.cc.in", "{{name}}_kernel.cu.in")


def write_op(root: Path, name: str, plugin_name: str, *, cuda: bool = True) -> Path:
    directory = root / "ops" / "tensorrt" / name
    directory.mkdir(parents=True)
    for file_name, text in render_template("tensorrt", name, plugin_name, cuda=cuda).items():
        (directory / file_name).write_text(text)
    return directory


def test_rendered_files_have_no_tokens_left(tmp_path):
    files = render_template("tensorrt", "my_op", "MyOp")
    assert sorted(files) == ["my_op_kernel.cc", "my_op_kernel.cu", "my_op_kernel.h", "my_op_plugin.cc", "op.toml"]
    for name, text in files.items():
        assert "{{" not in text and "}}" not in text, name
    assert "trtis_my_op_cuda(" in files["my_op_plugin.cc"] and "MyOpPlugin" in files["my_op_plugin.cc"]
    assert "my_op_kernel.cu" not in render_template("tensorrt", "my_op", "MyOp", cuda=False)


def test_rendered_op_toml_declares_the_plugin_with_the_project_namespace(tmp_path):
    write_op(tmp_path, "my_op", "MyOp")
    op = load_op(tmp_path / "ops" / "tensorrt" / "my_op", "tensorrt", root=tmp_path, default_namespace="proj")
    assert op.declared == (PluginId("MyOp", "1", "proj"),)
    assert [p.name for p in op.sources] == ["my_op_plugin.cc"]
    assert [p.name for p in op.kernel_sources] == ["my_op_kernel.cc"]
    assert [p.name for p in op.cuda_sources] == ["my_op_kernel.cu"]


def test_both_frameworks_render_the_one_shared_kernel():
    # One framework-free kernel template for every framework's adapter (ops/templates/kernel/).
    tf = render_template("tensorflow", "my_op", "MyOp")
    trt = render_template("tensorrt", "my_op", "MyOp")
    for name in KERNEL_FILES:
        rendered = name.replace("{{name}}", "my_op").removesuffix(".in")
        assert (KERNEL_TEMPLATES / name).is_file(), name
        assert tf[rendered] == trt[rendered], name


def test_shipped_addsub_plugin_is_the_template_rendered():
    # Everything below the file's opening comment: the example is what `ops add` would give,
    # with its class names spelled AddSub, so fixes to one reach the other.
    rendered = render_template("tensorrt", "addsub", "TRTISExampleAddSub")["addsub_plugin.cc"]
    shipped = (REPO / "ops" / "tensorrt" / "addsub" / "addsub_plugin.cc").read_text()

    def body(text: str) -> str:
        return re.sub(r"\A(//[^\n]*\n)+", "", text)

    assert body(rendered).replace("Addsub", "AddSub") == body(shipped)


HEADERS = headers.find_tensorrt()


@pytest.mark.compile
@pytest.mark.tensorrt
@pytest.mark.skipif(HEADERS is None, reason="no TensorRT headers (pip install --no-deps kernel-lens==2.0.1)")
@pytest.mark.skipif(cuda_home() is None, reason="no CUDA headers (the TensorRT headers include them)")
@pytest.mark.parametrize("cuda", [True, False], ids=["cuda", "no-cuda"])
def test_scaffolded_op_builds_and_passes_its_checks_unedited(tmp_path, cuda):
    if cuda and nvcc_path() is None:
        pytest.skip("nvcc not found")
    directory = write_op(tmp_path, "scaled_op", "ScaledOp", cuda=cuda)
    op = load_op(directory, "tensorrt", root=tmp_path, default_namespace="trtis")
    library = build_plugin(op, tmp_path / "build", HEADERS, cuda=cuda)
    program = plugin_check.build_check_program(cxx="g++", headers=HEADERS, cuda_include=cuda_home() / "include",
                                           out_dir=tmp_path / "check")
    expected = PluginId("ScaledOp", "1", "trtis")
    result = plugin_check.run_plugin_check(program, [library], expect=[expected])
    assert result.ok, result.failures
    [plugin] = result.report["libraries"][0]["plugins"]
    assert plugin["outputs"] == [{"type": "float32", "shape": [2, 3, 257]}] * 2
    if any(importlib.util.find_spec(m) for m in ("tensorrt", "tensorrt_lean")):
        probe = registry.probe_registry([library], lookups=[expected])
        assert probe.libraries[0].loaded and probe.found(expected)
