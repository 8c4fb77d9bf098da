"""TensorFlow's precompiled header: when the plan uses it (enough adapters for the parallel
jobs and the compiler's cost of writing one, no compiler cache, only adapters without flags of
their own or GPU sources; one header per flavor, CPU-only or CUDA adapters), and a real build
of two ops that share one header (forced on: TRTIS_BUILD_TF_PCH=on) whose libraries pass the
registry check in TensorFlow."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from tests.conftest import needs_clang, needs_tf, trtis
from trtis_build.core.errors import ConfigError
from trtis_build.frameworks.tensorflow import PCH_MIN_SOURCES, PCH_SOURCES_PER_JOB, TensorFlow


def _ops(count, **overrides):
    return [SimpleNamespace(**{"cxx_flags": (), "gpu_sources": (), "cuda_sources": (), "sources": [f"op{i}_op.cc"],
                               **overrides})
            for i in range(count)]


def _pch(ops, monkeypatch, choice=None, jobs=2, cache="none", family="gcc", cuda=False):
    if choice:
        monkeypatch.setenv("TRTIS_BUILD_TF_PCH", choice)
    else:
        monkeypatch.delenv("TRTIS_BUILD_TF_PCH", raising=False)
    return TensorFlow().plan_variables(ops, SimpleNamespace(jobs=jobs, compiler_cache=cache),
                                       SimpleNamespace(cxx_family=family), cuda)["TRTIS_TF_PCH"]


@pytest.mark.parametrize("family", ["gcc", "clang"])
def test_the_header_is_used_only_where_it_pays(monkeypatch, family):
    enough = max(PCH_MIN_SOURCES[family], PCH_SOURCES_PER_JOB[family] * 2)
    on = lambda ops, **kw: _pch(ops, monkeypatch, family=family, **kw)  # noqa: E731
    assert on(_ops(enough)) == ["cpu"]
    assert on(_ops(enough - 1)) == []
    assert on(_ops(1)) == []                                       # one op: never slower than before
    assert on(_ops(enough), jobs=16) == []                         # many cores compile adapters in parallel
    assert on(_ops(enough), cache="sccache") == []                 # sccache does not cache PCH compiles
    assert on(_ops(enough, cxx_flags=("-std=c++20",))) == []
    assert on(_ops(enough, gpu_sources=("k.cu.cc",))) == []
    assert on(_ops(1), choice="on") == ["cpu"] and on(_ops(99), choice="off") == []
    # Adapters built with CUDA kernels take the header that holds the stream executor; each
    # flavor pays for itself.
    assert on(_ops(enough, cuda_sources=("k.cu",)), cuda=True) == ["cuda"]
    assert on(_ops(enough, cuda_sources=("k.cu",)), cuda=False) == ["cpu"]
    assert on(_ops(enough, cuda_sources=("k.cu",)) + _ops(1), cuda=True) == ["cuda"]
    with pytest.raises(ConfigError, match="TRTIS_BUILD_TF_PCH must be auto, on or off"):
        on(_ops(1), choice="yes")


def test_clang_pays_from_fewer_adapters_than_gcc(monkeypatch):
    """Six ops on 2 cores: clang writes the header in about 1.3 adapter compiles, GCC in 2.6
    (benchmarks/tf_pch_bench.py), so only clang's build takes it."""
    assert _pch(_ops(6), monkeypatch, family="clang") == ["cpu"]
    assert _pch(_ops(6), monkeypatch, family="gcc") == []


@pytest.mark.compile
@pytest.mark.tensorflow
@needs_tf
@pytest.mark.parametrize("cxx,header", [("g++", "cmake_pch.hxx.gch"),
                                        pytest.param("clang++", "cmake_pch.hxx.pch", marks=needs_clang)])
def test_two_adapters_share_one_precompiled_header(tmp_path, cxx, header):
    for name in ("pcha", "pchb"):
        trtis("ops", "add", name, "--no-cuda", cwd=tmp_path)
    result = json.loads(trtis("ops", "build", "--no-cuda", "--json", "--cxx", cxx, cwd=tmp_path,
                              env={"TRTIS_BUILD_TF_PCH": "on", "TRTIS_BUILD_COMPILER_CACHE": "none"}).stdout)
    # Both libraries passed the registry check in TensorFlow (the manifest lists what each registers).
    assert {lib["ops"][0] for lib in result["manifest"]["libraries"]} == {"Pcha", "Pchb"}
    assert result["manifest"]["toolchain"]["cxx"]["name"] == cxx
    commands = json.loads((tmp_path / "build" / "cmake" / "compile_commands.json").read_text())
    adapters = [c["command"] for c in commands if c["file"].endswith("_op.cc")]
    assert len(adapters) == 2 and all(command.split()[0].endswith(cxx) or cxx in command for command in adapters)
    # One header (made by the first adapter's target), included by both adapters' compiles.
    headers = {word for command in adapters for word in command.split() if word.endswith("cmake_pch.hxx")}
    assert len(headers) == 1, adapters
    assert len(list((tmp_path / "build" / "cmake").rglob(header))) == 1


@pytest.mark.compile
@pytest.mark.tensorflow
@needs_tf
def test_adapters_with_cuda_kernels_share_the_header_that_holds_the_stream_executor(tmp_path):
    """The CUDA flavor: adapters built with TRTIS_WITH_CUDA include xla/stream_executor/stream.h
    for the compute stream, so their header holds it too (the CPU flavor's does not)."""
    for name in ("pchc", "pchd"):
        trtis("ops", "add", name, cwd=tmp_path)
    result = json.loads(trtis("ops", "build", "--json", "--cuda-arch", "90", cwd=tmp_path,
                              env={"TRTIS_BUILD_TF_PCH": "on", "TRTIS_BUILD_COMPILER_CACHE": "none"}).stdout)
    assert {lib["ops"][0] for lib in result["manifest"]["libraries"] if lib["ops"]} >= {"Pchc", "Pchd"}
    plan = json.loads((tmp_path / "build" / "plan.json").read_text())
    assert plan["variables"]["TRTIS_TF_PCH"] == ["cuda"]
    headers = list((tmp_path / "build" / "cmake").rglob("cmake_pch.hxx"))
    assert len(headers) == 1, headers
    text = headers[0].read_text()
    assert "xla/stream_executor/stream.h" in text and "tensorflow/core/framework/op_kernel.h" in text
