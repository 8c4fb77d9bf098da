"""The reliability suite (issue 12): hostile inputs, secrets and faults. Each test reproduces
one defect found by probing the tool and checks the fix at its root. Real processes, real
files; nothing is mocked except where a test says so."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import tarfile
import time
from pathlib import Path

import pytest

from trtis_build.core import process
from trtis_build.core.errors import CommandError, ImageError, LockTimeout
from trtis_build.core.locks import FileLock
from trtis_build.image import compose, oci, registry

from .conftest import needs_tf


# --- 1. a crafted base cannot reach files outside its layout or archive ---------------------

def _tar(path: Path, members: dict[str, bytes]) -> Path:
    with tarfile.open(path, "w") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def test_a_docker_archive_naming_a_host_file_as_config_is_refused(tmp_path):
    secret = tmp_path / "host-config.json"
    secret.write_text('{"auths": {"r.example.com": {"auth": "c2VjcmV0"}}}')
    layer = gzip.compress(b"")
    archive = _tar(tmp_path / "evil.tar", {
        "manifest.json": json.dumps([{"Config": str(secret), "RepoTags": ["evil:1"],
                                      "Layers": ["layer.tar"]}]).encode(),
        "layer.tar": layer})
    with pytest.raises(ImageError, match="not a file inside the archive"):
        oci.import_archive(archive, tmp_path / "layout")
    assert not (tmp_path / "layout").exists()
    assert not list(tmp_path.glob("*.partial"))  # nothing half-written left behind


@pytest.mark.parametrize("digest", ["sha256:" + ("../" * 22)[:64], "sha256:" + "A" * 64, "sha512:" + "0" * 64,
                                    "sha256:" + "0" * 63 + "/", 42])
def test_a_digest_that_is_not_sha256_hex_names_no_file(tmp_path, digest):
    layout = oci.Layout.create(tmp_path / "layout")
    with pytest.raises(ImageError, match="invalid blob digest"):
        layout.blob_path(digest)


def test_an_oci_base_whose_layer_digest_escapes_the_layout_is_refused(tmp_path):
    layout = oci.Layout.create(tmp_path / "base")
    config = layout.add_json({"architecture": "amd64", "os": "linux", "config": {},
                              "rootfs": {"type": "layers", "diff_ids": []}}, oci.OCI_CONFIG)
    escaping = "sha256:" + ("../" * 22)[:64]
    manifest = {"schemaVersion": 2, "mediaType": oci.OCI_MANIFEST, "config": config.to_json(),
                "layers": [{"mediaType": oci.OCI_LAYER_GZIP, "digest": escaping, "size": 10}]}
    desc = layout.add_json(manifest, oci.OCI_MANIFEST)
    layout.write_index([oci.Descriptor(desc.media_type, desc.digest, desc.size, {oci.REF_NAME: "x"})])
    with pytest.raises(ImageError, match="invalid blob digest"):
        oci.write_archive(layout, desc, tmp_path / "out.tar", name="x:1", epoch=0)
    assert not (tmp_path / "out.tar").exists()


# --- 2. a credential helper's secret never reaches a message --------------------------------

def _helper(tmp_path: Path, monkeypatch, script: str) -> dict:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    helper = bin_dir / "docker-credential-probe"
    helper.write_text("#!/bin/sh\nread server\n" + script)
    helper.chmod(0o755)
    (tmp_path / "config.json").write_text(json.dumps({"credsStore": "probe"}))
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    return {"DOCKER_CONFIG": str(tmp_path), "HOME": str(tmp_path / "nohome")}


def test_a_helper_warning_on_stderr_does_not_break_its_answer(tmp_path, monkeypatch):
    env = _helper(tmp_path, monkeypatch, 'echo "warning: keychain is slow" >&2\n'
                                          'echo \'{"Username": "robot", "Secret": "hunter2"}\'\n')
    assert registry.credentials("r.example.com", env) == ("robot", "hunter2")


def test_a_helper_answer_that_is_not_json_is_not_quoted(tmp_path, monkeypatch):
    env = _helper(tmp_path, monkeypatch, 'echo \'note {"Username": "robot", "Secret": "hunter2"}\'\n')
    with pytest.raises(ImageError) as info:
        registry.credentials("r.example.com", env)
    assert "hunter2" not in info.value.render() and "not JSON" in info.value.render()


def test_a_helper_that_never_answers_is_stopped(tmp_path, monkeypatch):
    env = _helper(tmp_path, monkeypatch, "sleep 30\n")
    monkeypatch.setattr(registry, "HELPER_TIMEOUT_S", 1.0)
    started = time.monotonic()
    with pytest.raises(ImageError, match="did not answer within 1 s"):
        registry.credentials("r.example.com", env)
    assert time.monotonic() - started < 10


# --- 3. no token from a clone URL in what the image publishes ---------------------------------

@pytest.mark.parametrize("url, public", [
    ("https://ci:glpat-XYZ@gitlab.example.com/team/ops.git", "https://gitlab.example.com/team/ops.git"),
    ("https://x-access-token:ghs_abc@github.com/o/r", "https://github.com/o/r"),
    ("https://github.com/o/r", "https://github.com/o/r"),
    ("git@github.com:o/r.git", "git@github.com:o/r.git"),  # scp form: a user name, no secret
])
def test_userinfo_is_stripped_from_published_urls(url, public):
    assert compose.without_userinfo(url) == public


def test_the_source_label_and_dockerfile_carry_no_token(tmp_path):
    from trtis_build.image.base import BaseImage

    base = BaseImage("b", "sha256:" + "a" * 64, {"layers": []}, {"config": {}}, None, None, None)
    settings = compose.ComposeSettings(bundle_dir=tmp_path, tag="t:1",
                                       source="https://ci:s3cr3t-token@git.example.com/ops.git")
    labels = compose.image_labels({"libraries": []}, b"{}", base, settings)
    assert labels["org.opencontainers.image.source"] == "https://git.example.com/ops.git"
    config = {"config": {"Entrypoint": ["/x"], "Cmd": ["y"]}}
    text = compose.dockerfile_text(compose.Composed(None, None, config, None, base, labels, [], 0), "ctx")
    assert "s3cr3t" not in text


# --- 4. a damaged base blob is named before it is linked into the image ---------------------

def test_a_corrupt_base_blob_is_named(tmp_path):
    layout = oci.Layout.create(tmp_path / "base")
    desc = layout.add_bytes(b"layer bytes", oci.OCI_LAYER)
    assert layout.verified_blob(desc) == layout.blob_path(desc.digest)
    layout.blob_path(desc.digest).write_bytes(b"layer bytez")  # same size, other content
    with pytest.raises(ImageError, match=f"{desc.digest} .* does not match its digest"):
        layout.verified_blob(desc)
    layout.blob_path(desc.digest).write_bytes(b"short")
    with pytest.raises(ImageError, match="has 5 bytes, its manifest says 11"):
        layout.verified_blob(desc)


# --- 8. the lock file is never a symlink that is followed -------------------------------------

def test_the_lock_refuses_a_symlink_and_leaves_its_target_alone(tmp_path):
    precious = tmp_path / "precious.txt"
    precious.write_text("keep me\n")
    (tmp_path / "build").mkdir()
    (tmp_path / "build" / ".lock").symlink_to(precious)
    with pytest.raises(LockTimeout, match="cannot open the lock file"):
        with FileLock(tmp_path / "build" / ".lock"):
            pass
    assert precious.read_text() == "keep me\n"


def test_a_held_lock_times_out_with_a_message(tmp_path):
    said = []
    with FileLock(tmp_path / ".lock"):
        with pytest.raises(LockTimeout, match="held"):
            with FileLock(tmp_path / ".lock", what="another build", timeout=0.5, on_wait=said.append):
                pass
    assert said and "waiting for another build" in said[0]


# --- 10. every deadline is enforced, with everything the command started -------------------

def test_a_timeout_stops_the_command_and_its_children(tmp_path):
    marker = tmp_path / "child-still-running"
    script = f"(sleep 3; touch {marker}) & sleep 30"
    started = time.monotonic()
    with pytest.raises(CommandError, match="no result within 1 s"):
        process.run(["sh", "-c", script], stage="test", timeout=1)
    assert time.monotonic() - started < 8
    time.sleep(3.5)
    assert not marker.exists()  # the background child went with its parent


def test_secret_output_keeps_stderr_out_of_the_answer_and_the_log(tmp_path):
    log = tmp_path / "log"
    done = process.run(["sh", "-c", "echo answer; echo 'Secret: x' >&2; exit 4"], stage="test",
                       check=False, secret_output=True, log_path=log)
    assert done.output == "answer\n" and done.returncode == 4
    assert not log.exists()


def test_a_probe_started_early_has_a_deadline():
    pending = process.Pending(["sh", "-c", "sleep 30"], stage="test")
    started = time.monotonic()
    with pytest.raises(CommandError, match="no result within 1 s"):
        pending.finish("", timeout=1)
    assert time.monotonic() - started < 8


def test_a_sha256_label_is_what_the_launcher_compares(tmp_path):
    """5: the manifest's sha256 travels in the image config, which the launcher checks."""
    manifest = tmp_path / "manifest.json"
    manifest.write_text('{"schema": 1, "libraries": [], "kernel_libraries": []}')
    digest = hashlib.sha256(manifest.read_bytes()).hexdigest()
    from trtis_server import launch

    assert launch.manifest_digest_problem(str(tmp_path), {"TRTIS_BUNDLE_MANIFEST_SHA256": digest}) is None
    problem = launch.manifest_digest_problem(str(tmp_path), {"TRTIS_BUNDLE_MANIFEST_SHA256": "0" * 64})
    assert "manifest.json was changed" in problem


# --- 6, 7, 9. nothing the tool did not make is replaced or deleted ---------------------------

def test_a_cmake_directory_the_tool_did_not_make_is_never_deleted(tmp_path, pure):
    from types import SimpleNamespace

    from trtis_build.builder import driver
    from trtis_build.core.errors import ConfigError
    from trtis_build.core.options import Options

    options = Options(root=tmp_path, build_dir=tmp_path, bundle_dir=tmp_path / "bundle")  # --build-dir .
    mine = options.cmake_dir / "FindThing.cmake"
    mine.parent.mkdir(parents=True)
    mine.write_text("# the user's own\n")
    tool = SimpleNamespace(path="/usr/bin/true")
    tc = SimpleNamespace(cmake=tool, ninja=tool, cxx=tool, fingerprint="x")
    with pytest.raises(ConfigError, match="was not made by trtis-build"):
        driver._configure(options, tc, tmp_path / "plan.cmake", driver.Progress(echo=lambda _: None))
    assert mine.read_text() == "# the user's own\n"


def test_server_out_never_replaces_a_layout_it_did_not_write(tmp_path):
    base = oci.Layout.create(tmp_path / "base")
    base.write_index([])
    assert "did not write" in compose.replaceable_output(tmp_path / "base")
    ours = oci.Layout.create(tmp_path / "ours")
    ours.write_index([], annotations={compose.WRITTEN_BY: "0.1.0"})
    assert compose.replaceable_output(tmp_path / "ours") is None
    assert compose.replaceable_output(tmp_path / "new") is None
    (tmp_path / "file").write_text("x")
    assert compose.replaceable_output(tmp_path / "file") == "is not a directory"


def test_a_kernels_only_build_never_replaces_a_bundle_with_op_libraries(tmp_path):
    from types import SimpleNamespace

    from trtis_build.builder.plan import BuildPlan
    from trtis_build.bundle import publish
    from trtis_build.core.errors import BundleError

    bundle = tmp_path / "bundle"
    bundle.mkdir()
    (bundle / "manifest.json").write_text(json.dumps({"schema": 1, "kernel_libraries": [], "libraries": [
        {"path": "tensorflow/libaddsub.so", "framework": "tensorflow", "sha256": "0" * 64}]}))
    plan = BuildPlan(cuda_enabled=False, cuda_archs=(), ptx_arch=None, nvcc_flags=(), variables={},
                     targets=(), skipped=())
    options = SimpleNamespace(bundle_dir=bundle, build_dir=tmp_path / "build")
    with pytest.raises(BundleError, match="would replace the bundle"):
        publish.publish(plan, None, options, built_dir=tmp_path / "out", kernels_only=True)
    assert json.loads((bundle / "manifest.json").read_text())["libraries"]


def test_an_image_of_no_op_libraries_is_refused(tmp_path):
    (tmp_path / "kernels").mkdir()
    (tmp_path / "kernels" / "k.so").write_bytes(b"k")
    (tmp_path / "manifest.json").write_text(json.dumps({"schema": 1, "libraries": [], "kernel_libraries": [
        {"path": "kernels/k.so", "sha256": hashlib.sha256(b"k").hexdigest()}]}))
    with pytest.raises(ImageError, match="no op libraries"):
        compose.bundle_files(tmp_path)


# --- 13, 15. op directories and op.toml values that would break the build are refused ------

@pytest.mark.parametrize("name", ["add sub", "addsüb", "a" * 65, "x;$(touch pwned)", "1op"])
def test_an_op_directory_name_that_cannot_name_a_library_is_refused(tmp_path, name, pure):
    from trtis_build.core.errors import OpSpecError
    from trtis_build.ops.discover import discover

    directory = tmp_path / "ops" / "tensorflow" / name
    directory.mkdir(parents=True)
    (directory / "op.toml").write_text('version = "1"\nops = ["A"]\n')
    (directory / "a_op.cc").write_text("")
    with pytest.raises(OpSpecError, match="cannot name a library"):
        discover(tmp_path)


def test_a_source_found_by_convention_may_not_link_outside_the_project(tmp_path, pure):
    from trtis_build.core.errors import OpSpecError
    from trtis_build.ops.discover import discover

    outside = tmp_path / "elsewhere.cc"
    outside.write_text("")
    project = tmp_path / "project"
    directory = project / "ops" / "tensorflow" / "op"
    directory.mkdir(parents=True)
    (directory / "op.toml").write_text('version = "1"\nops = ["A"]\n')
    (directory / "op_op.cc").symlink_to(outside)
    with pytest.raises(OpSpecError, match="outside the project"):
        discover(project)


@pytest.mark.parametrize("version", ["", " ", "1;2", "v1\n"])
def test_an_empty_or_odd_version_is_refused(tmp_path, version, pure):
    from trtis_build.core.errors import OpSpecError
    from trtis_build.ops.discover import discover

    directory = tmp_path / "ops" / "tensorflow" / "op"
    directory.mkdir(parents=True)
    (directory / "op.toml").write_text(f'version = {json.dumps(version)}\nops = ["A"]\n')
    (directory / "op_op.cc").write_text("")
    with pytest.raises(OpSpecError, match="is not a version"):
        discover(tmp_path)


# --- 11. a killed driver leaves no server behind ----------------------------------------------

def test_a_process_started_by_the_driver_dies_with_it(tmp_path):
    import signal
    import subprocess
    import sys

    driver = subprocess.Popen(
        [sys.executable, "-c", "import sys, time\nfrom trtis_build.core import process\n"
         "child = process.start(['sleep', '60'])\nprint(child.pid, flush=True)\ntime.sleep(60)\n"],
        stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    child = int(driver.stdout.readline())
    os.kill(driver.pid, signal.SIGKILL)  # no handler runs: only the kernel can clean up
    driver.wait()
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            os.kill(child, 0)
        except ProcessLookupError:
            break
        try:
            with open(f"/proc/{child}/stat") as stat:  # reaped by init soon; a zombie is dead too
                if stat.read().split(") ", 1)[1].startswith("Z"):
                    break
        except FileNotFoundError:
            break
        time.sleep(0.05)
    else:
        os.kill(child, signal.SIGKILL)
        pytest.fail("the server-like child outlived its killed driver")


# --- 12, 15. user errors are messages with an exit code, never tracebacks -------------------

def _cli(root: Path, *args: str):
    import subprocess
    import sys

    return subprocess.run([sys.executable, "-m", "trtis_build", "-C", str(root), *args], capture_output=True,
                          text=True, timeout=120, env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})


@pytest.mark.parametrize("args, code, says", [
    (("ops", "add", "a" * 300), 3, "too long"),
    (("ops", "build", "--dry-run", "-j", "0"), 2, "jobs must be a positive integer"),
    (("ops", "build", "--dry-run", "-j", "-1"), 2, "jobs must be a positive integer"),
    (("ops", "check", "--gpu-arch", "abc"), 2, "not a CUDA architecture"),
    (("serve", "--startup-timeout", "nan"), 2, "finite number of seconds"),
    (("model", "add", 'bad"name', "--savedmodel", "/nonexistent"), 11, "invalid model name"),
])
def test_bad_input_is_an_error_not_a_traceback(tmp_path, args, code, says):
    (tmp_path / "ops").mkdir()
    result = _cli(tmp_path, *args)
    assert (result.returncode, "Traceback" in result.stderr) == (code, False), result.stderr
    assert says in result.stderr


def test_a_build_dir_that_is_a_file_is_an_error_not_a_traceback(tmp_path):
    from trtis_build.ops.scaffold import scaffold

    scaffold(tmp_path, "addsub")
    (tmp_path / "build").write_text("a file where the build directory belongs\n")
    result = _cli(tmp_path, "ops", "build", "--dry-run")
    assert result.returncode == 12 and "Traceback" not in result.stderr, result.stderr
    assert "a file is in the way" in result.stderr
    assert (tmp_path / "build").read_text().startswith("a file")


def _a_dead_pid() -> int:
    """A pid no process can have (above the kernel's pid_max): a run that was killed, without
    the race of a reused pid on a busy machine."""
    return int(Path("/proc/sys/kernel/pid_max").read_text()) + 7


# --- 14. what a killed run left half-written is cleaned up; bad paths create nothing --------

def test_scratch_left_by_a_killed_process_is_removed_and_a_live_ones_kept(tmp_path):
    from trtis_build.core.files import scratch_path

    dead = _a_dead_pid()
    (tmp_path / f"img.tar.{dead}.tmp").write_bytes(b"398 MB once")
    (tmp_path / f".model.{dead}.adding").mkdir()
    alive = tmp_path / f"img.tar.{os.getppid()}.tmp"
    alive.write_bytes(b"another run, still going")
    mine = scratch_path(tmp_path, "img.tar", "tmp")
    assert mine == tmp_path / f"img.tar.{os.getpid()}.tmp"
    assert not (tmp_path / f"img.tar.{dead}.tmp").exists() and alive.exists()
    scratch_path(tmp_path, ".model", "adding")
    assert not (tmp_path / f".model.{dead}.adding").exists()


def test_a_missing_project_root_creates_nothing(tmp_path):
    result = _cli(tmp_path / "nonexistent", "ops", "build")
    assert result.returncode == 2 and "no such directory" in result.stderr
    assert not (tmp_path / "nonexistent").exists()


def test_a_bundle_out_without_a_name_is_refused_before_anything_is_written(tmp_path):
    from types import SimpleNamespace

    from trtis_build.bundle import publish
    from trtis_build.core.errors import BundleError

    options = SimpleNamespace(bundle_dir=Path("/"), build_dir=tmp_path)
    with pytest.raises(BundleError, match="cannot hold a bundle"):
        publish.publish(None, None, options, built_dir=tmp_path)
    assert not Path("/..versions").exists()


def test_leftovers_of_a_killed_serve_run_are_reaped(tmp_path):
    import subprocess
    import sys

    from trtis_build.serving import server

    dead = _a_dead_pid()
    mark = f"trtis_{dead}_deadbeef_"
    # A stand-in for an orphaned Python stub: a real process whose command line carries the
    # run's shared-memory prefix, as the stubs' do.
    stub = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", f"{mark}region"])
    region = server.SHM_DIR / f"{mark}region"
    region.write_bytes(b"x")
    runtime = Path(server.tempfile.gettempdir()) / f"trtis-serve-{dead}-abc"
    runtime.mkdir()
    live_region = server.SHM_DIR / f"trtis_{os.getpid()}_deadbeef_region"
    live_region.write_bytes(b"this run's own")
    try:
        removed = []
        deadline = time.monotonic() + 10
        while stub.poll() is None and time.monotonic() < deadline:  # a loaded machine may lag
            removed += server.reap_stale_runs()
            time.sleep(0.1)
        assert stub.wait(timeout=5) == -9
        assert not region.exists() and not runtime.exists() and live_region.exists()
        assert f"process {stub.pid}" in removed
    finally:
        stub.kill()
        live_region.unlink(missing_ok=True)
        region.unlink(missing_ok=True)


@pytest.mark.compile
def test_a_semicolon_in_a_flag_stays_one_compiler_argument(tmp_path):
    """13: real CMake configures the generated plan; the flag reaches the compiler whole."""
    import shlex
    import shutil
    import subprocess

    from trtis_build.builder.driver import CMAKE_SOURCE_DIR
    from trtis_build.builder.plan import make_plan, write_plan
    from trtis_build.ops.discover import discover

    from .conftest import EXAMPLE_TF, make_project
    from .test_plan_names import toolchain

    root = make_project(tmp_path / "p", EXAMPLE_TF)
    op_toml = root / "ops" / "tensorflow" / "addsub" / "op.toml"
    op_toml.write_text(op_toml.read_text() + "\ncxx_flags = ['-DTRTIS_NOTE=\"a;b\"', '-O2']\n")
    plan = make_plan(discover(root), toolchain(cuda=None), output_dir=tmp_path / "out", build_dir=tmp_path)
    write_plan(plan, tmp_path / "plan.cmake")
    subprocess.run(["cmake", "-S", str(CMAKE_SOURCE_DIR), "-B", str(tmp_path / "cmake"), "-G", "Ninja",
                    f"-DCMAKE_CXX_COMPILER={shutil.which('g++')}", f"-DTRTIS_PLAN={tmp_path / 'plan.cmake'}",
                    "-DCMAKE_EXPORT_COMPILE_COMMANDS=ON"], check=True, capture_output=True, timeout=120)
    commands = json.loads((tmp_path / "cmake" / "compile_commands.json").read_text())
    [adapter] = [c for c in commands if c["file"].endswith("addsub_op.cc")]
    arguments = shlex.split(adapter["command"])
    assert '-DTRTIS_NOTE="a;b"' in arguments and "-O2" in arguments


# --- 12. a malformed manifest is an error with its place, in the build and in the image ------

@pytest.mark.parametrize("libraries, says", [
    ([{"framework": "tensorflow"}], "libraries[0] has no 'path' string"),
    ([{"path": "tensorflow/liba.so"}], "libraries[0] has no 'framework' string"),
    ([{"path": "/etc/passwd", "framework": "tensorflow"}], "is not inside the bundle"),
    ([{"path": "a.so", "framework": "tensorflow", "ops": "A"}], "'ops' that is not a list"),
    ([{"path": "a.so", "framework": "tensorrt", "autoload": {"path": "../x.so"}}], "'autoload'"),
    (["a.so"], "libraries[0] is not an object"),
    ({"a.so": 1}, "'libraries' must be a list"),
])
def test_a_malformed_manifest_is_refused_where_it_is_read(tmp_path, libraries, says):
    import subprocess
    import sys

    from trtis_build.bundle.manifest import read_manifest
    from trtis_build.core.errors import BundleError

    (tmp_path / "manifest.json").write_text(json.dumps({"schema": 1, "libraries": libraries,
                                                        "kernel_libraries": []}))
    with pytest.raises(BundleError, match=says.replace("[", r"\[").replace("]", r"\]")):
        read_manifest(tmp_path)
    launcher = Path(__file__).resolve().parent.parent / "server" / "trtis-launch"
    launched = subprocess.run([sys.executable, str(launcher), "--trtis-check"], capture_output=True, text=True,
                                 timeout=60, env={**os.environ, "TRTIS_LAUNCH_BUNDLE": str(tmp_path)})
    assert launched.returncode == 3 and "Traceback" not in launched.stderr
    assert says.split("'")[0].strip() in launched.stderr


def test_ops_add_refuses_a_builtin_op_name(tmp_path, pure):
    from trtis_build.core.errors import ScaffoldError
    from trtis_build.ops.scaffold import scaffold

    from .test_plan_names import TF

    with pytest.raises(ScaffoldError, match="TensorFlow built-in"):
        scaffold(tmp_path, "my_add", op_name="Add", framework_info=TF)
    assert not (tmp_path / "ops" / "tensorflow" / "my_add").exists()
    scaffold(tmp_path, "my_add", op_name="MyTeamAdd", framework_info=TF)


def test_a_harness_value_that_is_not_a_table_is_refused(tmp_path, pure):
    from trtis_build.core.errors import OpSpecError
    from trtis_build.ops.discover import discover

    directory = tmp_path / "ops" / "tensorflow" / "op"
    directory.mkdir(parents=True)
    (directory / "op.toml").write_text('version = "1"\nops = ["A"]\nharness = "x"\n')
    (directory / "op_op.cc").write_text("")
    with pytest.raises(OpSpecError, match=r"\[harness\] must be a table"):
        discover(tmp_path)


def test_the_log_is_written_line_by_line(tmp_path):
    """14: a build log a killed run leaves says how far it got."""
    import threading

    log = tmp_path / "build.log"
    worker = threading.Thread(target=process.run, args=(["sh", "-c", "echo first step; sleep 3"],),
                              kwargs={"stage": "test", "log_path": log})
    worker.start()
    deadline = time.monotonic() + 2.5
    while time.monotonic() < deadline and "first step" not in (log.read_text() if log.exists() else ""):
        time.sleep(0.05)
    assert "first step" in log.read_text()
    worker.join()


def _descendant_named(pid: int, name: str) -> int | None:
    children: dict[int, list[int]] = {}
    names = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            comm, rest = stat.split("(", 1)[1].rsplit(") ", 1)
            names[int(entry.name)] = comm
            children.setdefault(int(rest.split()[1]), []).append(int(entry.name))
    todo = [pid]
    while todo:
        current = todo.pop()
        if names.get(current) == name and current != pid:
            return current
        todo += children.get(current, [])
    return None


@pytest.mark.compile
@pytest.mark.tensorflow
@needs_tf
def test_a_ctrl_c_that_reaches_only_ninja_is_an_interruption(tmp_path):
    """15: the user's Ctrl-C may reach Ninja alone (a CI runner signalling the build tool):
    that is an interruption (exit 130, the previous bundle kept), not a failed build."""
    import signal
    import subprocess
    import sys

    from .conftest import EXAMPLE_TF, make_project

    root = make_project(tmp_path / "p", EXAMPLE_TF)
    proc = subprocess.Popen([sys.executable, "-m", "trtis_build", "ops", "build", "--no-cuda"], cwd=root,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "CI": "1"})
    try:
        for line in proc.stderr:
            if line.startswith("["):  # Ninja's first status line: it is compiling
                break
        ninja = None
        deadline = time.monotonic() + 30
        while ninja is None and time.monotonic() < deadline:
            ninja = _descendant_named(proc.pid, "ninja")
        assert ninja is not None, "no ninja under the build"
        os.kill(ninja, signal.SIGINT)
        rest = proc.stderr.read()
        assert proc.wait(timeout=120) == 130, rest
        assert "interrupted" in rest and "Traceback" not in rest
        assert not (root / "build" / "bundle").exists()  # nothing half-published
    finally:
        proc.kill()


def test_a_registry_that_asks_for_nothing_runs_no_credential_helper(tmp_path, monkeypatch):
    """2: helpers run only for a registry that challenges, never merely because it is named."""
    marker = tmp_path / "helper-ran"
    env = _helper(tmp_path, monkeypatch, f"touch {marker}\necho '{{\"Username\": \"u\", \"Secret\": \"s\"}}'\n")
    client = registry.Registry("127.0.0.1:9", env=env)
    assert not marker.exists()
    assert client.creds == ("u", "s") and marker.exists()  # asked for: now it runs


def test_a_lock_path_that_is_a_directory_is_a_message(tmp_path):
    (tmp_path / ".lock").mkdir()
    with pytest.raises(LockTimeout, match="cannot open the lock file"):
        with FileLock(tmp_path / ".lock"):
            pass


def test_a_python_that_cannot_run_is_a_message_not_a_traceback(tmp_path):
    from trtis_build.ops.scaffold import scaffold

    scaffold(tmp_path, "addsub")
    not_executable = tmp_path / "python3"
    not_executable.write_text("not a program\n")
    result = _cli(tmp_path, "ops", "build", "--dry-run", "--python", str(not_executable))
    assert result.returncode != 0 and "Traceback" not in result.stderr, result.stderr
    assert str(not_executable) in result.stderr


@pytest.mark.tensorflow
@needs_tf
def test_ops_add_on_the_command_line_refuses_a_builtin_name(tmp_path):
    (tmp_path / "ops").mkdir()
    result = _cli(tmp_path, "ops", "add", "my_add", "--op-name", "Add")
    assert result.returncode == 3 and "TensorFlow built-in" in result.stderr, result.stderr
    assert not (tmp_path / "ops" / "tensorflow" / "my_add").exists()
    assert _cli(tmp_path, "ops", "add", "my_add", "--op-name", "MyTeamAdd").returncode == 0


@pytest.mark.parametrize("flag", ["--archive", "--dockerfile"])
def test_server_output_files_are_checked_before_any_work(tmp_path, flag):
    (tmp_path / "ops").mkdir()
    result = _cli(tmp_path, "server", "--no-build", flag, str(tmp_path / "ops"))
    assert result.returncode == 2 and "is a directory" in result.stderr, result.stderr
    (tmp_path / "notes.txt").write_text("a file\n")
    result = _cli(tmp_path, "server", "--no-build", flag, str(tmp_path / "notes.txt" / "x"))
    assert result.returncode == 2 and "is a file, not a directory" in result.stderr, result.stderr
    assert (tmp_path / "notes.txt").read_text() == "a file\n" and not (tmp_path / "build").exists()


def test_a_tag_that_names_no_valid_image_is_refused_without_push(tmp_path):
    (tmp_path / "ops").mkdir()
    result = _cli(tmp_path, "server", "--no-build", "--tag", "Bad Name:1")
    assert result.returncode == 10 and "not a valid image reference" in result.stderr, result.stderr


def test_the_image_config_records_the_manifest_digest_for_the_launcher(tmp_path):
    from trtis_build.image.base import BaseImage

    base = BaseImage("b", "sha256:" + "a" * 64, {"layers": []},
                     {"config": {"Env": ["TRTIS_BUNDLE_MANIFEST_SHA256=stale"]}, "rootfs": {"diff_ids": []}},
                     None, None, None)
    layer = oci.Layer(oci.Descriptor(oci.OCI_LAYER_GZIP, "sha256:" + "2" * 64, 10), "sha256:" + "3" * 64, 20)
    labels = {"org.trtis-build.bundle.manifest.sha256": "f" * 64}
    config = compose.image_config(base, layer, labels, epoch=0)
    assert config["config"]["Env"] == ["TRTIS_BUNDLE=/opt/tritonserver/ops", f"TRTIS_BUNDLE_MANIFEST_SHA256={'f' * 64}"]
    text = compose.dockerfile_text(compose.Composed(None, None, config, None, base, labels, [], 0), "ctx")
    assert f"ENV TRTIS_BUNDLE_MANIFEST_SHA256={'f' * 64}" in text


@pytest.fixture
def small_filesystem(tmp_path):
    """A real 64 KiB tmpfs (needs CAP_SYS_ADMIN, which CI's root has), read-write or read-only."""
    import subprocess

    mounts = []

    def mount(name: str, *options: str) -> Path:
        point = tmp_path / name
        point.mkdir()
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", ",".join(("size=64k", *options)), "tmpfs", str(point)],
                              capture_output=True, text=True)
        if done.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
        mounts.append(point)
        return point

    yield mount
    for point in mounts:
        subprocess.run(["umount", str(point)], check=False)


def test_a_full_disk_or_read_only_build_dir_is_a_message(tmp_path, small_filesystem):
    from trtis_build.ops.scaffold import scaffold

    scaffold(tmp_path, "addsub")
    read_only = small_filesystem("ro", "ro")
    result = _cli(tmp_path, "ops", "build", "--dry-run", "--build-dir", str(read_only / "build"))
    assert result.returncode == 12 and "Traceback" not in result.stderr, result.stderr
    assert "writable file system" in result.stderr
    full = small_filesystem("full")
    with open(full / "filler", "wb") as filler:
        try:
            filler.write(b"\0" * (80 << 10))
        except OSError:
            pass  # ENOSPC: full, as intended
    result = _cli(tmp_path, "ops", "build", "--dry-run", "--build-dir", str(full / "build"))
    assert result.returncode == 12 and "Traceback" not in result.stderr, result.stderr
    assert "free disk space" in result.stderr


def test_a_cached_base_blob_is_hashed_once_and_a_changed_one_still_caught(tmp_path, monkeypatch):
    """4, without hashing a cached base of hundreds of MB on every compose."""
    monkeypatch.setenv("TRTIS_BUILD_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(oci, "_VERIFIED", oci._VerifiedBlobs())
    layout = oci.Layout.create(tmp_path / "cache" / "bases" / "b")
    desc = layout.add_bytes(b"layer bytes", oci.OCI_LAYER)
    layout.verified_blob(desc)
    hashed = []
    monkeypatch.setattr(oci, "sha256_digest", lambda path: hashed.append(path) or desc.digest)
    layout.verified_blob(desc)
    assert hashed == []  # known by identity: not read again
    monkeypatch.undo()
    monkeypatch.setenv("TRTIS_BUILD_CACHE_DIR", str(tmp_path / "cache"))
    path = layout.blob_path(desc.digest)
    path.write_bytes(b"layer bytez")
    os.utime(path, ns=(time.time_ns() + 10**9, time.time_ns() + 10**9))
    with pytest.raises(ImageError, match="does not match its digest"):
        layout.verified_blob(desc)
