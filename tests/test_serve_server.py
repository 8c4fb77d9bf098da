"""Integration tests of `model add`, `serve` and `smoke` with the real tritonserver 2.51 from
nvidia-pytriton on 127.0.0.1, the example op built by `trtis-build ops build`, TensorFlow and
tritonclient. One module-scoped repository and server; every wait has a deadline."""

from __future__ import annotations

import importlib.util
import json
import os
import queue
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from trtis_build.serving.server import ServerSettings, TritonServer, group_alive, shm_regions

from .conftest import EXAMPLE_TF, REPO, make_project, needs_tf, trtis

np = pytest.importorskip("numpy")
pytestmark = [
    pytest.mark.server, pytest.mark.tensorflow, pytest.mark.compile, needs_tf,
    pytest.mark.skipif(importlib.util.find_spec("pytriton") is None,
                       reason="nvidia-pytriton (tritonserver) not installed: pip install '.[server]'"),
    pytest.mark.skipif(importlib.util.find_spec("tritonclient") is None,
                       reason="tritonclient not installed: pip install '.[server]'"),
]

GOOD = ("addsub", "addsub_batched", "addsub_builtin")
BROKEN = ("badconfig", "badlib", "dupe", "nolib")


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    root = make_project(tmp_path_factory.mktemp("serve"), EXAMPLE_TF)
    trtis("ops", "build", "--no-cuda", cwd=root)
    subprocess.run([sys.executable, str(REPO / "examples" / "make_savedmodel.py"), str(root / "saved"),
                    "--bundle", str(root / "build" / "bundle")], check=True, timeout=300,
                   capture_output=True)
    return root


def _rename(model_dir: Path, name: str) -> None:
    for config in (model_dir / "config.pbtxt", *model_dir.glob("configs/*.pbtxt")):
        config.write_text(config.read_text().replace('name: "addsub"', f'name: "{name}"'))


@pytest.fixture(scope="module")
def repo(project):
    models = project / "models"
    trtis("model", "add", "addsub", "--savedmodel", "saved/addsub_custom", cwd=project)
    trtis("model", "add", "addsub_batched", "--savedmodel", "saved/addsub_custom",
          "--max-batch-size", "4", cwd=project)
    # Built-ins only: no bundle needed at all.
    trtis("model", "add", "addsub_builtin", "--savedmodel", "saved/addsub_builtin",
          "--bundle", str(project / "no-bundle-here"), cwd=project)
    # Broken copies of the good model, one failure each.
    for name in BROKEN:
        shutil.copytree(models / "addsub", models / name)
        _rename(models / name, name)
    (models / "nolib" / "1" / "ops" / "tensorflow" / "libaddsub.so").unlink()
    (models / "badlib" / "1" / "ops" / "tensorflow" / "libaddsub.so").write_bytes(b"not an ELF file")
    (models / "badconfig" / "config.pbtxt").write_text('name: "badconfig"\nbackend: [[[\n')
    # Two libraries registering one op: the runner's guard must refuse the second.
    ops = models / "dupe" / "1" / "ops"
    shutil.copy2(ops / "tensorflow" / "libaddsub.so", ops / "tensorflow" / "libaddsub2.so")
    manifest = json.loads((ops / "manifest.json").read_text())
    manifest["libraries"].append({**manifest["libraries"][0], "path": "tensorflow/libaddsub2.so"})
    (ops / "manifest.json").write_text(json.dumps(manifest))
    return models


@pytest.fixture(scope="module")
def server(repo, tmp_path_factory):
    log = tmp_path_factory.mktemp("log") / "server.log"
    with TritonServer(ServerSettings(models_dir=repo, log_file=log, load_timeout=180)) as srv:
        statuses = srv.load_models(GOOD + BROKEN)
        yield srv, statuses
        pgid, prefix = srv.pid, srv.shm_prefix
    assert not group_alive(pgid), "tritonserver or a stub survived teardown"
    assert not shm_regions(prefix), "shared memory left behind"


# ------------------------------------------------------------------ model add

def test_model_add_copies_only_the_needed_libraries(repo, project):
    model = repo / "addsub"
    manifest = json.loads((model / "1" / "ops" / "manifest.json").read_text())
    assert [lib["ops"] for lib in manifest["libraries"]] == [["TRTISExampleAddSub"]]
    assert (model / "1" / "ops" / "tensorflow" / "libaddsub.so").is_file()
    assert (model / "1" / "model.savedmodel" / "saved_model.pb").is_file()
    assert (model / "config.pbtxt").read_text() == (model / "configs" / "python.pbtxt").read_text()
    tf_config = (model / "configs" / "tensorflow.pbtxt").read_text()
    assert 'platform: "tensorflow_savedmodel"' in tf_config
    assert f'op_library_filename: "{model}/1/ops/tensorflow/libaddsub.so"' in tf_config
    metadata = json.loads((model / "trtis-model.json").read_text())
    assert metadata["ops"]["custom"] == {"TRTISExampleAddSub": "tensorflow/libaddsub.so"}
    assert [i["name"] for i in metadata["signature"]["inputs"]] == ["x", "y"]
    # The builtin model carries no op libraries.
    assert not (repo / "addsub_builtin" / "1" / "ops").exists()
    assert "model_operations" not in (repo / "addsub_builtin" / "configs" / "tensorflow.pbtxt").read_text()


def test_model_add_reference_matches_numpy(repo):
    for name in ("addsub", "addsub_builtin", "addsub_batched"):
        with np.load(repo / name / "reference.npz") as data:
            x, y = data["input:x"], data["input:y"]
            np.testing.assert_array_equal(data["output:sum"], x + y)
            np.testing.assert_array_equal(data["output:difference"], x - y)


def test_model_add_unknown_op_names_it_and_leaves_nothing(project, tmp_path):
    empty = tmp_path / "bundle"
    empty.mkdir()
    manifest = json.loads((project / "build" / "bundle" / "manifest.json").read_text())
    (empty / "manifest.json").write_text(json.dumps({**manifest, "libraries": []}))
    models = tmp_path / "models"
    result = trtis("model", "add", "m", "--savedmodel", str(project / "saved" / "addsub_custom"),
                   "--models", str(models), "--bundle", str(empty), cwd=project, check=False)
    assert result.returncode == 11, result.stderr
    assert "TRTISExampleAddSub" in result.stderr and "Traceback" not in result.stderr
    assert not models.exists() or not any(models.iterdir())


def test_model_add_tensorflow_backend_config_for_a_server_path(project, tmp_path):
    models = tmp_path / "models"
    trtis("model", "add", "addsub", "--savedmodel", "saved/addsub_custom", "--models", str(models),
          "--backend", "tensorflow", "--server-models-dir", "/models", "--no-reference", cwd=project)
    config = (models / "addsub" / "config.pbtxt").read_text()
    assert config == (models / "addsub" / "configs" / "tensorflow.pbtxt").read_text()
    assert 'op_library_filename: "/models/addsub/1/ops/tensorflow/libaddsub.so"' in config
    assert not (models / "addsub" / "reference.npz").exists()
    again = trtis("model", "add", "addsub", "--savedmodel", "saved/addsub_custom", "--models",
                  str(models), "--no-reference", cwd=project, check=False)
    assert again.returncode == 11 and "already exists" in again.stderr and "--force" in again.stderr


# ------------------------------------------------------------------ server

def test_good_models_ready_broken_ones_reported(server):
    _, statuses = server
    for name in GOOD:
        assert statuses[name].ready, statuses[name]
    for name in BROKEN:
        assert not statuses[name].ready
    assert "libaddsub.so is missing" in statuses["nolib"].reason
    assert "cannot load op library" in statuses["badlib"].reason
    assert "config.pbtxt:2:" in statuses["badconfig"].reason  # where the config breaks
    assert "already registered" in statuses["dupe"].reason  # the runner's guard
    assert all("At:" not in s.reason for s in statuses.values())  # no Python traceback


def _infer(module, url, model, x, y):
    inputs = []
    for name, array in (("x", x), ("y", y)):
        item = module.InferInput(name, list(array.shape), "FP32")
        item.set_data_from_numpy(array)
        inputs.append(item)
    client = module.InferenceServerClient(url=url)
    try:
        result = client.infer(model, inputs)
        return result.as_numpy("sum"), result.as_numpy("difference")
    finally:
        client.close()


@pytest.mark.parametrize("protocol", ["http", "grpc"])
@pytest.mark.parametrize("model", ["addsub", "addsub_builtin"])
def test_infer_matches_numpy(server, protocol, model):
    import tritonclient.grpc as grpcclient
    import tritonclient.http as httpclient

    srv, _ = server
    module = httpclient if protocol == "http" else grpcclient
    rng = np.random.default_rng(7)
    for n in (1, 17, 1000):
        x = rng.standard_normal(n).astype(np.float32)
        y = rng.standard_normal(n).astype(np.float32)
        total, difference = _infer(module, srv.endpoints[protocol], model, x, y)
        np.testing.assert_array_equal(total, x + y)
        np.testing.assert_array_equal(difference, x - y)


def test_batched_model_serves_scalar_items(server):
    import tritonclient.http as httpclient

    srv, _ = server
    x = np.arange(3, dtype=np.float32).reshape(3, 1)
    y = np.full((3, 1), 0.5, np.float32)
    total, difference = _infer(httpclient, srv.endpoints["http"], "addsub_batched", x, y)
    assert total.shape == (3, 1)
    np.testing.assert_array_equal(total, x + y)
    np.testing.assert_array_equal(difference, x - y)


def test_bad_request_is_an_error_not_a_dead_model(server):
    import tritonclient.http as httpclient
    from tritonclient.utils import InferenceServerException

    srv, _ = server
    with pytest.raises(InferenceServerException, match="one shape"):
        _infer(httpclient, srv.endpoints["http"], "addsub", np.zeros(3, np.float32), np.zeros(4, np.float32))
    assert srv.model_ready("addsub")


def test_metrics_count_requests(server):
    srv, _ = server
    from trtis_build.serving.smoke import count_successes

    deadline = time.monotonic() + 10
    while count_successes(srv.metrics()).get("addsub", 0) < 6 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert count_successes(srv.metrics())["addsub"] >= 6  # 3 sizes x 2 protocols above


# ------------------------------------------------------------------ CLI: smoke and serve

def test_smoke_passes_on_good_models(project, repo):
    result = trtis("smoke", "--json", *[f"--model={m}" for m in GOOD], cwd=project, check=False)
    report = json.loads(result.stdout)
    assert result.returncode == 0, result.stdout + result.stderr
    assert report["passed"] and [m["name"] for m in report["models"]] == list(GOOD)
    for model in report["models"]:
        assert model["checks"] == {"http": "ok", "grpc": "ok", "metrics": "ok"}
        assert model["requests_counted"] >= 2


def test_smoke_fails_with_reasons_when_a_model_is_broken(project, repo):
    result = trtis("smoke", "--model=addsub", "--model=nolib", cwd=project, check=False)
    assert result.returncode == 1
    assert "PASS  addsub" in result.stdout
    assert "FAIL  nolib" in result.stdout and "libaddsub.so is missing" in result.stdout


class _Lines:
    """Lines of a child's output with a deadline per wait (no sleeps)."""

    def __init__(self, proc):
        self.lines: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        self._thread = threading.Thread(target=self._read, args=(proc.stdout,), daemon=True)
        self._thread.start()

    def _read(self, stream):
        for line in stream:
            self.lines.put(line)

    def rest(self, timeout: float = 30) -> str:
        """Everything after what wait_for consumed, up to the end of the output."""
        self._thread.join(timeout)
        while not self.lines.empty():
            self.seen.append(self.lines.get())
        return "".join(self.seen)

    def wait_for(self, prefix: str, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                break
            self.seen.append(line)
            if line.startswith(prefix):
                return line
        raise AssertionError(f"no line starting with {prefix!r} within {timeout} s:\n{''.join(self.seen)}")


def _start_serve(project, *args):
    proc = subprocess.Popen([sys.executable, "-m", "trtis_build", "serve", "--quiet", *args],
                            cwd=project, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines = _Lines(proc)
    server_pid = int(lines.wait_for("tritonserver pid", 60).split()[2].rstrip(":"))
    return proc, lines, server_pid


def _assert_clean(cli_pid: int, server_pid: int) -> None:
    deadline = time.monotonic() + 10
    while group_alive(server_pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not group_alive(server_pid), "tritonserver process group survived"
    assert not shm_regions(f"trtis_{cli_pid}_"), "shared memory left behind"


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_serve_stops_cleanly_on_signal(project, repo, sig):
    proc, lines, server_pid = _start_serve(project, "--model=addsub", "--model=nolib")
    try:
        lines.wait_for("serving 1 model(s)", 180)
        seen = "".join(lines.seen)
        assert "nolib" in seen and "libaddsub.so is missing" in seen
        proc.send_signal(sig)
        assert proc.wait(timeout=60) == 9  # stopped cleanly; one model had failed to load
    finally:
        proc.kill()
    output = lines.rest()
    assert "failed to load: nolib" in output and "Traceback" not in output
    _assert_clean(proc.pid, server_pid)
    assert (project / "build" / "serve" / "serve.log").is_file()


def test_serve_interrupted_while_loading_leaves_nothing(project, repo):
    proc, lines, server_pid = _start_serve(project, "--model=addsub")
    try:
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=60) in (0, 130)
    finally:
        proc.kill()
    _assert_clean(proc.pid, server_pid)


def test_serve_killed_with_sigkill_takes_its_server_along(project, repo):
    """Issue 12, 11: kill -9 runs no handler; the server dies with its driver, and what the
    run left (stubs, /dev/shm regions) the next run reaps."""
    proc, lines, server_pid = _start_serve(project, "--model=addsub")
    try:
        lines.wait_for("serving 1 model(s)", 180)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        proc.kill()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            os.kill(server_pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.05)
    else:
        os.killpg(server_pid, signal.SIGKILL)
        pytest.fail("tritonserver outlived its killed driver")
    from trtis_build.serving.server import reap_stale_runs

    reap_stale_runs()  # what the next `serve` does first
    _assert_clean(proc.pid, server_pid)


def test_tensorflow_config_is_valid_for_triton_and_explained_without_the_backend(project, repo):
    # The PyPI server has no TensorFlow backend: Triton must accept configs/tensorflow.pbtxt
    # (platform + model_operations) and fail only at finding the backend, with our hint.
    result = trtis("smoke", "--model=addsub", "--model-config-name=tensorflow", cwd=project,
                   check=False, timeout=120)
    assert result.returncode == 1
    assert "unable to find backend library for backend 'tensorflow'" in result.stdout
    assert "--model-config-name python" in result.stdout


def test_serve_with_only_broken_models_exits(project, repo):
    result = trtis("serve", "--quiet", "--model=badconfig", cwd=project, check=False, timeout=120)
    assert result.returncode == 9
    assert "no model could be loaded" in result.stderr and "config.pbtxt:2:" in result.stdout


def test_serve_port_in_use(project, repo):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        result = trtis("serve", "--http-port", str(port), cwd=project, check=False, timeout=60)
    assert result.returncode == 9
    assert f"http port {port} on 127.0.0.1 is in use" in result.stderr
    assert "tritonserver pid" not in result.stdout and "Traceback" not in result.stderr


def test_serve_without_server_binary(project, repo, tmp_path):
    result = trtis("serve", "--tritonserver", str(tmp_path / "bin" / "tritonserver"), cwd=project,
                   check=False, timeout=60)
    assert result.returncode == 9 and "tritonserver binary not found" in result.stderr
    assert "--tritonserver" in result.stderr  # says how to fix


def test_hanging_load_hits_its_deadline_and_is_killed(tmp_path):
    # A model whose initialize never returns stands for a stub that hangs a load.
    version = tmp_path / "models" / "hang" / "1"
    version.mkdir(parents=True)
    (version.parent / "config.pbtxt").write_text(
        'name: "hang"\nbackend: "python"\nmax_batch_size: 0\n'
        'input [ { name: "x" data_type: TYPE_FP32 dims: [ 1 ] } ]\n'
        'output [ { name: "y" data_type: TYPE_FP32 dims: [ 1 ] } ]\n'
        'instance_group [ { kind: KIND_CPU count: 1 } ]\n')
    (version / "model.py").write_text(
        "import time\n\nclass TritonPythonModel:\n    def initialize(self, args):\n"
        "        time.sleep(600)\n")
    settings = ServerSettings(models_dir=tmp_path / "models", load_timeout=3, stop_timeout=5)
    started = time.monotonic()
    with TritonServer(settings) as srv:
        status = srv.load_model("hang")
        pgid, prefix = srv.pid, srv.shm_prefix
    assert not status.ready and "did not finish within 3 s" in status.reason
    assert time.monotonic() - started < 60
    assert not group_alive(pgid) and not shm_regions(prefix)
