"""A local sccache-dist cluster: one scheduler and N build servers on 127.0.0.1, rendered from
the README's example configs (examples/sccache-dist/) with fresh tokens. Used by
tests/test_sccache_dist.py and benchmarks/dist_bench.py. Root and bubblewrap needed (the
servers' overlay builder)."""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import shutil
import signal
import subprocess
import time
from pathlib import Path

from tests.conftest import free_port

EXAMPLES = Path(__file__).resolve().parent.parent / "examples" / "sccache-dist"


class ClusterUnavailable(Exception):
    """What this machine lacks for a cluster (the caller skips or fails with it)."""



def render(name: str, values: dict[str, str], out: Path) -> Path:
    text = (EXAMPLES / name).read_text()
    for key, value in values.items():
        text = text.replace(f"@{key}@", value)
    if re.search(r"^[^#]*@[A-Z_]+@", text, re.M):
        raise ValueError(f"{name}: a placeholder is left:\n{text}")
    out.write_text(text)
    return out


@contextlib.contextmanager
def cluster(work: Path, sccache: str, servers: int = 2, timeout: float = 30):
    """Yields the client config's path (SCCACHE_CONF) while the cluster runs."""
    dist = Path(sccache).with_name("sccache-dist")
    if not dist.is_file():
        raise ClusterUnavailable(f"no sccache-dist beside {sccache} (the cache extra installs it)")
    if os.geteuid() != 0:
        raise ClusterUnavailable("sccache-dist build servers need root (bubblewrap sandboxes with overlay mounts)")
    bwrap = shutil.which("bwrap")
    if bwrap is None:
        raise ClusterUnavailable("bubblewrap not installed (scripts/setup.sh installs it)")
    values = {"SCHEDULER_ADDR": f"127.0.0.1:{free_port()}", "CLIENT_TOKEN": secrets.token_hex(16),
              "SERVER_TOKEN": secrets.token_hex(16), "BWRAP": bwrap, "CLIENT_DIR": str(work / "client")}
    (work / "client").mkdir(parents=True)
    env = {**os.environ, "SCCACHE_NO_DAEMON": "1", "SCCACHE_LOG": "info"}
    procs, logs = [], []

    def start(kind: str, config: Path, log: Path) -> None:
        logs.append(log)
        with log.open("wb") as out:
            procs.append(subprocess.Popen([str(dist), kind, "--config", str(config)], env=env, stdout=out,
                                          stderr=subprocess.STDOUT, start_new_session=True))

    try:
        start("scheduler", render("scheduler.conf", values, work / "scheduler.conf"), work / "scheduler.log")
        for index in range(1, servers + 1):
            (work / f"server{index}").mkdir()
            config = render("server.conf", {**values, "SERVER_ADDR": f"127.0.0.1:{free_port()}",
                                            "WORK_DIR": str(work / f"server{index}")}, work / f"server{index}.conf")
            start("server", config, work / f"server{index}.log")
        deadline = time.monotonic() + timeout
        while (work / "scheduler.log").read_text(errors="replace").count("Registered new server") < servers:
            if time.monotonic() > deadline or any(p.poll() is not None for p in procs):
                said = "\n".join(f"{log.name}: {log.read_text(errors='replace')[-1500:]}" for log in logs)
                raise RuntimeError(f"sccache-dist did not start:\n{said}")
            time.sleep(0.1)
        yield render("client.conf", values, work / "client.conf")
    finally:
        for proc in procs:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
