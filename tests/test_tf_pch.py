"""TensorFlow's precompiled header: when the plan uses it (enough adapters for the parallel
jobs, no compiler cache, only adapters without flags of their own or GPU sources), and a real
build of two ops that share one header (forced on: TRTIS_BUILD_TF_PCH=on) whose libraries
pass the registry check in TensorFlow."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from tests.conftest import needs_tf, trtis
from trtis_build.core.errors import ConfigError
from trtis_build.frameworks.tensorflow import PCH_MIN_SOURCES, PCH_SOURCES_PER_JOB, TensorFlow


def _ops(count, **overrides):
    return [SimpleNamespace(**{"cxx_flags": (), "gpu_sources": (), "sources": [f"op{i}_op.cc"], **overrides})
            for i in range(count)]


def _pch(ops, monkeypatch, choice=None, jobs=2, cache="none"):
    if choice:
        monkeypatch.setenv("TRTIS_BUILD_TF_PCH", choice)
    else:
        monkeypatch.delenv("TRTIS_BUILD_TF_PCH", raising=False)
    return TensorFlow().plan_variables(ops, SimpleNamespace(jobs=jobs, compiler_cache=cache))["TRTIS_TF_PCH"]


def test_the_header_is_used_only_where_it_pays(monkeypatch):
    enough = max(PCH_MIN_SOURCES, PCH_SOURCES_PER_JOB * 2)
    assert _pch(_ops(enough), monkeypatch) == "ON"
    assert _pch(_ops(enough - 1), monkeypatch) == "OFF"
    assert _pch(_ops(1), monkeypatch) == "OFF"                          # one op: never slower than before
    assert _pch(_ops(enough), monkeypatch, jobs=16) == "OFF"            # many cores compile adapters in parallel
    assert _pch(_ops(enough), monkeypatch, cache="sccache") == "OFF"   # sccache does not cache PCH compiles
    assert _pch(_ops(enough, cxx_flags=("-std=c++20",)), monkeypatch) == "OFF"
    assert _pch(_ops(enough, gpu_sources=("k.cu.cc",)), monkeypatch) == "OFF"
    assert _pch(_ops(1), monkeypatch, choice="on") == "ON" and _pch(_ops(99), monkeypatch, choice="off") == "OFF"
    with pytest.raises(ConfigError, match="TRTIS_BUILD_TF_PCH must be auto, on or off"):
        _pch(_ops(1), monkeypatch, choice="yes")


@pytest.mark.compile
@pytest.mark.tensorflow
@needs_tf
def test_two_adapters_share_one_precompiled_header(tmp_path):
    for name in ("pcha", "pchb"):
        trtis("ops", "add", name, "--no-cuda", cwd=tmp_path)
    result = json.loads(trtis("ops", "build", "--no-cuda", "--json", cwd=tmp_path,
                              env={"TRTIS_BUILD_TF_PCH": "on", "TRTIS_BUILD_COMPILER_CACHE": "none"}).stdout)
    assert {lib["ops"][0] for lib in result["manifest"]["libraries"]} == {"Pcha", "Pchb"}
    commands = json.loads((tmp_path / "build" / "cmake" / "compile_commands.json").read_text())
    adapters = [c["command"] for c in commands if c["file"].endswith("_op.cc")]
    # One header (made by the first adapter's target), included by both adapters' compiles.
    headers = {word for command in adapters for word in command.split() if word.endswith("cmake_pch.hxx")}
    assert len(adapters) == 2 and len(headers) == 1, adapters
    assert len(list((tmp_path / "build" / "cmake").rglob("cmake_pch.hxx.gch"))) == 1
