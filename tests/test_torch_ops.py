"""PyTorch operators: op.toml's schemas and settings, the name rules (a namespace belongs to
one op directory; torch's own namespaces are refused before compiling), and real builds with
g++, CMake, Ninja and torch: the example (stable ABI), `ops add --framework torch`, a
TORCH_LIBRARY library (abi = "exact"), and the checks that refuse a library which changes a
torch built-in, defines another schema than op.toml's, or re-registers a loaded namespace."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO, edited, import_trap, trtis
from trtis_build.core.errors import NameConflictError, OpSpecError
from trtis_build.frameworks.torch import Torch, parse_schema, same_schema, target_hex
from trtis_build.frameworks.torch import incompatibility as compatibility_problem
from trtis_build.ops.discover import discover, load_op
from trtis_build.ops.names import check_declared
from trtis_build.ops.scaffold import render_template

EXAMPLE_TORCH = REPO / "ops" / "torch" / "addsub"
EXAMPLE_KERNELS = REPO / "ops" / "tensorflow" / "addsub"
SCHEMA = "trtis::add_sub(Tensor x, Tensor y) -> (Tensor sum, Tensor difference)"
ADAPTER = '#include <torch/csrc/stable/library.h>\nSTABLE_TORCH_LIBRARY({ns}, m) {{}}\n'


def has_torch() -> bool:
    import importlib.util

    return importlib.util.find_spec("torch") is not None


needs_torch = pytest.mark.skipif(not has_torch(), reason="torch not installed (scripts/setup.sh installs it)")


def write_op(root: Path, name: str, toml: str, namespace: str = "demo") -> Path:
    directory = root / "ops" / "torch" / name
    directory.mkdir(parents=True)
    (directory / "op.toml").write_text(f'version = "1"\n{toml}\n')
    (directory / f"{name}_op.cc").write_text(ADAPTER.format(ns=namespace))
    return directory


# --- op.toml ---------------------------------------------------------------------------------

def test_schemas_are_parsed_with_namespace_and_overload():
    op = parse_schema("team::scale.out(Tensor x, float alpha=1., *, Tensor(a!) out) -> Tensor(a!)")
    assert (op.namespace, op.name, op.overload, str(op)) == ("team", "scale", "out", "team::scale.out")
    assert parse_schema(SCHEMA).schema == SCHEMA
    for bad in ("add_sub(Tensor x) -> Tensor", "trtis::add_sub(Tensor x)", "trtis::(Tensor x) -> Tensor",
                "trtis::f(Tensor x -> Tensor"):
        assert parse_schema(bad) is None, bad
    assert same_schema("a::f(Tensor x,Tensor y)->Tensor", "a::f(Tensor x, Tensor y) -> Tensor")
    assert not same_schema("a::f(Tensor x) -> Tensor", "a::f(Tensor y) -> Tensor")
    assert target_hex("2.10") == "0x020a000000000000"


@pytest.mark.parametrize("toml, field", [
    ('ops = ["add_sub(Tensor x) -> Tensor"]', "ops"),
    ('ops = []', "ops"),
    ('ops = ["demo::f(Tensor x) -> Tensor", "demo::f(Tensor y) -> Tensor"]', "ops"),
    ('ops = ["demo::f(Tensor x) -> Tensor"]\nabi = "unstable"', "abi"),
    ('ops = ["demo::f(Tensor x) -> Tensor"]\ntorch_target = "2.9"', "torch_target"),
    ('ops = ["demo::f(Tensor x) -> Tensor"]\npython = "yes"', "python"),
    ('ops = ["demo::f(Tensor x) -> Tensor"]\nabi_mode = "stable"', "abi_mode"),
])
def test_bad_op_toml_names_the_field(tmp_path, pure, toml, field):
    directory = write_op(tmp_path, "bad", toml)
    with pytest.raises(OpSpecError) as caught:
        load_op(directory, "torch", root=tmp_path)
    assert f"field '{field}'" in str(caught.value.where), caught.value


def test_settings_default_to_the_stable_abi_for_2_10(tmp_path, pure):
    op = load_op(write_op(tmp_path, "ok", 'ops = ["demo::f(Tensor x) -> Tensor"]'), "torch", root=tmp_path)
    assert op.settings == {"abi": "stable", "torch_target": "2.10", "python": False}
    assert op.registered_names == ("demo::f",)
    assert [p.name for p in op.sources] == ["ok_op.cc"]  # found by its torch include


def test_a_namespace_belongs_to_one_op_directory(tmp_path, pure):
    write_op(tmp_path, "first", 'ops = ["shared::f(Tensor x) -> Tensor"]', "shared")
    write_op(tmp_path, "second", 'ops = ["shared::g(Tensor x) -> Tensor"]', "shared")
    with pytest.raises(NameConflictError) as caught:
        check_declared(discover(tmp_path))
    assert "PyTorch namespace 'shared'" in str(caught.value)
    assert "first/op.toml" in str(caught.value.where) and "second/op.toml" in str(caught.value.where)


def test_torch_namespaces_are_refused_before_compiling(tmp_path, pure):
    write_op(tmp_path, "shadow", 'ops = ["aten::my_add(Tensor x) -> Tensor"]', "aten")
    with pytest.raises(NameConflictError, match="aten::my_add.*PyTorch built-ins"):
        check_declared(discover(tmp_path))


def test_loader_compatibility_rules():
    stable = {"torch": {"abi": "stable", "target": "2.14"}}
    assert compatibility_problem(stable, "2.14.1", "2.14.0") is None
    assert "targets torch 2.14" in compatibility_problem(stable, "2.14.1", "2.13.0+cpu")
    exact = {"torch": {"abi": "exact"}}
    assert compatibility_problem(exact, "2.14.1+cu130", "2.14.1+cpu") is None
    assert "built against torch 2.14.1" in compatibility_problem(exact, "2.14.1+cu130", "2.13.0+cpu")


def test_shipped_adapter_and_test_are_the_template_rendered():
    """The example's adapter and test are what `ops add addsub --framework torch --op-name
    trtis::add_sub` writes (its op.toml differs: it shares the TensorFlow example's kernels)."""
    rendered = render_template("torch", "addsub", "trtis::add_sub")
    for name in ("addsub_op.cc", "test_addsub.py"):
        assert rendered[name] == (EXAMPLE_TORCH / name).read_text(), name


def test_scaffold_default_names_a_namespace_of_its_own():
    assert Torch().default_registered_name("scale_it") == "scale_it::scale_it"


# --- real builds -------------------------------------------------------------------------------

def standalone_example(root: Path) -> Path:
    """The example with its kernels beside it (no TensorFlow op in the tree to build)."""
    directory = root / "ops" / "torch" / "addsub"
    shutil.copytree(EXAMPLE_TORCH, directory, ignore=shutil.ignore_patterns("__pycache__"))
    for kernel in ("addsub_kernel.h", "addsub_kernel.cc", "addsub_kernel.cu"):
        shutil.copy(EXAMPLE_KERNELS / kernel, directory / kernel)
    toml = directory / "op.toml"
    toml.write_text("\n".join(line for line in toml.read_text().splitlines()
                              if not line.startswith(("kernel_sources", "cuda_sources"))) + "\n")
    return root


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    if not has_torch():
        pytest.skip("torch not installed")
    root = standalone_example(tmp_path_factory.mktemp("torch-example"))
    result = trtis("ops", "build", "--json", "--cuda-arch", "75", cwd=root)
    return root, json.loads(result.stdout)


def bundle_link(root: Path) -> str:
    return os.readlink(root / "build" / "bundle")


@pytest.mark.compile
@pytest.mark.torch
@needs_torch
def test_example_builds_on_the_stable_abi_and_passes_its_test(project):
    root, _ = project
    manifest = json.loads((root / "build" / "bundle" / "manifest.json").read_text())
    [entry] = [lib for lib in manifest["libraries"] if lib["framework"] == "torch"]
    assert entry["ops"] == ["trtis::add_sub"] and entry["namespaces"] == ["trtis"]
    assert entry["schemas"] == {"trtis::add_sub": SCHEMA}
    assert entry["torch"] == {"abi": "stable", "target": "2.10", "python": False}
    assert {"CPU", "Meta"} <= set(entry["devices"]["trtis::add_sub"])
    assert set(entry["needed"]) & {"libtorch_cpu.so", "libc10.so"} and "libtorch_python.so" not in entry["needed"]
    report = json.loads(trtis("ops", "test", "--json", "--cuda-arch", "75", cwd=root).stdout)
    assert report["ops"]["torch/addsub"]["passed"], report
    assert "10 passed" in report["ops"]["torch/addsub"]["summary"]


@pytest.mark.compile
@pytest.mark.torch
@needs_torch
def test_noop_rebuild_imports_no_torch(project):
    root, first = project
    data = json.loads(trtis("ops", "build", "--json", "--cuda-arch", "75", cwd=root,
                            env=import_trap(root, "torch")).stdout)
    assert data["compiled"] is False and data["version_dir"] == first["version_dir"]


BUILTIN_KERNEL = """#include <torch/csrc/stable/library.h>
#include <torch/csrc/stable/ops.h>
#include <torch/csrc/stable/tensor.h>

namespace {
torch::stable::Tensor not_a_product(torch::stable::Tensor a, torch::stable::Tensor b) {
  return torch::stable::empty_like(a);
}
}  // namespace

// A CPU kernel for torch's own aten::mul: every model in the process would compute garbage.
STABLE_TORCH_LIBRARY_IMPL(aten, CPU, m) {
  m.impl("mul.Tensor", TORCH_BOX(&not_a_product));
}
"""


@pytest.mark.compile
@pytest.mark.torch
@needs_torch
def test_a_kernel_for_a_torch_builtin_is_refused_and_the_bundle_kept(project):
    root, _ = project
    before = bundle_link(root)
    rogue = root / "ops" / "torch" / "addsub" / "aten_mul.cc"
    rogue.write_text(BUILTIN_KERNEL)
    try:
        result = trtis("ops", "build", "--cuda-arch", "75", cwd=root, check=False)
    finally:
        rogue.unlink()
    assert result.returncode == 3, result.stderr
    assert "changes operators it does not own: aten::mul.Tensor" in result.stderr
    assert "Traceback" not in result.stderr
    assert bundle_link(root) == before


@pytest.mark.compile
@pytest.mark.torch
@needs_torch
def test_a_schema_other_than_op_tomls_is_refused(project):
    root, _ = project
    before = bundle_link(root)
    op_toml = root / "ops" / "torch" / "addsub" / "op.toml"
    with edited(op_toml, "(Tensor x, Tensor y)", "(Tensor a, Tensor b)"):
        result = trtis("ops", "build", "--cuda-arch", "75", cwd=root, check=False)
    assert result.returncode == 3, result.stderr
    assert "defines 'trtis::add_sub(Tensor x, Tensor y)" in result.stderr
    assert "op.toml declares 'trtis::add_sub(Tensor a, Tensor b)" in result.stderr
    assert bundle_link(root) == before


@pytest.mark.compile
@pytest.mark.torch
@needs_torch
def test_a_non_stable_header_gets_the_abi_hint(project):
    root, _ = project
    adapter = root / "ops" / "torch" / "addsub" / "addsub_op.cc"
    with edited(adapter, "#include <tuple>", "#include <tuple>\n#include <torch/library.h>"):
        result = trtis("ops", "build", "--cuda-arch", "75", cwd=root, check=False)
    assert result.returncode == 5, result.stderr
    assert "outside the stable ABI" in result.stderr and 'abi = "exact"' in result.stderr


LOAD_TWICE = """
import shutil, sys
from pathlib import Path
import trtis_build
from trtis_build.core.errors import BundleError
from trtis_build.frameworks.torch.loader import load_library

bundle = trtis_build.load_bundle(sys.argv[1], framework="torch")
entry = next(l for l in bundle.manifest["libraries"] if l["framework"] == "torch")
other = Path(sys.argv[2])
shutil.copy(Path(sys.argv[1]) / entry["path"], other)
with open(other, "ab") as f:
    f.write(b"another build")  # other bytes, same namespace: another version of the op
try:
    load_library(other, {**entry, "sha256": None})
except BundleError as exc:
    print("REFUSED", exc)
"""


@pytest.mark.compile
@pytest.mark.torch
@needs_torch
def test_load_bundle_refuses_a_second_library_of_a_loaded_namespace(project, tmp_path):
    root, _ = project
    result = subprocess.run([sys.executable, "-c", LOAD_TWICE, str(root / "build" / "bundle"),
                             str(tmp_path / "libaddsub-v2.so")], capture_output=True, text=True, timeout=300)
    assert "REFUSED" in result.stdout, result.stdout + result.stderr
    assert "torch namespace(s) trtis are already registered" in result.stdout
    assert "libaddsub.so" in result.stdout  # names the library that owns it


@pytest.mark.compile
@pytest.mark.torch
@needs_torch
def test_scaffolded_torch_op_builds_and_passes_unedited(tmp_path):
    trtis("ops", "add", "scale_it", "--framework", "torch", cwd=tmp_path)
    trtis("ops", "add", "cpu_only", "--framework", "torch", "--no-cuda", cwd=tmp_path)
    report = json.loads(trtis("ops", "test", "--json", "--cuda-arch", "75", cwd=tmp_path).stdout)
    for key in ("torch/scale_it", "torch/cpu_only"):
        assert report["ops"][key]["passed"], report
    manifest = json.loads((tmp_path / "build" / "bundle" / "manifest.json").read_text())
    assert sorted(op for lib in manifest["libraries"] for op in lib["ops"]) == [
        "cpu_only::cpu_only", "scale_it::scale_it"]


EXACT_ADAPTER = """// Existing TORCH_LIBRARY code (torch's full C++ API), built as it is.
#include <ATen/core/Tensor.h>
#include <ATen/ops/add.h>
#include <torch/library.h>

namespace {
at::Tensor twice(const at::Tensor& x) { return at::add(x, x); }
}  // namespace

TORCH_LIBRARY(legacy, m) { m.def("twice(Tensor x) -> Tensor"); }
TORCH_LIBRARY_IMPL(legacy, CPU, m) { m.impl("twice", &twice); }
"""


@pytest.mark.compile
@pytest.mark.torch
@needs_torch
def test_torch_library_code_builds_with_abi_exact_and_is_tied_to_its_torch(tmp_path):
    directory = tmp_path / "ops" / "torch" / "legacy"
    directory.mkdir(parents=True)
    (directory / "legacy_op.cc").write_text(EXACT_ADAPTER)
    (directory / "op.toml").write_text('version = "1"\nops = ["legacy::twice(Tensor x) -> Tensor"]\n'
                                       'abi = "exact"\n')
    trtis("ops", "build", "--no-cuda", cwd=tmp_path)
    manifest = json.loads((tmp_path / "build" / "bundle" / "manifest.json").read_text())
    [entry] = manifest["libraries"]
    assert entry["torch"] == {"abi": "exact", "python": False}
    import torch

    assert compatibility_problem(entry, manifest["toolchain"]["torch"]["version"], torch.__version__) is None
    assert compatibility_problem(entry, manifest["toolchain"]["torch"]["version"], "2.13.0+cpu")


PYTHON_CALLING_ADAPTER = """#include <torch/csrc/stable/library.h>
// Code that calls CPython (as pybind11 modules do): Triton's PyTorch backend has no Python.
extern "C" void* PyLong_FromLong(long);
void* as_python_int(long value) { return PyLong_FromLong(value); }
STABLE_TORCH_LIBRARY(pycaller, m) { m.def("f(Tensor x) -> Tensor"); }
"""


@pytest.mark.compile
@pytest.mark.torch
@needs_torch
def test_an_op_that_calls_python_fails_to_link_with_the_python_hint(tmp_path):
    directory = tmp_path / "ops" / "torch" / "pycaller"
    directory.mkdir(parents=True)
    (directory / "pycaller_op.cc").write_text(PYTHON_CALLING_ADAPTER)
    (directory / "op.toml").write_text('version = "1"\nops = ["pycaller::f(Tensor x) -> Tensor"]\n')
    result = trtis("ops", "build", "--no-cuda", cwd=tmp_path, check=False)
    assert result.returncode == 5, result.stderr
    assert "PyLong_FromLong" in result.stderr and "python = true" in result.stderr
    assert not (tmp_path / "build" / "bundle").exists()


@pytest.mark.compile
@pytest.mark.torch
@needs_torch
def test_ops_test_names_untested_ops_and_fails_an_op_whose_tests_all_skipped(tmp_path):
    trtis("ops", "add", "plain", "--framework", "torch", "--no-cuda", cwd=tmp_path)
    trtis("ops", "add", "onlyskip", "--framework", "torch", "--no-cuda", cwd=tmp_path)
    (tmp_path / "ops" / "torch" / "plain" / "test_plain.py").unlink()
    (tmp_path / "ops" / "torch" / "onlyskip" / "test_onlyskip.py").write_text(
        "import pytest\n\ndef test_x():\n    pytest.skip('nothing here')\n")
    result = trtis("ops", "test", "--json", "--no-cuda", cwd=tmp_path, check=False)
    report = json.loads(result.stdout)
    assert result.returncode == 8
    assert report["untested"] == ["torch/plain"] and "NO TEST  torch/plain" in result.stderr
    entry = report["ops"]["torch/onlyskip"]
    assert not entry["passed"] and entry["summary"].startswith("no test ran (1 skipped")
