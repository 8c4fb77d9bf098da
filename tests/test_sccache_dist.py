"""Distributed compilation with real sccache-dist: a scheduler and two build servers on
127.0.0.1 (token auth, the overlay builder under bubblewrap, as root), rendered from the
README's example configs (examples/sccache-dist/). `ops build` with compiler-cache sccache and
SCCACHE_CONF pointing at the client config runs its compiles on the servers, and the bundle is
byte-identical to a local build. Both servers share this one machine: no speedup is expected
here, only the work moving."""

from __future__ import annotations

import os
import shutil

import pytest

from tests.test_compiler_cache import _build, _digests, _new_project
from trtis_build.builder import compiler_cache


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    from tests.sccache_cluster import ClusterUnavailable, cluster as start_cluster

    sccache = compiler_cache.locate(os.environ)
    if sccache is None:
        pytest.skip("sccache not installed (the cache extra: scripts/setup.sh installs it)")
    work = tmp_path_factory.mktemp("dist")
    try:
        with start_cluster(work, sccache) as client_config:
            yield {"SCCACHE_CONF": str(client_config), "work": work}
    except ClusterUnavailable as missing:
        pytest.skip(str(missing))


@pytest.mark.compile
@pytest.mark.torch
@pytest.mark.cache
def test_compiles_run_on_the_build_servers_and_the_bundle_is_the_local_one(cluster, tmp_path):
    pytest.importorskip("torch")
    project = _new_project(tmp_path / "proj")
    local = _build(project, {"TRTIS_BUILD_COMPILER_CACHE": "none"})
    assert local["compiler_cache"] is None
    expected = _digests(project / "build" / "bundle")
    project = tmp_path / "runner" / "proj"   # another checkout, as on another runner
    project.mkdir(parents=True)
    shutil.copytree(tmp_path / "proj" / "ops", project / "ops")
    # An empty local cache: every compile is a miss, so each one is a job for the cluster.
    env = {"TRTIS_BUILD_COMPILER_CACHE": "sccache", "SCCACHE_CONF": cluster["SCCACHE_CONF"],
           "SCCACHE_DIR": str(tmp_path / "client-cache")}
    report = _build(project, env)["compiler_cache"]
    assert report["distributed"] >= len([s for s in report["steps"] if s["output"].endswith(".cc.o")]) > 0, report
    assert report["hits"] == 0
    assert _digests(project / "build" / "bundle") == expected
    assert "compiled on build servers" in (project / "build" / "build.log").read_text()
