"""Choosing the C++ compiler (`cxx`) and the linker (`linker`): the options' rules, what the
toolchain finds with real compilers and linkers, and a real build whose libraries say which
linker made them (lld writes "Linker: LLD" into an ELF's .comment section, GNU ld does not)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from types import SimpleNamespace

import pytest

from tests.conftest import needs_clang, needs_tf, trtis
from trtis_build.builder import toolchain
from trtis_build.core.errors import ConfigError, ToolchainError
from trtis_build.core.options import resolve_options


def _options(tmp_path, env=None, cli=None):
    return resolve_options(root=tmp_path, env=env or {}, cli=cli or {})


def test_linker_and_cxx_follow_the_layers_and_refuse_nonsense(tmp_path):
    (tmp_path / "pyproject.toml").write_text('[tool.trtis-build]\nlinker = "system"\ncxx = "clang++"\n')
    assert (_options(tmp_path).linker, _options(tmp_path).cxx) == ("system", "clang++")
    assert _options(tmp_path, env={"TRTIS_BUILD_LINKER": "gold"}).linker == "gold"
    assert _options(tmp_path, env={"TRTIS_BUILD_LINKER": "gold"}, cli={"linker": "lld"}).linker == "lld"
    with pytest.raises(ConfigError, match="linker must be one of auto, system, lld, mold, gold, not 'ldd'"):
        _options(tmp_path, cli={"linker": "ldd"})
    (tmp_path / "pyproject.toml").write_text('[tool.trtis-build]\ncxx = " "\n')
    with pytest.raises(ConfigError, match="cxx must name a C\\+\\+ compiler"):
        _options(tmp_path)


def test_a_named_compiler_is_found_on_path_or_refused():
    env = {"PATH": os.environ["PATH"]}
    assert toolchain._find_cxx(env, SimpleNamespace(cxx="g++")) == shutil.which("g++")
    assert toolchain._find_cxx({**env, "CXX": "g++"}, None) == shutil.which("g++")
    with pytest.raises(ToolchainError, match="compiler 'no-such-c\\+\\+' not found") as caught:
        toolchain._find_cxx(env, SimpleNamespace(cxx="no-such-c++"))
    assert caught.value.where == "option cxx"
    with pytest.raises(ToolchainError) as caught:
        toolchain._find_cxx({**env, "CXX": "/nowhere/g++"}, None)
    assert caught.value.where == "environment variable CXX"


def test_the_linker_choice(tmp_path):
    with_lld = {"PATH": os.environ["PATH"]}
    empty = tmp_path / "bin"
    empty.mkdir()
    without = {"PATH": str(empty)}
    assert toolchain._find_linker(with_lld, SimpleNamespace(linker="system")) is None
    assert toolchain._find_linker(without, SimpleNamespace(linker="auto")) is None   # auto: the compiler's own
    with pytest.raises(ToolchainError, match="linker mold not found"):
        toolchain._find_linker(without, SimpleNamespace(linker="mold"))
    if shutil.which("ld.lld"):
        assert toolchain._find_linker(with_lld, SimpleNamespace(linker="auto")) == shutil.which("ld.lld")


def test_a_linker_the_compiler_cannot_use_falls_back_under_auto_and_fails_when_named(tmp_path, monkeypatch):
    """A program named ld.lld that is no linker, first on PATH (where the compiler looks for
    it): the toolchain's test link catches it."""
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    fake = tmp_path / "ld.lld"
    fake.write_text("#!/bin/sh\necho 'not a linker' >&2\nexit 1\n")
    fake.chmod(0o755)
    problems: list[str] = []
    gxx = shutil.which("g++")
    assert toolchain._detect_linker(gxx, str(fake), SimpleNamespace(linker="auto"), problems) is None
    assert "cannot link with -fuse-ld=lld" in problems[0]
    with pytest.raises(ToolchainError, match="cannot link with -fuse-ld=lld"):
        toolchain._detect_linker(gxx, str(fake), SimpleNamespace(linker="lld"), [])


@needs_clang
def test_compiler_families_from_the_real_compilers():
    assert toolchain.detect_cxx(shutil.which("g++"))[1] == "gcc"
    tool, family = toolchain.detect_cxx(shutil.which("clang++"))
    assert family == "clang" and tool.version[0].isdigit()
    linker = toolchain._detect_linker(shutil.which("g++"), shutil.which("ld.lld"), SimpleNamespace(linker="lld"), [])
    assert linker is not None and linker.version[0].isdigit()


def _linked_by_lld(library: Path) -> bool:
    comment = subprocess.run(["readelf", "-p", ".comment", str(library)], capture_output=True, text=True,
                             check=True).stdout
    return "LLD" in comment


@pytest.mark.compile
@pytest.mark.tensorflow
@needs_tf
@needs_clang
def test_the_build_links_with_the_chosen_linker_and_the_manifest_says_so(tmp_path):
    trtis("ops", "add", "linked", "--no-cuda", cwd=tmp_path)
    library = tmp_path / "build" / "bundle" / "tensorflow" / "liblinked.so"
    for choice, lld in (("auto", True), ("system", False)):
        result = json.loads(trtis("ops", "build", "--no-cuda", "--json", "--linker", choice, cwd=tmp_path,
                                  env={"TRTIS_BUILD_COMPILER_CACHE": "none"}).stdout)
        manifest_linker = result["manifest"]["toolchain"]["linker"]
        assert (manifest_linker or {}).get("name") == ("lld" if lld else None), manifest_linker
        assert _linked_by_lld(library) == lld, choice
