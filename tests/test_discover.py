"""Unit tests of stage 1: op.toml validation and source discovery."""

from pathlib import Path

import pytest

from trtis_build.frameworks.tensorrt.names import PluginId
from trtis_build.ops.discover import discover, load_op
from trtis_build.core.errors import OpSpecError

pytestmark = pytest.mark.usefixtures("pure")


def write_op(root: Path, name: str, toml: str, files=("x_op.cc", "x_kernel.cc", "x_kernel.cu"),
             framework="tensorflow") -> Path:
    directory = root / "ops" / framework / name
    directory.mkdir(parents=True)
    (directory / "op.toml").write_text(toml)
    for file in files:
        (directory / file).write_text(_source_text(file, framework))
    return directory


def _source_text(file: str, framework: str) -> str:
    """What such a file holds: an adapter includes its framework's headers (that is what
    makes it one), a kernel does not."""
    if file.endswith(".cc") and "_kernel" not in file:
        return {"tensorflow": '#include "tensorflow/core/framework/op.h"\n',
                "tensorrt": "#include <NvInferRuntime.h>\n"}[framework]
    return "// framework-free\n"


def test_example_op_is_discovered_with_roles_by_convention():
    from tests.conftest import REPO

    [op] = [o for o in discover(REPO) if o.key == "tensorflow/addsub"]
    assert op.declared == ("TRTISExampleAddSub",)
    assert [p.name for p in op.sources] == ["addsub_op.cc"]
    assert [p.name for p in op.kernel_sources] == ["addsub_kernel.cc"]
    assert [p.name for p in op.cuda_sources] == ["addsub_kernel.cu"]
    assert op.gpu_sources == () and op.layout == "split"
    assert [p.name for p in op.tests] == ["test_addsub.py"]


def test_classic_layout_is_recognised():
    from tests.conftest import CLASSIC_TF

    op = load_op(CLASSIC_TF, "tensorflow", root=CLASSIC_TF.parents[3])
    assert [p.name for p in op.gpu_sources] == ["add_one.cu.cc"]
    assert [p.name for p in op.sources] == ["add_one.cc"]
    assert op.layout == "classic"


@pytest.mark.parametrize("toml, field, words", [
    ('version = "1"\nops = ["A"\n', None, "not valid TOML"),
    ('ops = ["MyOp"]\n', "version", "missing required field"),
    ('version = 1\nops = ["MyOp"]\n', "version", "must be a string"),
    ('version = "1"\nops = "MyOp"\n', "ops", "list of strings"),
    ('version = "1"\nops = ["lowercase"]\n', "ops", "not a valid TensorFlow op name"),
    ('version = "1"\nops = ["MyOp"]\nsoruces = ["a.cc"]\n', "soruces", "did you mean 'sources'"),
    ('version = "1"\nops = ["MyOp"]\nsources = ["missing.cc"]\n', "sources", "does not exist"),
    ('version = "1"\nops = ["MyOp"]\nname = "other"\n', "name", "directory is 'myop'"),
    ('version = "1"\nops = []\n', "ops", "missing or empty"),
])
def test_bad_op_toml_names_file_and_field(tmp_path, toml, field, words):
    write_op(tmp_path, "myop", toml)
    with pytest.raises(OpSpecError) as info:
        discover(tmp_path)
    text = info.value.render()
    assert str(tmp_path / "ops/tensorflow/myop/op.toml") in text
    if field:
        assert f"field '{field}'" in text
    assert words in text


def test_op_without_adapter_source_is_an_error(tmp_path):
    write_op(tmp_path, "myop", 'version = "1"\nops = ["MyOp"]\n', files=("k_kernel.cc",))
    with pytest.raises(OpSpecError, match="no adapter source"):
        discover(tmp_path)


def test_explicit_sources_override_convention_and_may_share_kernels(tmp_path):
    shared = write_op(tmp_path, "first", 'version = "1"\nops = ["First"]\n')
    write_op(tmp_path, "second", 'version = "2"\nops = ["Second"]\n'
             'kernel_sources = ["../first/x_kernel.cc"]\ncuda_sources = ["../first/x_kernel.cu"]\n',
             files=("second_op.cc",))
    ops = {op.name: op for op in discover(tmp_path)}
    second = ops["second"]
    assert second.kernel_sources == ((shared / "x_kernel.cc").resolve(),)
    assert shared.resolve() in second.include_dirs


def test_sources_outside_the_project_are_refused(tmp_path):
    project = tmp_path / "project"
    (tmp_path / "outside.cc").write_text("")
    write_op(project, "myop", 'version = "1"\nops = ["MyOp"]\nsources = ["../../../../outside.cc"]\n')
    with pytest.raises(OpSpecError, match="outside the project"):
        discover(project)


def test_tensorrt_plugins_take_the_project_namespace_unless_set(tmp_path):
    write_op(tmp_path, "p", 'version = "1"\n[[plugins]]\nname = "A"\n[[plugins]]\nname = "B"\n'
             'version = "2"\nnamespace = "mine"\n', files=("p_plugin.cc",), framework="tensorrt")
    [op] = discover(tmp_path, default_namespace="proj")
    assert op.declared == (PluginId("A", "1", "proj"), PluginId("B", "2", "mine"))


def test_scratch_directories_are_skipped(tmp_path):
    write_op(tmp_path, "myop", 'version = "1"\nops = ["MyOp"]\n')
    (tmp_path / "ops" / "tensorflow" / "__pycache__").mkdir()
    (tmp_path / "ops" / "tensorflow" / ".myop-tmp").mkdir()
    assert [op.name for op in discover(tmp_path)] == ["myop"]


def test_roles_follow_what_a_file_includes_and_registers_not_its_name(tmp_path):
    """TensorFlow's guides name the files that include its headers *_kernels.cc; they are
    adapters. A framework-free file is a kernel whatever it is called."""
    directory = tmp_path / "ops" / "tensorflow" / "op"
    (directory / "cc" / "kernels").mkdir(parents=True)
    (directory / "cc" / "ops").mkdir()
    (directory / "op.toml").write_text('version = "1"\nops = ["A", "Team>A"]\n')
    (directory / "cc" / "kernels" / "op_kernels.cc").write_text('#include "tensorflow/core/framework/op_kernel.h"\n')
    (directory / "cc" / "ops" / "op_ops.cc").write_text('REGISTER_OP("A");\n')
    (directory / "math.cc").write_text("int twice(int x) { return 2 * x; }\n")
    (directory / "device.cu").write_text('#include "tensorflow/core/framework/op_kernel.h"\n')
    (directory / "plain.cu").write_text("__global__ void k() {}\n")
    (directory / ".backup").mkdir()
    (directory / ".backup" / "old.cc").write_text('#include "tensorflow/core/framework/op.h"\n')
    [op] = discover(tmp_path)
    names = lambda paths: [str(p.relative_to(directory)) for p in paths]  # noqa: E731
    assert names(op.sources) == ["cc/kernels/op_kernels.cc", "cc/ops/op_ops.cc"]
    assert names(op.kernel_sources) == ["math.cc"]
    assert names(op.gpu_sources) == ["device.cu"]  # nvcc with TensorFlow's headers
    assert names(op.cuda_sources) == ["plain.cu"]
    assert op.declared == ("A", "Team>A")  # a '>' namespace, as in TensorFlow's examples


def test_a_tensorrt_file_that_includes_tensorrt_is_never_a_framework_free_kernel(tmp_path):
    directory = tmp_path / "ops" / "tensorrt" / "p"
    (directory / "common").mkdir(parents=True)
    (directory / "op.toml").write_text('version = "1"\n[[plugins]]\nname = "P"\n')
    (directory / "p_plugin.cpp").write_text('#include "NvInferRuntime.h"\n')
    (directory / "common" / "helpers_kernel.cc").write_text("#include <NvInfer.h>\nint helper();\n")
    (directory / "p_kernel.cc").write_text("float scale(float x) { return x; }\n")
    [op] = discover(tmp_path, default_namespace="")
    assert sorted(p.name for p in op.sources) == ["helpers_kernel.cc", "p_plugin.cpp"]
    assert [p.name for p in op.kernel_sources] == ["p_kernel.cc"]


def test_no_adapter_names_what_makes_one(tmp_path):
    write_op(tmp_path, "op", 'version = "1"\nops = ["A"]\n', files=("a_kernel.cc",))
    with pytest.raises(OpSpecError, match="no adapter source found"):
        discover(tmp_path)
