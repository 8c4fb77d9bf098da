"""The layout's rules, checked on the source: imports flow one way (command line -> image,
serving, testing -> bundle -> builder -> ops -> frameworks -> core), server/ (trtis_server)
never imports trtis_build, one module runs processes, and the package list in pyproject.toml
is the tree. Pure: parses files, starts nothing."""

from __future__ import annotations

import ast
import tomllib
from pathlib import Path

import pytest

from .conftest import REPO

pytestmark = pytest.mark.usefixtures("pure")

PACKAGE = REPO / "trtis_build"
SERVER = REPO / "server"
# Lower numbers sit lower: a module may import its own layer and those below it.
LAYERS = {"core": 0, "frameworks": 1, "ops": 2, "builder": 3, "bundle": 4,
          "testing": 5, "serving": 5, "image": 5, "cli": 6}
# A framework's part of a stage above the frameworks layer is named after that stage
# (frameworks/<name>/serving.py) and counts as that stage.
STAGE_MODULES = {"serving", "testing"}
TOP = 6  # trtis_build/__init__.py and __main__.py: the public entry points


def module_name(path: Path, root: Path, package: str) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join([package, *parts])


def layer_of(module: str) -> int:
    parts = module.split(".")
    if parts[0] != "trtis_build" or module == "trtis_build.__version__":
        return -1  # trtis_server, the standard library and the version constant: below everything
    if len(parts) == 1 or parts[1] not in LAYERS:
        return TOP
    if parts[1] == "frameworks" and len(parts) > 3 and parts[3] in STAGE_MODULES:
        return LAYERS[parts[3]]
    return LAYERS[parts[1]]


def _type_checking_lines(tree: ast.AST) -> set[int]:
    lines = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for child in node.body:
                lines.update(range(child.lineno, (child.end_lineno or child.lineno) + 1))
    return lines


def imports(source: str, module: str, is_package: bool) -> list[tuple[int, str]]:
    """(line, absolute module) of every import, at any depth, except TYPE_CHECKING ones."""
    tree = ast.parse(source)
    skipped = _type_checking_lines(tree)
    package = module if is_package else module.rpartition(".")[0]
    found = []
    for node in ast.walk(tree):
        if node.lineno in skipped if hasattr(node, "lineno") else False:
            continue
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            # `from . import x` names modules: each alias is one.
            if not node.module:
                found += [(node.lineno, f"{target}.{alias.name}") for alias in node.names]
            else:
                found.append((node.lineno, target))
    return found


def backward_imports(source: str, module: str, is_package: bool = False) -> list[str]:
    own = layer_of(module)
    problems = []
    for line, target in imports(source, module, is_package):
        if target.split(".")[0] == "trtis_build" and layer_of(target) > own:
            problems.append(f"{module}:{line} imports {target} (layer {layer_of(target)} > {own})")
    return problems


def python_files(root: Path):
    return sorted(p for p in root.rglob("*.py") if "templates" not in p.parts)


def test_imports_flow_one_way():
    problems = []
    for path in python_files(PACKAGE):
        module = module_name(path, PACKAGE, "trtis_build")
        problems += backward_imports(path.read_text(), module, path.name == "__init__.py")
    assert problems == []


def test_the_checker_catches_an_import_that_flows_back():
    # The same checker on sources that break the rule: it must say so.
    assert backward_imports("from ..image import oci\n", "trtis_build.bundle.publish")
    assert backward_imports("def f():\n    from ...serving import server\n", "trtis_build.frameworks.tensorflow.loader")
    assert backward_imports("from . import testing\n", "trtis_build.ops", is_package=True) == []  # ops.testing: same layer
    assert backward_imports("from ...bundle.manifest import read\n", "trtis_build.frameworks.tensorflow.serving") == []
    assert backward_imports("if TYPE_CHECKING:\n    from ..bundle.publish import Bundle\n",
                            "trtis_build.builder.driver") == []


def test_every_subpackage_has_a_layer():
    packages = {p.parent.relative_to(PACKAGE).parts[0] for p in PACKAGE.glob("*/__init__.py")}
    assert packages == set(LAYERS)


def test_server_never_imports_trtis_build():
    for path in python_files(SERVER):
        module = module_name(path, SERVER, "trtis_server")
        for line, target in imports(path.read_text(), module, path.name == "__init__.py"):
            assert not target.startswith("trtis_build"), f"{path}:{line} imports {target}"


def test_the_server_package_is_standard_library_only():
    # runners/ run inside Triton's Python backend with NumPy and TensorFlow; the rest is the
    # launcher, which runs with the image's bare python3.
    import sys

    for path in python_files(SERVER):
        if "runners" in path.parts:
            continue
        module = module_name(path, SERVER, "trtis_server")
        for line, target in imports(path.read_text(), module, path.name == "__init__.py"):
            top = target.split(".")[0]
            assert top == "trtis_server" or top in sys.stdlib_module_names or top == "__future__", \
                f"{path}:{line} imports {target}"


def test_only_the_process_runner_imports_subprocess():
    users = []
    for root, package in ((PACKAGE, "trtis_build"), (SERVER, "trtis_server")):
        for path in python_files(root):
            module = module_name(path, root, package)
            if any(target.split(".")[0] == "subprocess"
                   for _, target in imports(path.read_text(), module, path.name == "__init__.py")):
                users.append(module)
    # The compile launcher is a script Ninja runs under `python -S` in front of each compile (it
    # cannot import trtis_build): it runs only the compile it wraps, inside the build's process
    # group, which core.process times out and kills as a whole.
    assert sorted(users) == ["trtis_build.builder.compile_launcher", "trtis_build.core.process"]


def test_pyproject_lists_every_package():
    config = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(config["packages"])
    found = {module_name(p, PACKAGE, "trtis_build") for p in PACKAGE.rglob("__init__.py")}
    found |= {module_name(p, SERVER, "trtis_server") for p in SERVER.rglob("__init__.py")}
    # Directories of data files inside a package are packages to setuptools too.
    for base, top in ((PACKAGE, "trtis_build"), (SERVER, "trtis_server")):
        for directory in base.rglob("*"):
            if (directory.is_dir() and directory.name != "__pycache__" and not (directory / "__init__.py").exists()
                    and any(f.is_file() for f in directory.iterdir())):
                found.add(".".join([top, *directory.relative_to(base).parts]))
    assert listed == found
    assert config["package-dir"] == {"trtis_server": "server"}


def test_the_stages_name_no_framework():
    """Adding a framework is its folder under frameworks/ and one registration line: the
    pipeline's stage modules dispatch through the seam (comments and docstrings aside)."""
    stages = [PACKAGE / "ops" / "discover.py", PACKAGE / "ops" / "names.py", PACKAGE / "ops" / "scaffold.py",
              PACKAGE / "builder" / "plan.py", PACKAGE / "builder" / "toolchain.py",
              PACKAGE / "bundle" / "verify.py", PACKAGE / "bundle" / "check.py", PACKAGE / "bundle" / "publish.py",
              PACKAGE / "testing" / "op_tests.py"]
    for path in stages:
        tree = ast.parse(path.read_text())
        docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                      if isinstance(node, (ast.Module, ast.FunctionDef, ast.ClassDef)) and node.body
                      and isinstance(node.body[0], ast.Expr) and isinstance(node.body[0].value, ast.Constant)}
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
                lowered = node.value.lower()
                assert "tensorflow" not in lowered and "tensorrt" not in lowered, f"{path}: {node.value!r}"
            if isinstance(node, ast.Attribute):
                assert not node.attr.startswith(("tensorflow", "tensorrt")), f"{path}:{node.lineno} .{node.attr}"
