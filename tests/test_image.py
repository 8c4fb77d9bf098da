"""Integration tests of `trtis-build server` with the real tools: the example op built by
`ops build`, the default base (mmdebstrap + nvidia-pytriton + TensorFlow, cached in
$TRTIS_BUILD_CACHE_DIR or ~/.cache/trtis-build), skopeo, oci-image-tool, umoci, bubblewrap,
Debian's docker-registry on 127.0.0.1 and `trtis-build smoke` run inside the image's own
root filesystem."""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import pytest

from trtis_build.image import oci
from trtis_build.image.compose import RUNTIME_MODULES

from .conftest import EXAMPLE_TF, REPO, make_project, needs_tf, trtis, write_small_base, free_port

TOOLS = {"skopeo": "skopeo", "umoci": "umoci", "bwrap": "bubblewrap", "mmdebstrap": "mmdebstrap",
         "docker-registry": "docker-registry"}
MISSING = [package for tool, package in TOOLS.items() if shutil.which(tool) is None]
EPOCH = "1700000000"
OPS = "opt/tritonserver/ops"
# The launcher's package in the layer: its directory, then its modules.
RUNTIME_FILES = [f"{OPS}/runtime/trtis_server", *(f"{OPS}/runtime/trtis_server/{name}" for name in sorted(RUNTIME_MODULES))]

pytestmark = [
    pytest.mark.image, pytest.mark.compile, pytest.mark.tensorflow, needs_tf,
    pytest.mark.skipif(bool(MISSING), reason=f"not installed: {', '.join(MISSING)} (scripts/setup.sh installs them)"),
    pytest.mark.skipif(os.geteuid() != 0, reason="mmdebstrap and umoci unpack need root to keep image owners "
                                                 "(CI runs scripts/setup.sh and the tests as root)"),
    pytest.mark.skipif(importlib.util.find_spec("pytriton") is None,
                       reason="nvidia-pytriton not installed: pip install '.[server]'"),
]


def run(*command, check=True, timeout=300) -> subprocess.CompletedProcess:
    result = subprocess.run([str(c) for c in command], capture_output=True, text=True, timeout=timeout)
    if check and result.returncode != 0:
        raise AssertionError(f"{command} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    return result


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    root = make_project(tmp_path_factory.mktemp("image"), EXAMPLE_TF)
    trtis("ops", "build", "--no-cuda", cwd=root)
    return root


def server(project: Path, *args, check: bool = True, epoch: str = EPOCH, bundle: Path | None = None):
    bundle = bundle or project / "build" / "bundle"
    return trtis("server", "--bundle", str(bundle), *map(str, args), cwd=project, check=check,
                 env={"SOURCE_DATE_EPOCH": epoch})


@pytest.fixture(scope="module")
def composed(project):
    """Default base (built once, cached across modules and runs), the example bundle."""
    out = project / "img"
    result = server(project, "--out", out, "--tag", "trtis-test:1", "--archive", project / "img.tar",
                    "--dockerfile", project / "docker" / "Dockerfile", "--json",
                    "--source", "https://example.com/ops.git", "--revision", "abc123")
    return {"out": out, "archive": project / "img.tar", "json": json.loads(result.stdout)}


def _manifest_and_config(out: Path, ref: str = "1"):
    layout = oci.Layout.open(out)
    desc, manifest = layout.find_manifest(ref)
    return layout, desc, manifest, layout.read_json(manifest["config"]["digest"])


def test_tools_accept_the_image(composed):
    out, digest = composed["out"], composed["json"]["digest"]
    inspected = json.loads(run("skopeo", "inspect", f"oci:{out}:1").stdout)
    assert inspected["Digest"] == digest
    assert inspected["Labels"]["org.trtis-build.tensorflow.ops"] == "TRTISExampleAddSub"
    if shutil.which("oci-image-tool"):
        run("oci-image-tool", "validate", "--type", "image", "--ref", "name=1", out)
    # One archive, both readers: oci-archive (docker load >= 25 reads index.json) and
    # docker-archive (manifest.json: podman load and older docker load).
    archive = composed["archive"]
    assert json.loads(run("skopeo", "inspect", f"oci-archive:{archive}").stdout)["Digest"] == digest
    from_docker = json.loads(run("skopeo", "inspect", f"docker-archive:{archive}").stdout)
    assert from_docker["Labels"] == inspected["Labels"]
    # docker-archive readers address layers by their uncompressed digest (diff_id).
    assert from_docker["Layers"][-1] == composed["json"]["layer"]["diff_id"]


def test_layer_holds_exactly_the_bundle(composed, project):
    layout, _, manifest, _ = _manifest_and_config(composed["out"])
    top = oci.Descriptor.from_json(manifest["layers"][-1])
    bundle = project / "build" / "bundle"
    with tarfile.open(layout.blob_path(top.digest), "r:gz") as tar:
        members = {m.name: m for m in tar.getmembers()}
        contents = {name: tar.extractfile(m).read() for name, m in members.items() if m.isreg()}
    assert sorted(members) == ["opt", "opt/tritonserver", f"{OPS}", f"{OPS}/launch.json", f"{OPS}/manifest.json",
                               f"{OPS}/runtime", *RUNTIME_FILES, f"{OPS}/tensorflow", f"{OPS}/tensorflow/libaddsub.so",
                               f"{OPS}/trtis-launch"]
    assert list(members) == sorted(members, key=str.encode)
    for member in members.values():
        assert (member.uid, member.gid, member.uname, member.gname) == (0, 0, "", "")
        assert member.mtime == int(EPOCH)
        assert member.mode == (0o755 if member.isdir() or member.name.endswith("trtis-launch") else 0o644)
    assert contents[f"{OPS}/manifest.json"] == (bundle / "manifest.json").read_bytes()
    assert contents[f"{OPS}/tensorflow/libaddsub.so"] == (bundle / "tensorflow" / "libaddsub.so").read_bytes()
    assert contents[f"{OPS}/trtis-launch"] == (REPO / "server" / "trtis-launch").read_bytes()
    for name in RUNTIME_MODULES:  # the launcher's package, exactly server/'s files
        assert contents[f"{OPS}/runtime/trtis_server/{name}"] == (REPO / "server" / name).read_bytes()


def test_two_builds_give_one_digest(composed, project):
    again = json.loads(server(project, "--out", project / "img2", "--tag", "trtis-test:1", "--archive",
                              project / "img2.tar", "--json", "--source", "https://example.com/ops.git",
                              "--revision", "abc123").stdout)
    assert again["digest"] == composed["json"]["digest"]
    assert (project / "img2.tar").read_bytes() == composed["archive"].read_bytes()
    later = json.loads(server(project, "--out", project / "img3", "--tag", "trtis-test:1", "--json",
                              "--revision", "abc123", epoch="1700000001").stdout)
    assert later["digest"] != composed["json"]["digest"]


def test_config_labels_and_annotations(composed, project):
    _, _, manifest, config = _manifest_and_config(composed["out"])
    inner = config["config"]
    assert inner["Entrypoint"] == [f"/{OPS}/trtis-launch"]
    assert f"TRTIS_BUNDLE=/{OPS}" in inner["Env"]
    assert any(item.startswith("LD_LIBRARY_PATH=/opt/tritonserver/lib") for item in inner["Env"])  # base env kept
    labels = inner["Labels"]
    bundle_manifest = (project / "build" / "bundle" / "manifest.json").read_bytes()
    import hashlib

    assert labels["org.trtis-build.bundle.manifest.sha256"] == hashlib.sha256(bundle_manifest).hexdigest()
    assert labels["org.opencontainers.image.source"] == "https://example.com/ops.git"
    assert labels["org.opencontainers.image.revision"] == "abc123"
    assert labels["org.trtis-build.ops"] == "tensorflow/addsub"
    assert labels["org.trtis-build.toolchain.tensorflow.version"] == "2.21.0"
    assert labels["org.trtis-build.base.tensorflow.version"] == "2.21.0"  # the default base's own label
    assert manifest["annotations"]["org.opencontainers.image.revision"] == "abc123"
    assert manifest["annotations"]["org.opencontainers.image.base.digest"] == composed["json"]["base"]["digest"]
    assert len(config["rootfs"]["diff_ids"]) == len(manifest["layers"])


def test_dockerfile_matches_the_layer(composed, project):
    dockerfile = (project / "docker" / "Dockerfile").read_text()
    assert "FROM ${BASE}" in dockerfile and f'ENTRYPOINT ["/{OPS}/trtis-launch"]' in dockerfile
    context = project / "docker" / "trtis-server-context"
    files = sorted(str(p.relative_to(context)) for p in context.rglob("*") if p.is_file())
    assert files == sorted([f"{OPS}/launch.json", f"{OPS}/manifest.json", *RUNTIME_FILES[1:],
                            f"{OPS}/tensorflow/libaddsub.so", f"{OPS}/trtis-launch"])
    assert os.access(context / OPS / "trtis-launch", os.X_OK)


# ---------------------------------------------------------------- running the image

@pytest.fixture(scope="module")
def rootfs(composed, tmp_path_factory):
    from trtis_build.image import run as imagerun

    return imagerun.unpack(composed["out"], "1", tmp_path_factory.mktemp("unpacked") / "bundle")


@pytest.fixture(scope="module")
def models(project):
    run(sys.executable, REPO / "examples" / "make_savedmodel.py", project / "saved",
        "--bundle", project / "build" / "bundle")
    trtis("model", "add", "addsub", "--savedmodel", "saved/addsub_custom", cwd=project)
    return project / "models"


def _in_image(rootfs: Path, composed, *args, extra_binds=()):
    from trtis_build.image import run as imagerun

    config = imagerun.image_config(composed["out"], "1")
    command = imagerun.sandbox_command(rootfs, config, list(args))
    split = command.index("--")
    for path in extra_binds:
        command[split:split] = ["--tmpfs", path]
    return subprocess.run(command, capture_output=True, text=True, timeout=120)


@pytest.mark.server
def test_smoke_inside_the_image(rootfs, composed, models, project):
    """`trtis-build smoke --image`: tritonserver, the Python backend, python3, TensorFlow and the
    op library all come from the image (unpacked by the command itself); the model answers
    through tritonclient HTTP and gRPC."""
    check = _in_image(rootfs, composed, "--trtis-check")
    assert check.returncode == 0, check.stderr
    result = trtis("smoke", "--image", f"{composed['out']}:1", "--json", "--load-timeout", "180", cwd=project,
                   check=False)
    log = project / "build" / "serve" / "smoke.log"
    assert result.returncode == 0, result.stdout + result.stderr + log.read_text()[-3000:]
    report = json.loads(result.stdout)
    assert report["passed"] and "addsub" in json.dumps(report)
    assert "trtis-launch: bundle ok (1 libraries); starting tritonserver" in log.read_text()
    # Unpacked once per image digest: a second run reuses the root filesystem.
    unpacked = list((project / "build" / "image-run").iterdir())
    assert len(unpacked) == 1 and (unpacked[0] / ".unpacked").read_text().strip() == composed["json"]["digest"]


def test_launcher_fails_fast_without_tensorflow(rootfs, composed):
    hidden = "/usr/local/lib/python3.11/dist-packages/tensorflow"
    result = _in_image(rootfs, composed, "--model-repository=/models", extra_binds=[hidden])
    assert result.returncode == 3
    assert "libaddsub.so needs libtensorflow_framework.so.2, which is not in the image" in result.stderr


def test_launcher_detects_a_changed_library(rootfs, composed):
    library = rootfs / OPS / "tensorflow" / "libaddsub.so"
    original = library.read_bytes()
    try:
        library.write_bytes(original + b"\0")
        result = _in_image(rootfs, composed, "--trtis-check")
    finally:
        library.write_bytes(original)
    assert result.returncode == 3 and "does not match its sha256" in result.stderr


# ---------------------------------------------------------------- registry


@pytest.fixture(scope="module")
def registry(tmp_path_factory):
    """Debian's docker-registry (CNCF distribution) with an access log, torn down after."""
    root = tmp_path_factory.mktemp("registry")
    port = free_port()
    (root / "config.yml").write_text(
        "version: 0.1\nlog:\n  level: info\n  accesslog:\n    disabled: false\n"
        f"storage:\n  filesystem:\n    rootdirectory: {root / 'data'}\n"
        f"http:\n  addr: 127.0.0.1:{port}\n")
    log = open(root / "registry.log", "w")
    proc = subprocess.Popen(["docker-registry", "serve", str(root / "config.yml")], stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            time.sleep(0.1)
    else:
        proc.kill()
        pytest.fail("docker-registry did not start")
    yield {"host": f"127.0.0.1:{port}", "log": root / "registry.log"}
    os.killpg(proc.pid, signal.SIGTERM)
    proc.wait(timeout=15)
    log.close()


@pytest.fixture(scope="module")
def small_base(registry, tmp_path_factory):
    """A small base with one layer and a TensorFlow version label, pushed with skopeo."""
    root = tmp_path_factory.mktemp("smallbase")
    layout, layer = write_small_base(root / "layout", labels={"org.trtis-build.base.tensorflow.version": "2.21.0"})
    run("skopeo", "copy", "--dest-tls-verify=false", f"oci:{layout.root}:1", f"docker://{registry['host']}/base:1")
    return {"ref": f"{registry['host']}/base:1", "layer": layer.descriptor.digest, "layout": layout.root}


def _log_since(registry, mark: int) -> list[str]:
    return registry["log"].read_text().splitlines()[mark:]


def test_push_appends_without_downloading_base_layers(project, registry, small_base, tmp_path):
    host = registry["host"]
    mark = len(registry["log"].read_text().splitlines())
    result = json.loads(server(project, "--base", small_base["ref"], "--tag", f"{host}/app:1",
                               "--push", "--json").stdout)
    assert result["layout"] is None  # remote append: nothing pulled, nothing kept locally
    assert result["pushed"]["blobs"][small_base["layer"]] == "mounted"
    requests = [line for line in _log_since(registry, mark) if '"GET ' in line]
    assert not [line for line in requests if small_base["layer"] in line], requests
    # The registry holds exactly the composed manifest; pulling it back keeps the digest.
    inspected = json.loads(run("skopeo", "inspect", "--tls-verify=false", f"docker://{host}/app:1").stdout)
    assert inspected["Digest"] == result["digest"]
    run("skopeo", "copy", "--src-tls-verify=false", f"docker://{host}/app:1", f"oci:{tmp_path / 'pulled'}:1")
    assert json.loads(run("skopeo", "inspect", f"oci:{tmp_path / 'pulled'}:1").stdout)["Digest"] == result["digest"]
    # Composing locally (the base pulled into the cache) and pushing gives the same image.
    local = json.loads(server(project, "--base", small_base["ref"], "--tag", f"{host}/app:2",
                              "--out", tmp_path / "local", "--push", "--json").stdout)
    assert local["digest"] == result["digest"]
    assert set(local["pushed"]["blobs"].values()) == {"present"}  # app repository has them all


def test_push_needs_a_registry_tag(project, small_base):
    result = server(project, "--base", small_base["ref"], "--tag", "plain:1", "--push", check=False)
    assert result.returncode == 2 and "--push needs --tag with a registry host" in result.stderr


def _assert_failed_cleanly(result, out: Path, message: str, code: int = 10):
    assert result.returncode == code, result.stderr
    assert message in result.stderr, result.stderr
    assert "Traceback" not in result.stderr
    assert not out.exists()
    assert not [p for p in out.parent.iterdir() if p.name.startswith(f".{out.name}.")]


def test_bad_bases_are_clear_errors(project, registry, small_base, tmp_path):
    out = tmp_path / "out"
    result = server(project, "--base", f"{registry['host']}/nope:1", "--out", out, check=False)
    _assert_failed_cleanly(result, out, "not found in registry")
    result = server(project, "--base", f"127.0.0.1:{free_port()}/base:1", "--out", out, check=False)
    _assert_failed_cleanly(result, out, "cannot reach registry")
    result = server(project, "--base", str(tmp_path / "no-such-dir"), "--out", out, check=False)
    _assert_failed_cleanly(result, out, "not found")
    archive = oci.write_archive(oci.Layout(small_base["layout"]), oci.Layout(small_base["layout"]).find_manifest()[0],
                                tmp_path / "base.tar", name="base:1", epoch=0)
    archive.write_bytes(archive.read_bytes()[:1500])
    result = server(project, "--base", f"docker-archive:{archive}", "--out", out, check=False)
    _assert_failed_cleanly(result, out, "base.tar")


def test_bad_bundles_and_skew_are_clear_errors(project, small_base, tmp_path):
    out = tmp_path / "out"
    local_base = f"oci:{small_base['layout']}:1"
    broken = tmp_path / "broken"
    shutil.copytree(project / "build" / "bundle", broken)
    (broken / "tensorflow" / "libaddsub.so").unlink()
    result = server(project, "--base", local_base, "--out", out, bundle=broken, check=False)
    _assert_failed_cleanly(result, out, "the bundle lists 'tensorflow/libaddsub.so' but the file is missing")
    result = server(project, "--base", local_base, "--out", out, "--base-version", "tensorflow=2.20.1", check=False)
    _assert_failed_cleanly(result, out, "tensorflow: bundle built with 2.21.0, base has 2.20.1 (--base-version)")
    # A good image in --out survives a failed compose into the same place.
    good = json.loads(server(project, "--base", local_base, "--out", out, "--json").stdout)
    failed = server(project, "--base", local_base, "--out", out, bundle=broken, check=False)
    assert failed.returncode == 10
    assert oci.Layout.open(out).find_manifest()[0].digest == good["digest"]
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "keep.txt").write_text("mine")
    result = server(project, "--base", local_base, "--out", precious, check=False)
    assert result.returncode == 2 and "is not an OCI image layout" in result.stderr
    assert (precious / "keep.txt").read_text() == "mine"
    allowed = json.loads(server(project, "--base", local_base, "--out", tmp_path / "skewed", "--json",
                                "--base-version", "tensorflow=2.20.1", "--allow-version-skew").stdout)
    assert allowed["version_skew"][0]["base"] == "2.20.1"


@pytest.mark.skipif(shutil.which("podman") is None, reason="podman not installed (scripts/setup.sh installs it)")
def test_podman_loads_the_archive(project, small_base, tmp_path):
    """A real container engine reads the archive: `podman load` (vfs storage in a temporary
    root, no daemon). Docker's engine cannot run here; the archive carries the manifest.json
    that `docker load` reads and the OCI index.json of Docker 25+, both checked with skopeo above."""
    out, archive = tmp_path / "image", tmp_path / "image.tar"
    composed = json.loads(server(project, "--base", f"oci:{small_base['layout']}:1", "--out", out,
                                 "--tag", "team/triton-ops:7", "--archive", archive, "--json").stdout)
    run_root = Path(tempfile.mkdtemp(prefix="trtis-pm-"))  # podman wants a short runroot path
    podman = ["podman", "--root", str(tmp_path / "storage"), "--runroot", str(run_root),
              "--storage-driver", "vfs"]
    try:
        loaded = run(*podman, "load", "-i", str(archive))
        [image] = json.loads(run(*podman, "image", "inspect", "localhost/team/triton-ops:7").stdout)
    finally:
        shutil.rmtree(run_root, ignore_errors=True)
    assert "Loaded image: localhost/team/triton-ops:7" in loaded.stdout + loaded.stderr
    config = oci.Layout.open(out).read_json(oci.Layout.open(out).find_manifest()[0].digest)["config"]
    assert "sha256:" + image["Id"] == config["digest"]          # the same image, byte for byte
    assert "localhost/team/triton-ops:7" in image["RepoTags"] and composed["digest"].startswith("sha256:")
    assert image["Config"]["Entrypoint"][0].endswith("trtis-launch")
    labels = image["Config"]["Labels"]
    assert labels["org.trtis-build.tensorflow.ops"] == "TRTISExampleAddSub"
    assert len(image["RootFS"]["Layers"]) == 2                   # the base's layer + the bundle layer


needs_dockerd = pytest.mark.skipif(shutil.which("dockerd") is None,
                                   reason="dockerd not installed (scripts/setup.sh installs docker.io)")


@contextlib.contextmanager
def docker_engine(tmp_path: Path):
    """A real Docker engine (Debian's docker.io: dockerd 20.10) in a private data root, vfs
    storage, no network set-up (containers use the host network), on a socket of its own;
    stopped with its whole process group, its mounts removed. Yields the docker CLI argv."""
    from trtis_build.core import process

    state = Path(tempfile.mkdtemp(prefix="trtis-dk-"))  # a unix socket path must be short
    socket_path = state / "docker.sock"
    log_path = tmp_path / "dockerd.log"
    log = open(log_path, "wb")
    daemon = process.start(["dockerd", "--data-root", str(state / "root"), "--exec-root", str(state / "exec"),
                            "--pidfile", str(state / "pid"), "-H", f"unix://{socket_path}",
                            "--storage-driver", "vfs", "--iptables=false", "--ip6tables=false",
                            "--bridge=none"], stdout=log, stderr=log)
    try:
        docker = ["docker", "-H", f"unix://{socket_path}"]
        deadline = time.monotonic() + 60
        while subprocess.run([*docker, "version"], capture_output=True).returncode != 0:
            assert daemon.poll() is None, log_path.read_text()[-2000:]
            assert time.monotonic() < deadline, "dockerd did not come up in 60 s"
            time.sleep(0.5)
        yield docker
    finally:
        subprocess.run([*docker, "rm", "-f", "trtis-test"], capture_output=True)
        os.killpg(daemon.pid, signal.SIGTERM)
        try:
            daemon.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(daemon.pid, signal.SIGKILL)
            daemon.wait()
        log.close()
        # dockerd bind-mounts its data root and network namespaces; a hard kill leaves them.
        for line in reversed(Path("/proc/mounts").read_text().splitlines()):
            if line.split()[1].startswith(str(state)):
                subprocess.run(["umount", "-l", line.split()[1]], check=False)
        shutil.rmtree(state, ignore_errors=True)


@needs_dockerd
def test_docker_engine_loads_the_archive(project, small_base, tmp_path):
    out, archive = tmp_path / "image", tmp_path / "image.tar"
    server(project, "--base", f"oci:{small_base['layout']}:1", "--out", out, "--tag", "team/triton-ops:8",
           "--archive", archive)
    with docker_engine(tmp_path) as docker:
        loaded = run(*docker, "load", "-i", str(archive))
        assert "Loaded image: team/triton-ops:8" in loaded.stdout
        [image] = json.loads(run(*docker, "image", "inspect", "team/triton-ops:8").stdout)
    layout = oci.Layout.open(out)
    config = layout.read_json(layout.find_manifest()[0].digest)["config"]
    assert image["Id"] == config["digest"]                    # the same image, byte for byte
    assert image["Config"]["Entrypoint"] == ["/opt/tritonserver/ops/trtis-launch"]
    assert image["Config"]["Labels"]["org.trtis-build.tensorflow.ops"] == "TRTISExampleAddSub"


@needs_dockerd
@pytest.mark.server
def test_the_image_serves_the_custom_op_in_docker(composed, models, tmp_path):
    """The default-base image from its archive, run by Docker with its own entrypoint: the
    launcher's check, Triton, the Python backend and TensorFlow from the image; the model that
    uses the custom op answers over HTTP and gRPC."""
    import numpy as np
    import tritonclient.grpc as grpc_client
    import tritonclient.http as http_client

    ports = {"http": free_port(), "grpc": free_port(), "metrics": free_port()}
    with docker_engine(tmp_path) as docker:
        run(*docker, "load", "-i", str(composed["archive"]), timeout=300)
        run(*docker, "run", "-d", "--name", "trtis-test", "--network", "host", "-v", f"{models}:/models:ro",
            "trtis-test:1", "--model-repository=/models", f"--http-port={ports['http']}",
            f"--grpc-port={ports['grpc']}", f"--metrics-port={ports['metrics']}", "--model-control-mode=explicit",
            "--load-model=addsub", timeout=120)
        client = http_client.InferenceServerClient(f"127.0.0.1:{ports['http']}")
        deadline = time.monotonic() + 180
        while True:
            try:
                if client.is_model_ready("addsub"):
                    break
            except Exception:  # not listening yet
                pass
            logs = subprocess.run([*docker, "logs", "trtis-test"], capture_output=True, text=True)
            assert time.monotonic() < deadline, logs.stdout[-3000:] + logs.stderr[-3000:]
            time.sleep(1)
        logs = subprocess.run([*docker, "logs", "trtis-test"], capture_output=True, text=True)
        x = np.array([1, 2, 3, 4.5], np.float32)
        y = np.array([0.5, 0.25, 8, -1], np.float32)
        for module, port in ((http_client, ports["http"]), (grpc_client, ports["grpc"])):
            inputs = []
            for name, value in (("x", x), ("y", y)):
                tensor = module.InferInput(name, list(value.shape), "FP32")
                tensor.set_data_from_numpy(value)
                inputs.append(tensor)
            result = module.InferenceServerClient(f"127.0.0.1:{port}").infer("addsub", inputs)
            assert np.array_equal(result.as_numpy("sum"), x + y), module.__name__
            assert np.array_equal(result.as_numpy("difference"), x - y), module.__name__
    assert "trtis-launch: bundle ok (1 libraries); starting tritonserver" in logs.stdout + logs.stderr


class _FlakyProxy:
    """An HTTP proxy in front of the real registry that answers 503 to the PATCH numbered
    `fail_patch` (1-based), once: a registry or load balancer hiccup in the middle of a push."""

    def __init__(self, upstream: str, fail_patch: int):
        import http.server
        import threading
        import urllib.request

        proxy = self
        self.patches, self.failed = 0, 0

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _forward(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if self.command == "PATCH":
                    proxy.patches += 1
                    if proxy.patches == fail_patch:
                        proxy.failed += 1
                        self.send_response(503)
                        self.send_header("Content-Length", "0")
                        self.end_headers()
                        return
                request = urllib.request.Request(f"http://{upstream}{self.path}", data=body or None,
                                                 method=self.command,
                                                 headers={k: v for k, v in self.headers.items() if k.lower() != "host"})
                try:
                    response = urllib.request.urlopen(request, timeout=30)
                except urllib.error.HTTPError as error:
                    response = error
                data = response.read()
                self.send_response(response.status if hasattr(response, "status") else response.code)
                for key, value in response.headers.items():
                    if key.lower() not in ("content-length", "transfer-encoding", "connection"):
                        self.send_header(key, value.replace(upstream, proxy.host))
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_PUT = do_POST = do_PATCH = do_HEAD = do_DELETE = _forward

        import urllib.error  # noqa: F401 - used in the handler
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.host = f"127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.mark.image
@pytest.mark.parametrize("fail_patch", [0, 2], ids=["clean", "503-mid-push"])
def test_large_blobs_are_pushed_in_chunks_with_progress_and_a_retry(registry, tmp_path, monkeypatch, fail_patch):
    import hashlib

    from trtis_build.image import registry as registry_client

    monkeypatch.setattr(registry_client, "CHUNK_BYTES", 64 << 10)
    monkeypatch.setattr(registry_client, "RETRY_WAIT_S", 0.01)
    blob = tmp_path / "blob"
    blob.write_bytes(os.urandom((64 << 10) * 4 + 12345))
    digest = "sha256:" + hashlib.sha256(blob.read_bytes()).hexdigest()
    proxy = _FlakyProxy(registry["host"], fail_patch)
    try:
        client = registry_client.Registry(proxy.host)
        lines: list[str] = []
        monkeypatch.setattr("trtis_build.core.progress.EVERY_S", 0.0)
        client.upload_blob("chunks", digest, blob, log=lines.append)
        assert lines and all(line.startswith(f"  push {digest[:19]}: ") and "MiB/s" in line for line in lines), lines
        assert "0.3 MiB of 0.3 MiB" in lines[-1] and lines[-1].endswith(" done"), lines
        assert proxy.patches == 5 + (1 if fail_patch else 0) and proxy.failed == (1 if fail_patch else 0)
        direct = registry_client.Registry(registry["host"])
        assert direct.get_blob("chunks", digest) == blob.read_bytes()
    finally:
        proxy.close()
