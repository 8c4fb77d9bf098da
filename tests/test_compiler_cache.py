"""The compiler cache and reproducible libraries: the compile launcher's relative paths, the
sccache report, and real builds through a real sccache with a real Redis on 127.0.0.1 (two
clones at different paths share hits and publish byte-identical bundles; a rerun after
`build/` was removed hits; a change of flags or CUDA architectures misses), `doctor` and
`trtis-build cache`."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import trtis, free_port
from trtis_build.builder import compiler_cache
from trtis_build.builder.compile_launcher import relative_args
from trtis_build.core.errors import ConfigError
from trtis_build.core.options import resolve_options
from trtis_build.core.redact import scrub_urls

LAUNCHER = Path(compiler_cache.__file__).with_name("compile_launcher.py")


# --- units --------------------------------------------------------------------------------------

def test_launcher_makes_paths_under_the_root_and_the_build_dir_relative():
    args = ["-I/p/ops/a", "-isystem", "/p/.venv/tf/include", "-o", "CMakeFiles/x.o", "-c",
            "/p/build/cmake/src/ops/a/x.cc", "-Xcompiler=-I/p/x,-fPIC", "-ccbin=/usr/bin/g++",
            "/usr/include/x.h", "-MF", "/p/build/cmake/t/x.o.d", "/p", "/pother/y.cc",
            "-Xcudafe=--orig_src_path_name=/p/build/cmake/src/ops/a/k.cu"]
    assert relative_args(args, "/p", "/p/build/cmake") == [
        "-Isrc/ops/a", "-isystem", "src/.venv/tf/include", "-o", "CMakeFiles/x.o", "-c",
        "src/ops/a/x.cc", "-Xcompiler=-Isrc/x,-fPIC", "-ccbin=/usr/bin/g++",
        "/usr/include/x.h", "-MF", "t/x.o.d", "src", "/pother/y.cc",
        "-Xcudafe=--orig_src_path_name=src/ops/a/k.cu"]


def test_launcher_runs_the_compiler_with_the_rewritten_arguments(tmp_path):
    (tmp_path / "build").mkdir()
    command = [sys.executable, "-S", LAUNCHER, str(tmp_path), "--", "echo", f"-I{tmp_path}/ops", f"{tmp_path}/build/x.o"]
    # Without the driver's link (the IDE entry's build), root paths stay absolute.
    unlinked = subprocess.run(command, cwd=tmp_path / "build", capture_output=True, text=True, check=True)
    assert unlinked.stdout.split() == [f"-I{tmp_path}/ops", "x.o"]
    (tmp_path / "build" / "src").symlink_to("..")
    linked = subprocess.run(command, cwd=tmp_path / "build", capture_output=True, text=True, check=True)
    assert linked.stdout.split() == ["-Isrc/ops", "x.o"]
    missing = subprocess.run([sys.executable, "-S", LAUNCHER, str(tmp_path), "--", "no-such-compiler-here"],
                             capture_output=True, text=True)
    assert missing.returncode == 127 and "cannot run no-such-compiler-here" in missing.stderr


def test_a_cuda_source_is_compiled_from_a_private_copy_at_one_path(tmp_path, monkeypatch):
    """The same text in two checkouts gives one copy path (so nvcc's device steps share keys);
    a directory another user could write to is never used; the depfile names the source."""
    from trtis_build.builder import compile_launcher as launcher

    monkeypatch.setattr(launcher, "CUDA_SOURCE_DIR", str(tmp_path / "copies"))
    for clone in ("a", "b"):
        (tmp_path / clone / "ops").mkdir(parents=True)
        (tmp_path / clone / "ops" / "k.cu").write_text("__global__ void k() {}\n")
    monkeypatch.chdir(tmp_path / "a")
    args, copy, source = launcher._nvcc_from_stable_copy(["-O3", "-MD", "-MF", "k.d", "-c", "ops/k.cu", "-o", "k.o"])
    assert args == ["-O3", "-MD", "-MF", "k.d", "-Xcompiler=-iquote,ops", "-c", copy, "-o", "k.o"]
    assert source == "ops/k.cu" and Path(copy).read_text() == "__global__ void k() {}\n"
    assert Path(copy).parent.stat().st_mode & 0o777 == 0o700
    monkeypatch.chdir(tmp_path / "b")
    assert launcher._nvcc_from_stable_copy(["-c", "ops/k.cu", "-o", "k.o"])[1] == copy
    Path("k.d").write_text(f"k.o : {copy} \\\n  ops/k.h\n")
    launcher._restore_depfile(["-MF", "k.d"], copy, "ops/k.cu")
    assert Path("k.d").read_text() == "k.o : ops/k.cu \\\n  ops/k.h\n"
    (tmp_path / "copies").chmod(0o777)  # writable by others: compile the source itself
    assert launcher._nvcc_from_stable_copy(["-c", "ops/k.cu", "-o", "k.o"]) is None
    assert launcher._nvcc_from_stable_copy(["-c", "ops/k.cc", "-o", "k.o"]) is None  # only .cu


# The lines sccache's server writes at SERVER_LOG_FILTER (0.16): an nvcc request with its own
# nested requests (bare names in sccache's scratch directory), a g++ hit, and two g++ requests.
SERVER_LOG = """\
[2026-12-03T08:34:43Z DEBUG sccache::compiler::compiler] [tf_a_cuda.k.cu.o]: get_cached_or_compile: ["-c", "src/ops/a/k.cu", "-o", "tf_a_cuda/tf_a_cuda.k.cu.o"]
[2026-12-03T08:34:43Z DEBUG sccache::compiler::compiler] [k.module_id]: get_cached_or_compile: ["--orig_src_path_name", "/p/ops/a/k.cu"]
[2026-12-03T08:34:43Z DEBUG sccache::server] [k.module_id]: compile result: cache miss
[2026-12-03T08:34:43Z DEBUG sccache::compiler::compiler] [k.compute_90.ptx]: get_cached_or_compile: ["k.ii", "-o", "k.compute_90.ptx"]
[2026-12-03T08:34:43Z DEBUG sccache::server] [k.compute_90.ptx]: compile result: cache miss
[2026-12-03T08:34:43Z DEBUG sccache::compiler::compiler] [tf_a_cuda.k.cu.o]: get_cached_or_compile: ["-x", "c++", "-o", "tf_a_cuda/tf_a_cuda.k.cu.o"]
[2026-12-03T08:34:43Z DEBUG sccache::server] [tf_a_cuda.k.cu.o]: compile result: {host}
[2026-12-03T08:34:43Z DEBUG sccache::server] [tf_a_cuda.k.cu.o]: compile result: not cacheable
[2026-12-03T08:34:43Z DEBUG sccache::compiler::compiler] [x.cc.o]: get_cached_or_compile: ["-c", "src/ops/a/x.cc", "-o", "CMakeFiles/a.dir/src/ops/a/x.cc.o"]
[2026-12-03T08:34:43Z DEBUG sccache::compiler::compiler] [y.cc.o]: get_cached_or_compile: ["-c", "src/ops/b/y.cc", "-oCMakeFiles/b.dir/y.cc.o"]
[2026-12-03T08:34:43Z DEBUG sccache::server] [x.cc.o]: compile result: cache hit
[2026-12-03T08:34:43Z DEBUG sccache::server] [y.cc.o]: compile result: cache miss
"""


def test_compile_steps_are_the_builds_own_requests_with_their_results():
    steps = compiler_cache.compile_steps(SERVER_LOG.format(host="cache miss"))
    # nvcc's step: its host compile missed, the whole is "not cacheable" to sccache: a miss.
    assert steps == [{"output": "tf_a_cuda/tf_a_cuda.k.cu.o", "result": "cache miss"},
                     {"output": "CMakeFiles/a.dir/src/ops/a/x.cc.o", "result": "cache hit"},
                     {"output": "CMakeFiles/b.dir/y.cc.o", "result": "cache miss"}]
    # Host object from the cache, device code compiled (another checkout): partial, not a hit.
    assert compiler_cache.compile_steps(SERVER_LOG.format(host="cache hit"))[0]["result"] == "partial"
    all_hits = SERVER_LOG.format(host="cache hit").replace("compile result: cache miss", "compile result: cache hit")
    assert [s["result"] for s in compiler_cache.compile_steps(all_hits)] == ["cache hit"] * 3
    assert compiler_cache.compile_steps("no sccache lines\n[x]: compile result: cache hit\n") == []


def test_a_silent_fallback_to_the_local_disk_is_reported_by_setting_name_only():
    env = {"SCCACHE_REDIS_ENDPOINT": "redis://user:hunter2@10.0.0.1:6379"}
    warning = compiler_cache.fell_back('Local disk: "/root/.cache/sccache"', env)
    assert "SCCACHE_REDIS_ENDPOINT" in warning and "hunter2" not in warning
    assert compiler_cache.fell_back("redis, name: redis://10.0.0.1:6379, prefix: /", env) is None
    assert compiler_cache.fell_back('Local disk: "/x"', {}) is None
    assert scrub_urls("redis, name: redis://u:pw@h:1, s3://k@b/x") == "redis, name: redis://h:1, s3://b/x"


def test_the_compiler_cache_setting_is_checked_in_every_layer(tmp_path):
    options = resolve_options(root=tmp_path, env={"TRTIS_BUILD_COMPILER_CACHE": "sccache"}, cli={})
    assert options.compiler_cache == "sccache" and options.sources["compiler_cache"] == "TRTIS_BUILD_COMPILER_CACHE"
    assert resolve_options(root=tmp_path, env={}, cli={}).compiler_cache == "none"
    with pytest.raises(ConfigError, match="compiler-cache must be one of none, sccache"):
        resolve_options(root=tmp_path, env={"TRTIS_BUILD_COMPILER_CACHE": "ccache"}, cli={})
    with pytest.raises(ConfigError, match="not 'sccach'") as error:
        resolve_options(root=tmp_path, env={}, cli={"compiler_cache": "sccach"})
    assert str(error.value.where) == "--compiler-cache"


# --- real sccache, real Redis ------------------------------------------------------------------


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory):
    server = shutil.which("redis-server")
    if server is None:
        pytest.skip("redis-server not installed (scripts/setup.sh installs it)")
    if compiler_cache.locate(os.environ) is None:
        pytest.skip("sccache not installed (the cache extra: scripts/setup.sh installs it)")
    port = free_port()
    workdir = tmp_path_factory.mktemp("redis")
    proc = subprocess.Popen([server, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                             "--dir", str(workdir)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 20
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                pytest.fail("redis-server did not start")
            time.sleep(0.05)
    yield f"redis://127.0.0.1:{port}"
    proc.terminate()
    proc.wait(timeout=10)


def _cache_env(redis_url: str, tmp: Path) -> dict[str, str]:
    # SCCACHE_DIR: were Redis to fail, sccache would fall back to this (and the backend check catches it).
    return {"TRTIS_BUILD_COMPILER_CACHE": "sccache", "SCCACHE_REDIS_ENDPOINT": redis_url,
            "SCCACHE_DIR": str(tmp / "sccache-local")}


def _build(project: Path, env: dict[str, str], *extra: str) -> dict:
    has_nvcc = shutil.which("nvcc") or Path("/usr/local/cuda/bin/nvcc").is_file()
    args = ["ops", "build", "--json", *(["--cuda-arch", "90"] if has_nvcc else []), *extra]
    return json.loads(trtis(*args, cwd=project, env=env).stdout)


def _digests(bundle: Path) -> dict[str, str]:
    return {str(p.relative_to(bundle)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(bundle.rglob("*")) if p.is_file() and (p.suffix == ".so" or p.name == "manifest.json")}


def _new_project(path: Path) -> Path:
    path.mkdir(parents=True)
    trtis("ops", "add", "cached", "--framework", "torch", cwd=path)
    return path


@pytest.mark.compile
@pytest.mark.torch
@pytest.mark.cache
def test_two_clones_share_the_cache_and_publish_identical_bundles(redis_url, tmp_path):
    pytest.importorskip("torch")
    env = _cache_env(redis_url, tmp_path)
    first = _new_project(tmp_path / "runner-1" / "checkout")
    cold = _build(first, env)["compiler_cache"]
    assert cold["backend"].startswith("redis") and redis_url.removeprefix("redis://") in cold["backend"]
    assert cold["steps"] and cold["hits"] == 0 and cold["misses"] == len(cold["steps"]), cold
    assert "cache miss" in (first / "build" / "build.log").read_text()

    # Another checkout at another path (a second CI runner): every compile comes from Redis.
    second = tmp_path / "elsewhere" / "deeper" / "clone"
    second.mkdir(parents=True)
    shutil.copytree(first / "ops", second / "ops")
    # Another checkout at another path (a second CI runner): every compile comes from Redis,
    # nvcc's device front end (cudafe++, cicc) included: the launcher compiles each .cu from a
    # copy at one fixed path, since sccache 0.16 keys those by the source's absolute path.
    warm = _build(second, env)["compiler_cache"]
    assert len(warm["steps"]) == len(cold["steps"]), warm
    assert all(step["result"] == "cache hit" for step in warm["steps"]), warm
    assert warm["hits"] == len(warm["steps"]) and any(s["output"].endswith(".cu.o") for s in warm["steps"])
    assert _digests(second / "build" / "bundle") == _digests(first / "build" / "bundle")
    log = (second / "build" / "build.log").read_text()
    assert f"{warm['hits']} of {len(warm['steps'])} compile steps from the cache" in log and "cache hit" in log

    # The same checkout after `rm -r build`: all hits, nvcc's device code included.
    shutil.rmtree(second / "build")
    again = _build(second, env)["compiler_cache"]
    assert again["hits"] == len(again["steps"]) > 0

    # A flag changes the adapter's compile (and only it); another CUDA architecture the kernel's.
    toml = second / "ops" / "torch" / "cached" / "op.toml"
    toml.write_text(toml.read_text() + '\ncxx_flags = ["-DTRTIS_CACHE_TEST=1"]\n')
    flagged = _build(second, env)["compiler_cache"]
    missed = {step["output"] for step in flagged["steps"] if step["result"] == "cache miss"}
    assert missed and all(".cc.o" in output for output in missed), flagged
    # A header's text (what a new TensorFlow, TensorRT or torch changes) is in the key: every
    # compile that includes it misses (the adapter, the CPU and the CUDA kernel all do; a
    # comment alone would not: the key is the preprocessed text).
    header = second / "ops" / "torch" / "cached" / "cached_kernel.h"
    header.write_text(header.read_text() + "\ninline int cached_header_revision() { return 2; }\n")
    edited = _build(second, env)["compiler_cache"]
    assert edited["steps"] and all(s["result"] == "cache miss" for s in edited["steps"]), edited
    last = edited
    if any(step["output"].endswith(".cu.o") for step in cold["steps"]):
        last = _build(second, env, "--cuda-arch", "80")["compiler_cache"]
        assert [s for s in last["steps"] if s["output"].endswith(".cu.o") and s["result"] == "cache miss"], last

    # `cache stats` reads the last build's report and asks sccache where it stores.
    stats = json.loads(trtis("cache", "stats", "--json", cwd=second, env=env).stdout)
    assert stats["compiler_cache"]["backend"].startswith("redis")
    assert stats["compiler_cache"]["last_build"]["steps"] == last["steps"]


@pytest.mark.compile
@pytest.mark.torch
def test_the_same_sources_give_byte_identical_libraries_at_two_paths(tmp_path):
    """Without any cache: the launcher's relative paths, nvcc's fixed seeds, no paths in the manifest."""
    pytest.importorskip("torch")
    first = _new_project(tmp_path / "a")
    second = tmp_path / "b" / "longer" / "path"
    second.mkdir(parents=True)
    shutil.copytree(first / "ops", second / "ops")
    env = {"TRTIS_BUILD_COMPILER_CACHE": "none"}
    for project in (first, second):
        assert _build(project, env)["compiler_cache"] is None
    digests = _digests(first / "build" / "bundle")
    assert any(name.startswith("torch/") for name in digests)
    assert _digests(second / "build" / "bundle") == digests
    manifest = (first / "build" / "bundle" / "manifest.json").read_text()
    assert str(first) not in manifest and str(Path(sys.executable).parent) not in manifest


@pytest.mark.cache
def test_doctor_shows_the_storage_and_whether_it_answers(redis_url, tmp_path):
    good = trtis("doctor", "--compiler-cache", "sccache", cwd=tmp_path, env=_cache_env(redis_url, tmp_path))
    assert "answers: yes" in good.stdout and redis_url.removeprefix("redis://") in good.stdout
    dead = f"redis://someone:hunter2@127.0.0.1:{free_port()}"
    bad = trtis("doctor", "--compiler-cache", "sccache", "--json", cwd=tmp_path, check=False,
                env={"SCCACHE_REDIS_ENDPOINT": dead, "SCCACHE_DIR": str(tmp_path / "local")})
    assert bad.returncode == 4, bad.stderr
    report = json.loads(bad.stdout)
    assert report["compiler_cache"]["answers"] is False and report["compiler_cache"]["problem"]
    assert "hunter2" not in bad.stdout + bad.stderr


def test_cache_clean_deletes_only_the_tools_own_caches(tmp_path):
    cache_dir = tmp_path / "user-cache"
    (cache_dir / "bases" / "default-0123").mkdir(parents=True)
    (cache_dir / "bases" / "default-0123" / "index.json").write_text("{}")
    (cache_dir / "bases" / "default-4567.lock").write_text("")
    (cache_dir / "toolchain-abc.json").write_text("{}")
    (cache_dir / "unrelated.txt").write_text("not ours to judge")
    bundle = tmp_path / "build" / "bundle"
    bundle.mkdir(parents=True)
    (bundle / "manifest.json").write_text("{}")
    (tmp_path / "ops").mkdir()
    env = {"TRTIS_BUILD_CACHE_DIR": str(cache_dir)}
    stats = json.loads(trtis("cache", "stats", "--json", cwd=tmp_path, env=env).stdout)
    sizes = {entry["name"]: entry for entry in stats["caches"]}
    assert sizes["toolchain"]["entries"] == 1 and sizes["bases"]["entries"] == 1 and sizes["bases"]["bytes"] == 2
    refused = trtis("cache", "clean", "compiler", cwd=tmp_path, env=env, check=False)
    assert refused.returncode != 0 and "sccache's storage is sccache's own" in refused.stderr
    trtis("cache", "clean", "toolchain", cwd=tmp_path, env=env)
    assert not (cache_dir / "toolchain-abc.json").exists() and (cache_dir / "bases" / "default-0123").is_dir()
    cleaned = json.loads(trtis("cache", "clean", "--json", cwd=tmp_path, env=env).stdout)
    assert {entry["name"] for entry in cleaned["cleaned"]} == {"toolchain", "verification", "bases"}
    assert not (cache_dir / "bases" / "default-0123").exists()
    assert (cache_dir / "bases" / "default-4567.lock").exists() and (cache_dir / "unrelated.txt").exists()
    assert (bundle / "manifest.json").is_file()
