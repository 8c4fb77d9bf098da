"""Run a real Triton server (the `tritonserver` that nvidia-pytriton ships) on 127.0.0.1 with a
model repository: explicit model control, each model loaded and reported on its own, hard
deadlines everywhere, and a teardown that leaves no process and no shared memory behind.

Why each piece is here (measured, see NOTES.md "Triton"):
- the Python backend's stub is not where the server looks for it in the wheel, so a private
  backends/python directory is assembled per run;
- the stub runs isolated (PYTHONPATH ignored) and finds the environment through `python3` on
  PATH; the base interpreter's libpython must win over the system one (LD_LIBRARY_PATH);
- a stub that dies before connecting makes its load hang forever, so every wait has a deadline
  and teardown SIGKILLs the process group and removes this run's /dev/shm regions;
- one failed load must not stop the others: explicit model control, loads one by one.
"""

from __future__ import annotations

import errno
import importlib.util
import json
import os
import re
import secrets
import shutil
import signal
import socket
import sys
import sysconfig
import tempfile
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Mapping, TextIO

from ..core import process
from ..core.errors import ServerError

READY_SETTLE_S = 5.0  # after a successful load, how long a model may take to read ready
LOOPBACK = "127.0.0.1"
SHM_DIR = Path("/dev/shm")
STUB = "triton_python_backend_stub"


# Load failures with a known cause -> what to do (appended to the reason).
_NO_BACKEND = (" -- this server has no {} backend (the PyPI tritonserver has only the Python backend{}): serve "
               "the model's Python-backend config (--model-config-name python, or `trtis-build model add "
               "--backend python`)")
KNOWN_FAILURES = (
    ("unable to find backend library for backend 'tensorflow'", _NO_BACKEND.format("TensorFlow", "; Triton 25.04+")),
    ("unable to find backend library for backend 'pytorch'", _NO_BACKEND.format("PyTorch", "")),
    ("Op type not registered",
     " -- the model uses an op its directory does not carry: re-run `trtis-build model add` "
     "with the bundle that provides it"),
)


@dataclass(frozen=True)
class ServerInstall:
    """Where the pieces of a pip-installed Triton are."""

    binary: Path
    python_backend: Path  # directory with libtriton_python.so and triton_python_backend_utils.py
    stub: Path            # the stub built for this interpreter's Python version
    libs: Path | None     # the wheel's bundled shared libraries (auditwheel's *.libs)


@dataclass(frozen=True, kw_only=True)
class ServerSettings:
    models_dir: Path
    http_port: int | None = None      # None: a free port
    grpc_port: int | None = None
    metrics_port: int | None = None
    tritonserver: Path | None = None  # None: the one nvidia-pytriton installed
    log_file: Path | None = None      # None: in the runtime dir, removed at stop
    model_config_name: str | None = None
    startup_timeout: float = 60.0
    load_timeout: float = 240.0
    stop_timeout: float = 15.0
    echo: Callable[[str], None] | None = None  # where server log lines go besides the file
    python_env: Path = field(default_factory=lambda: Path(sys.prefix))


@dataclass(frozen=True)
class Ports:
    http: int
    grpc: int
    metrics: int


@dataclass(frozen=True)
class ModelStatus:
    name: str
    ready: bool
    state: str
    reason: str = ""
    load_seconds: float = 0.0


def find_tritonserver(explicit: Path | None = None) -> ServerInstall:
    """Locate the server from nvidia-pytriton (without importing pytriton), or an explicit
    binary (then its backends/ sibling directory is expected, as in Triton's own layout)."""
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    if explicit is not None:
        binary = Path(explicit)
        root = binary.resolve().parent.parent if binary.is_file() else binary.parent.parent
        libs = None
    else:
        spec = importlib.util.find_spec("pytriton")
        if spec is None or not spec.submodule_search_locations:
            raise ServerError("tritonserver is not installed (the nvidia-pytriton package is missing)",
                              hint="pip install 'trtis-build[server]' (nvidia-pytriton ships "
                                   "tritonserver 2.51), or pass --tritonserver PATH")
        package = Path(list(spec.submodule_search_locations)[0])
        root = package / "tritonserver"
        binary = root / "bin" / "tritonserver"
        libs = package.parent / "nvidia_pytriton.libs"
    if not binary.is_file() or not os.access(binary, os.X_OK):
        raise ServerError(f"tritonserver binary not found or not executable: {binary}",
                          where=binary, hint="reinstall nvidia-pytriton, or pass --tritonserver PATH")
    python_backend = root / "backends" / "python"
    stub_dir = root / "python_backend_stubs" / version
    stub = stub_dir / STUB if (stub_dir / STUB).is_file() else python_backend / STUB
    if not (python_backend / "libtriton_python.so").is_file() or not stub.is_file():
        raise ServerError(f"the Python backend or its stub for Python {version} is missing",
                          where=root, hint="use a Python version the server ships a stub for")
    return ServerInstall(binary, python_backend, stub, libs if libs and libs.is_dir() else None)


def discover_models(models_dir: Path) -> list[str]:
    """Model directories (with config.pbtxt or configs/): hidden ones are half-written."""
    if not models_dir.is_dir():
        raise ServerError(f"model repository {models_dir} does not exist", where=models_dir,
                          hint="create one with `trtis-build model add NAME --savedmodel DIR` "
                                   "(or --torch-program FILE.pt2)")
    names = sorted(entry.name for entry in models_dir.iterdir()
                   if entry.is_dir() and not entry.name.startswith(".")
                   and ((entry / "config.pbtxt").is_file() or (entry / "configs").is_dir()))
    if not names:
        raise ServerError(f"model repository {models_dir} has no models", where=models_dir,
                          hint="add one with `trtis-build model add NAME --savedmodel DIR` "
                                   "(or --torch-program FILE.pt2)")
    return names


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        return sock.getsockname()[1]


def check_port_free(port: int, what: str) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((LOOPBACK, port))
        except OSError as exc:
            reason = "in use" if exc.errno == errno.EADDRINUSE else exc.strerror
            raise ServerError(f"{what} port {port} on {LOOPBACK} is {reason}",
                              hint=f"stop what listens there, or pick another --{what}-port "
                                   "(or leave it out to get a free one)") from None


def choose_ports(settings: ServerSettings) -> Ports:
    chosen = {}
    for what in ("http", "grpc", "metrics"):
        given = getattr(settings, f"{what}_port")
        if given is not None:
            check_port_free(given, what)
            chosen[what] = given
        else:
            port = free_port()
            while port in chosen.values():
                port = free_port()
            chosen[what] = port
    return Ports(**chosen)


def server_command(install: ServerInstall, models_dir: Path, ports: Ports, backends_dir: Path,
                   shm_prefix: str, model_config_name: str | None = None) -> list[str]:
    """The tritonserver command line: CPU-friendly, loopback only, explicit model control."""
    command = [
        str(install.binary), f"--model-repository={models_dir}",
        "--model-control-mode=explicit", f"--backend-directory={backends_dir}",
        f"--http-address={LOOPBACK}", f"--http-port={ports.http}",
        f"--grpc-address={LOOPBACK}", f"--grpc-port={ports.grpc}",
        f"--metrics-address={LOOPBACK}", f"--metrics-port={ports.metrics}",
        "--allow-metrics=true", "--allow-gpu-metrics=false", "--allow-cpu-metrics=true",
        # No pinned or CUDA pools: they fail or waste memory on machines without a GPU.
        "--pinned-memory-pool-byte-size=0", "--cuda-memory-pool-byte-size=0:0",
        # One failed model would otherwise turn /v2/health/ready to 400 for good.
        "--strict-readiness=false", "--exit-on-error=false",
        # Saves one stub launch per model; the configs that model add writes are complete.
        "--disable-auto-complete-config",
        f"--backend-config=python,shm-region-prefix-name={shm_prefix}",
        "--exit-timeout-secs=5", "--log-verbose=0",
    ]
    if model_config_name:
        command.append(f"--model-config-name={model_config_name}")
    return command


def server_env(base: Mapping[str, str], install: ServerInstall, python_env: Path) -> dict[str, str]:
    """PATH leads the stub to the environment; LD_LIBRARY_PATH gives it the right libpython
    and the wheel's bundled libraries (our copied backend loses its $ORIGIN rpath)."""
    env = dict(base)
    env["PATH"] = os.pathsep.join([str(python_env / "bin"), env.get("PATH", "/usr/bin:/bin")])
    lib_dirs = [sysconfig.get_config_var("LIBDIR") or ""]
    if install.libs:
        lib_dirs.append(str(install.libs))
    if env.get("LD_LIBRARY_PATH"):
        lib_dirs.append(env["LD_LIBRARY_PATH"])
    env["LD_LIBRARY_PATH"] = os.pathsep.join(d for d in lib_dirs if d)
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    env.pop("PYTHONPATH", None)  # ignored by the stub anyway; keep the server's view honest
    return env


def _http(method: str, url: str, timeout: float, body: bytes | None = None) -> tuple[int, str]:
    request = urllib.request.Request(url, data=body, method=method)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode("utf-8", "replace")


def _error_text(body: str) -> str:
    try:
        return str(json.loads(body).get("error", body))
    except (ValueError, AttributeError):
        return body.strip()


class TritonServer:
    """One tritonserver process group. Use as a context manager; stop() is idempotent."""

    def __init__(self, settings: ServerSettings):
        self.settings = settings
        self.models_dir = Path(settings.models_dir).resolve()
        self.install: ServerInstall | None = None
        self.ports: Ports | None = None
        self.runtime_dir: Path | None = None
        self.log_path: Path | None = None
        self.shm_prefix = f"trtis_{os.getpid()}_{secrets.token_hex(4)}_"
        self._proc = None
        self._pgid: int | None = None
        self._reader: threading.Thread | None = None
        self._log: TextIO | None = None

    # ------------------------------------------------------------ lifecycle
    def __enter__(self) -> "TritonServer":
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop()

    @property
    def http_url(self) -> str:
        return f"http://{LOOPBACK}:{self.ports.http}"

    @property
    def endpoints(self) -> dict[str, str]:
        return {"http": f"{LOOPBACK}:{self.ports.http}", "grpc": f"{LOOPBACK}:{self.ports.grpc}",
                "metrics": f"http://{LOOPBACK}:{self.ports.metrics}/metrics"}

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    def start(self) -> None:
        self.install = find_tritonserver(self.settings.tritonserver)
        discover_models(self.models_dir)
        self.ports = choose_ports(self.settings)
        reap_stale_runs()  # an earlier run killed with -9 must not hold ports, memory or stubs
        self.runtime_dir = Path(tempfile.mkdtemp(prefix=f"trtis-serve-{os.getpid()}-"))
        backends = self._assemble_backends(self.runtime_dir / "backends")
        self.log_path = Path(self.settings.log_file or self.runtime_dir / "tritonserver.log").resolve()
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = open(self.log_path, "w", encoding="utf-8")
        command = server_command(self.install, self.models_dir, self.ports, backends,
                                 self.shm_prefix, self.settings.model_config_name)
        self._log.write("$ " + " ".join(command) + "\n")
        read_fd, write_fd = os.pipe()
        try:
            self._proc = process.start(command, env=server_env(os.environ, self.install,
                                                               self.settings.python_env),
                                       stdout=write_fd, stderr=write_fd)
        except OSError as exc:
            os.close(read_fd)
            raise ServerError(f"cannot start {command[0]}: {exc}", where=command[0]) from None
        finally:
            os.close(write_fd)
        self._pgid = self._proc.pid  # start() gives it its own session and process group
        self._reader = threading.Thread(target=self._pump, args=(read_fd,), daemon=True)
        self._reader.start()
        self._wait_live()

    def _assemble_backends(self, backends: Path) -> Path:
        # A full Triton install (a container's /opt/tritonserver) has the stub in place and
        # maybe more backends (TensorFlow up to 25.03): use its backends directory as it is.
        if self.install.stub.parent == self.install.python_backend:
            return self.install.python_backend.parent
        python_dir = backends / "python"
        python_dir.mkdir(parents=True)
        for item in self.install.python_backend.iterdir():
            if item.is_file() and item.name != STUB:
                shutil.copy2(item, python_dir / item.name)
        shutil.copy2(self.install.stub, python_dir / STUB)
        return backends

    def _pump(self, fd: int) -> None:
        """Copy the server's output to the log file and, if asked, to the terminal."""
        with open(fd, "r", encoding="utf-8", errors="replace", closefd=True) as stream:
            for line in stream:
                log = self._log
                if log is not None and not log.closed:
                    log.write(line)
                    log.flush()
                if self.settings.echo:
                    self.settings.echo(line.rstrip("\n"))

    def log_tail(self, lines: int = 25) -> str:
        if not self.log_path or not self.log_path.is_file():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def _died(self, what: str) -> ServerError:
        code = self._proc.returncode
        tail = self.log_tail()
        hint = "see the log"
        if "address already in use" in tail.lower():
            hint = "a port is in use: pick other ports or leave them out to get free ones"
        return ServerError(f"tritonserver exited with code {code} {what}:\n{tail}",
                           where=self.log_path, hint=hint)

    def _wait_live(self) -> None:
        deadline = time.monotonic() + self.settings.startup_timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise self._died("while starting")
            try:
                status, _ = _http("GET", f"{self.http_url}/v2/health/live", timeout=2)
                if status == 200:
                    return
            except OSError:
                pass  # not listening yet
            time.sleep(0.1)
        raise ServerError(f"tritonserver did not become live within {self.settings.startup_timeout:.0f} s",
                          where=self.log_path, hint="see the log; a slow machine may need --startup-timeout")

    def alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def wait(self, timeout: float | None = None) -> int | None:
        """Wait for the server to exit by itself; returns its code, or None on timeout."""
        try:
            return self._proc.wait(timeout)
        except Exception:  # subprocess.TimeoutExpired, without importing subprocess
            return None

    def stop(self) -> None:
        """SIGTERM the whole group, SIGKILL what is left after stop_timeout, remove this run's
        shared memory and runtime files. Safe to call twice and from a signal handler path."""
        if self._proc is not None:
            if self._proc.poll() is None:
                self._signal_group(signal.SIGTERM)
                if self.wait(self.settings.stop_timeout) is None:
                    self._signal_group(signal.SIGKILL)
                    self._proc.wait()
            # Stubs outlive a killed server (reparented to init); finish them too.
            self._signal_group(signal.SIGKILL)
            self._wait_group_gone(5.0)
            self._proc = None
        if self._reader is not None:
            self._reader.join(timeout=5)
            self._reader = None
        if self._log is not None:
            self._log.close()
        for region in SHM_DIR.glob(f"{self.shm_prefix}*"):
            try:
                region.unlink()
            except OSError:
                pass
        if self.runtime_dir is not None:
            shutil.rmtree(self.runtime_dir, ignore_errors=True)
            self.runtime_dir = None

    def _signal_group(self, sig: int) -> None:
        try:
            os.killpg(self._pgid, sig)
        except (ProcessLookupError, PermissionError):
            pass

    def _wait_group_gone(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not group_alive(self._pgid):
                return True
            time.sleep(0.05)
        return False

    # ------------------------------------------------------------ models
    def load_model(self, name: str, timeout: float | None = None) -> ModelStatus:
        """Load one model; a failure or a hang becomes a status with the reason, not an error."""
        timeout = timeout or self.settings.load_timeout
        started = time.monotonic()
        try:
            status, body = self._while_alive(lambda: _http(
                "POST", f"{self.http_url}/v2/repository/models/{name}/load", timeout=timeout, body=b"{}"))
        except _ServerDied:
            return ModelStatus(name, False, "UNAVAILABLE", f"the server exited while loading: {self.log_tail(5)}",
                               time.monotonic() - started)
        except (TimeoutError, socket.timeout):
            return ModelStatus(name, False, "LOADING", f"load did not finish within {timeout:.0f} s "
                               "(a Python stub that died early hangs a load; see the server log)",
                               time.monotonic() - started)
        except OSError as exc:
            if not self.alive():
                return ModelStatus(name, False, "UNAVAILABLE", f"the server exited: {self.log_tail(5)}")
            return ModelStatus(name, False, "UNAVAILABLE", f"load request failed: {exc}")
        elapsed = time.monotonic() - started
        if status == 200 and self._ready_after_load(name):
            return ModelStatus(name, True, "READY", "", elapsed)
        reason = _error_text(body) if status != 200 else ""
        index = self.repository_index().get(name, {})
        reason = short_reason(reason or index.get("reason", "") or "not ready after load")
        # Triton's own reason for a bad config is only "failed to poll from model repository":
        # add where the config breaks, or else what the server log says about the model.
        details = [self.config_problem(name)]
        if not details[0] and ("poll" in reason or reason == "not ready after load"):
            details = self.log_errors(name)
        details = [d for d in details if d and d not in reason]
        if details:
            reason += " (" + "; ".join(dict.fromkeys(details)) + ")"
        reason += next((hint for known, hint in KNOWN_FAILURES if known in reason), "")
        return ModelStatus(name, False, index.get("state", "UNAVAILABLE"), reason, elapsed)

    def _while_alive(self, call):
        """call() in a thread, given up at once if the server dies meanwhile (a Python stub
        holding the socket open would otherwise keep the request waiting its whole timeout)."""
        outcome: dict = {}

        def target():
            try:
                outcome["value"] = call()
            except BaseException as exc:  # handed to the caller below
                outcome["error"] = exc

        worker = threading.Thread(target=target, daemon=True)
        worker.start()
        while worker.is_alive():
            worker.join(timeout=0.25)
            if worker.is_alive() and not self.alive():
                raise _ServerDied()
        if "error" in outcome:
            raise outcome["error"]
        return outcome["value"]

    def config_problem(self, name: str) -> str:
        """Where a model's config does not parse, as file:line:column (Triton says only
        "failed to read text proto")."""
        model_dir = self.models_dir / name
        config = model_dir / "config.pbtxt"
        if self.settings.model_config_name:
            custom = model_dir / "configs" / f"{self.settings.model_config_name}.pbtxt"
            config = custom if custom.is_file() else config
        if not config.is_file():
            return f"{config} is missing"
        try:
            from google.protobuf import text_format
            from tritonclient.grpc import model_config_pb2
        except ImportError:
            return ""
        try:
            text_format.Parse(config.read_text(errors="replace"), model_config_pb2.ModelConfig())
        except text_format.ParseError as exc:
            return f"{config}:{exc}"
        return ""

    def log_errors(self, name: str, limit: int = 3) -> list[str]:
        """The server's error lines about this model (its own messages, without the prefix)."""
        if not self.log_path or not self.log_path.is_file():
            return []
        found = []
        for line in self.log_path.read_text(errors="replace").splitlines():
            if line.startswith("E") and (f"'{name}'" in line or f"/{name}/" in line):
                message = line.split('] ', 1)[-1].strip().strip('"').replace("\\n", "\n")
                found.append(short_reason(message))
        return found[-limit:]

    def load_models(self, names: Iterable[str]) -> dict[str, ModelStatus]:
        """Load models concurrently (Triton loads in parallel too); each has its own deadline."""
        names = list(names)
        pool = ThreadPoolExecutor(max_workers=max(1, min(4, len(names))))
        try:
            statuses = list(pool.map(self.load_model, names))
        except BaseException:
            # Ctrl-C: do not wait for loads that may hang; stop() kills the server under them.
            pool.shutdown(wait=False, cancel_futures=True)
            raise
        pool.shutdown()
        return {status.name: status for status in statuses}

    def _ready_after_load(self, name: str, settle_s: float = READY_SETTLE_S) -> bool:
        """A load answered 200 while the repository index says READY can still read "not
        ready" for a moment on a loaded machine: ask again for a little while, not forever."""
        deadline = time.monotonic() + settle_s
        while True:
            if self.model_ready(name):
                return True
            if time.monotonic() >= deadline or self.repository_index().get(name, {}).get("state") != "READY":
                return False
            time.sleep(0.2)

    def model_ready(self, name: str) -> bool:
        try:
            status, _ = _http("GET", f"{self.http_url}/v2/models/{name}/ready", timeout=5)
        except OSError:
            return False
        return status == 200

    def repository_index(self) -> dict[str, dict]:
        try:
            status, body = _http("POST", f"{self.http_url}/v2/repository/index", timeout=10, body=b"{}")
            entries = json.loads(body) if status == 200 else []
        except (OSError, ValueError):
            return {}
        return {entry.get("name"): entry for entry in entries if isinstance(entry, dict)}

    def metrics(self, timeout: float = 10) -> str:
        status, body = _http("GET", self.endpoints["metrics"], timeout=timeout)
        if status != 200:
            raise ServerError(f"metrics endpoint answered {status}", where=self.endpoints["metrics"])
        return body


def short_reason(text: str) -> str:
    """One paragraph: the Python backend appends the traceback ("At: ...") to its errors."""
    return text.split("\n\nAt:", 1)[0].strip().replace("\n", " ")


def group_alive(pgid: int | None) -> bool:
    """Whether any process of the group is left (zombies of ours excepted: we reap them)."""
    if pgid is None:
        return False
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


# This run's names carry the driver's pid: trtis_<pid>_<hex>_ for shared memory (and the
# Python stubs' command lines), trtis-serve-<pid>- for the runtime directory.
RUN_MARK = re.compile(r"trtis_(\d+)_[0-9a-f]{8}_")


class _ServerDied(Exception):
    pass


def reap_stale_runs() -> list[str]:
    """What an earlier run killed with -9 left: its Python stubs (they outlive a killed
    server), its /dev/shm regions and its runtime directory. Only runs whose driver is gone,
    only this user's processes. Returns what was removed, for the log."""
    removed = []
    mine = os.getuid()
    for entry in Path("/proc").iterdir() if Path("/proc").is_dir() else ():
        if not entry.name.isdigit():
            continue
        try:
            if entry.stat().st_uid != mine:
                continue
            argv = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        match = RUN_MARK.search(argv)
        if match and int(match.group(1)) != os.getpid() and not process.alive(int(match.group(1))):
            try:
                os.kill(int(entry.name), signal.SIGKILL)
                removed.append(f"process {entry.name}")
            except (ProcessLookupError, PermissionError):
                pass
    for region in SHM_DIR.glob("trtis_*") if SHM_DIR.is_dir() else ():
        match = RUN_MARK.match(region.name)
        if match and not process.alive(int(match.group(1))) and region.stat().st_uid == mine:
            region.unlink(missing_ok=True)
            removed.append(str(region))
    for leftover in Path(tempfile.gettempdir()).glob("trtis-serve-*-*"):
        pid = leftover.name.split("-")[2]
        if pid.isdigit() and not process.alive(int(pid)) and leftover.stat().st_uid == mine:
            shutil.rmtree(leftover, ignore_errors=True)
            removed.append(str(leftover))
    return removed


def shm_regions(prefix: str) -> list[Path]:
    return sorted(SHM_DIR.glob(f"{prefix}*"))


def format_statuses(statuses: Mapping[str, ModelStatus]) -> str:
    width = max((len(name) for name in statuses), default=5)
    lines = []
    for name, status in statuses.items():
        line = f"  {name:<{width}}  {status.state:<11}"
        if status.ready:
            line += f" loaded in {status.load_seconds:.1f} s"
        else:
            line += f" {status.reason}"
        lines.append(line)
    return "\n".join(lines)
