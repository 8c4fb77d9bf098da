"""Unit tests of the image stage: OCI writer/reader, references, credentials, version skew,
labels and the launcher's decisions. No process starts (the `pure` fixture)."""

from __future__ import annotations

import base64
import gzip
import hashlib
import io
import json
import os
import tarfile
from pathlib import Path

import pytest

from trtis_build.image import compose as image
from trtis_build.image import oci
from trtis_build.core.errors import ImageError
from trtis_build.image.base import BaseImage
from trtis_build.image.registry import credentials, parse_reference

from trtis_server import elf
from trtis_server import launch


def _layer(tmp_path: Path, name: str, epoch: int = 0, content: bytes = b"hello\n") -> oci.Layer:
    entries = oci.parent_dirs([oci.bytes_entry("opt/x/b.txt", content),
                               oci.bytes_entry("opt/x/a.sh", b"#!/bin/sh\n", mode=0o755),
                               oci.symlink_entry("opt/x/link", "b.txt")])
    return oci.write_layer(entries, tmp_path / name, epoch=epoch)


def test_layers_are_deterministic(tmp_path, pure):
    first, second = _layer(tmp_path, "one"), _layer(tmp_path, "two")
    assert first.descriptor.digest == second.descriptor.digest
    assert first.diff_id == second.diff_id
    assert _layer(tmp_path, "three", epoch=1).descriptor.digest != first.descriptor.digest
    assert _layer(tmp_path, "four", content=b"other\n").descriptor.digest != first.descriptor.digest
    blob = (tmp_path / "one" / first.descriptor.digest.split(":")[1]).read_bytes()
    assert blob[:4] == b"\x1f\x8b\x08\x00" and blob[4:8] == b"\0\0\0\0"  # gzip: no name, mtime 0
    assert "sha256:" + hashlib.sha256(gzip.decompress(blob)).hexdigest() == first.diff_id


def test_layer_entries_sorted_with_fixed_metadata(tmp_path, pure):
    layer = _layer(tmp_path, "l", epoch=1234)
    blob = tmp_path / "l" / layer.descriptor.digest.split(":")[1]
    with tarfile.open(blob, "r:gz") as tar:
        members = tar.getmembers()
    assert [m.name for m in members] == ["opt", "opt/x", "opt/x/a.sh", "opt/x/b.txt", "opt/x/link"]
    for member in members:
        assert (member.uid, member.gid, member.uname, member.gname, member.mtime) == (0, 0, "", "", 1234)
    modes = {m.name: m.mode for m in members}
    assert modes == {"opt": 0o755, "opt/x": 0o755, "opt/x/a.sh": 0o755, "opt/x/b.txt": 0o644,
                     "opt/x/link": 0o777}


def test_duplicate_entries_refused(tmp_path, pure):
    with pytest.raises(ImageError, match="two layer entries"):
        oci.write_layer([oci.bytes_entry("a", b"1"), oci.bytes_entry("a", b"2")], tmp_path, epoch=0)


def _tiny_image(root: Path, labels=None, env=None) -> tuple[oci.Layout, oci.Descriptor]:
    layout = oci.Layout.create(root)
    layer = _layer(root, "blobs/sha256")
    config = {"architecture": "amd64", "os": "linux",
              "config": {"Env": env or ["PATH=/usr/bin:/bin"], "Labels": labels or {}},
              "rootfs": {"type": "layers", "diff_ids": [layer.diff_id]}}
    config_desc = layout.add_json(config, oci.OCI_CONFIG)
    manifest = {"schemaVersion": 2, "mediaType": oci.OCI_MANIFEST, "config": config_desc.to_json(),
                "layers": [layer.descriptor.to_json()]}
    desc = layout.add_json(manifest, oci.OCI_MANIFEST)
    layout.write_index([oci.Descriptor(desc.media_type, desc.digest, desc.size, {oci.REF_NAME: "t"})])
    return layout, desc


def test_archive_round_trip_keeps_digest(tmp_path, pure):
    layout, desc = _tiny_image(tmp_path / "src")
    archive = oci.write_archive(layout, desc, tmp_path / "image.tar", name="example.com/a:t", epoch=0)
    again = oci.write_archive(layout, desc, tmp_path / "again.tar", name="example.com/a:t", epoch=0)
    assert archive.read_bytes() == again.read_bytes()
    with tarfile.open(archive) as tar:
        names = tar.getnames()
        docker = json.load(tar.extractfile("manifest.json"))
    assert {"oci-layout", "index.json", "manifest.json"} <= set(names)
    assert docker[0]["RepoTags"] == ["example.com/a:t"]
    assert all(path in names for path in [docker[0]["Config"], *docker[0]["Layers"]])
    imported = oci.import_archive(archive, tmp_path / "imported")
    assert imported.find_manifest()[0].digest == desc.digest


def test_docker_only_archive_is_converted(tmp_path, pure):
    """An archive with only docker's manifest.json (docker save before 25) becomes a layout."""
    layout, desc = _tiny_image(tmp_path / "src")
    manifest = layout.read_json(desc.digest)
    layer_digest = manifest["layers"][0]["digest"]
    docker = [{"Config": "config.json", "RepoTags": ["x:1"], "Layers": ["abc/layer.tar"]}]
    with tarfile.open(tmp_path / "docker.tar", "w") as tar:
        for name, data in (("manifest.json", json.dumps(docker).encode()),
                           ("config.json", layout.read_blob(manifest["config"]["digest"])),
                           ("abc/layer.tar", layout.blob_path(layer_digest).read_bytes())):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    converted = oci.import_archive(tmp_path / "docker.tar", tmp_path / "converted")
    _, new_manifest = converted.find_manifest("1")
    assert new_manifest["layers"][0]["digest"] == layer_digest
    assert new_manifest["config"]["digest"] == manifest["config"]["digest"]
    assert sorted(p.name for p in converted.root.iterdir()) == ["blobs", "index.json", "oci-layout"]


def test_corrupt_archive_is_a_clear_error(tmp_path, pure):
    layout, desc = _tiny_image(tmp_path / "src")
    archive = oci.write_archive(layout, desc, tmp_path / "image.tar", name="a:t", epoch=0)
    data = archive.read_bytes()
    archive.write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageError, match="truncated"):
        oci.import_archive(archive, tmp_path / "out")
    archive.write_bytes(data[:2048] + b"\xff" * 700 + data[2748:])  # garbage inside a member header
    with pytest.raises(ImageError, match="not a readable image archive|missing or corrupt|truncated"):
        oci.import_archive(archive, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    assert not list(tmp_path.glob("out.*.partial"))


@pytest.mark.parametrize("text, expected", [
    ("nvcr.io/nvidia/tritonserver:24.10-py3", ("nvcr.io", "nvidia/tritonserver", "24.10-py3")),
    ("ubuntu", ("docker.io", "library/ubuntu", "latest")),
    ("localhost:5000/team/ops", ("localhost:5000", "team/ops", "latest")),
    ("127.0.0.1:5000/ops:1", ("127.0.0.1:5000", "ops", "1")),
    ("docker://quay.io/a/b:c", ("quay.io", "a/b", "c")),
])
def test_parse_reference(text, expected, pure):
    ref = parse_reference(text)
    assert (ref.registry, ref.repository, ref.tag) == expected


@pytest.mark.parametrize("text", ["Upper/Case:1", "a/b:bad tag", "x@sha256:123", ""])
def test_parse_reference_rejects(text, pure):
    with pytest.raises(ImageError):
        parse_reference(text)


def test_credentials_from_docker_config(tmp_path, pure):
    config = tmp_path / "config.json"
    token = base64.b64encode(b"me:secret").decode()
    config.write_text(json.dumps({"auths": {"https://registry.example.com": {"auth": token}}}))
    env = {"DOCKER_CONFIG": str(tmp_path), "HOME": str(tmp_path / "nohome")}
    assert credentials("registry.example.com", env) == ("me", "secret")
    assert credentials("other.example.com", env) is None


def _base(config: dict, name: str = "base") -> BaseImage:
    return BaseImage(name, "sha256:" + "0" * 64, {"layers": []}, config, None)


def test_version_skew_rules(pure):
    manifest = {"toolchain": {"tensorflow": {"version": "2.21.0"}, "cuda": {"version": "13.0"},
                              "tensorrt": {"version": "10.14.1"}},
                "cuda": {"enabled": True},
                "libraries": [{"framework": "tensorflow"}, {"framework": "tensorrt"}]}
    built = image.bundle_versions(manifest)
    assert built == {"tensorflow": "2.21.0", "tensorrt": "10.14.1", "cuda": "13.0"}
    ngc = {"config": {"Env": ["CUDA_VERSION=12.6.2.004", "TENSORRT_VERSION=10.5.0.18"],
                      "Labels": {"org.trtis-build.base.tensorflow.version": "2.21.1"}}}
    declared = image.base_versions(ngc, {})
    assert declared["cuda"] == ("12.6.2.004", "env CUDA_VERSION")
    skew = image.version_skew(built, declared)
    assert [s["framework"] for s in skew] == ["cuda"]  # TF 2.21.x and TensorRT 10.x agree
    declared = image.base_versions(ngc, {"tensorflow": "2.20.0", "cuda": "13.0"})
    assert [s["framework"] for s in image.version_skew(built, declared)] == ["tensorflow"]


def test_skew_is_an_error_unless_allowed(tmp_path, pure):
    manifest = {"toolchain": {"tensorflow": {"version": "2.21.0"}}, "libraries": [{"framework": "tensorflow"}]}
    base = _base({"config": {"Labels": {"org.trtis-build.base.tensorflow.version": "2.19.0"}}})
    settings = image.ComposeSettings(bundle_dir=tmp_path, tag="x")
    with pytest.raises(ImageError, match="tensorflow: bundle built with 2.21.0, base has 2.19.0"):
        image.check_skew(manifest, base, settings, log=lambda _: None)
    allowed = image.ComposeSettings(bundle_dir=tmp_path, tag="x", allow_version_skew=True)
    assert image.check_skew(manifest, base, allowed, log=lambda _: None)[0]["base"] == "2.19.0"


def test_config_keeps_base_and_sets_entrypoint(pure):
    base = _base({"architecture": "amd64", "os": "linux",
                  "config": {"Env": ["PATH=/opt/tritonserver/bin:/usr/bin", "A=1"], "User": "triton",
                             "Labels": {"vendor": "x"}, "Entrypoint": ["/old"]},
                  "rootfs": {"type": "layers", "diff_ids": ["sha256:" + "1" * 64]}})
    layer = oci.Layer(oci.Descriptor(oci.OCI_LAYER_GZIP, "sha256:" + "2" * 64, 10), "sha256:" + "3" * 64, 20)
    config = image.image_config(base, layer, {"org.trtis-build.version": "0.1.0"}, epoch=0)
    inner = config["config"]
    assert inner["Env"] == ["PATH=/opt/tritonserver/bin:/usr/bin", "A=1", "TRTIS_BUNDLE=/opt/tritonserver/ops"]
    assert inner["Entrypoint"] == ["/opt/tritonserver/ops/trtis-launch"] and inner["User"] == "triton"
    assert inner["Labels"] == {"vendor": "x", "org.trtis-build.version": "0.1.0"}
    assert config["rootfs"]["diff_ids"] == ["sha256:" + "1" * 64, "sha256:" + "3" * 64]
    assert base.config["config"]["Entrypoint"] == ["/old"]  # the base is not modified


def test_launcher_command_and_environment(pure, monkeypatch):
    bundle = "/opt/tritonserver/ops"
    manifest = {"libraries": [{"framework": "tensorrt", "path": "tensorrt/liba.so"},
                              {"framework": "tensorrt", "path": "tensorrt/libb.so"},
                              {"framework": "tensorflow", "path": "tensorflow/libc.so"}]}
    paths = launch.op_library_paths(manifest, bundle)
    command = launch.server_command(["--model-repository=/m"], {}, paths, "backend-config")
    assert command == ["tritonserver", "--model-repository=/m", "--backend-config=tensorrt,plugins="
                       "/opt/tritonserver/ops/tensorrt/liba.so;/opt/tritonserver/ops/tensorrt/libb.so"]
    mine = "--backend-config=tensorrt,plugins=/x.so"
    merged = launch.server_command(["tritonserver", mine], {}, paths, "backend-config")
    assert merged[1].startswith(mine + ";/opt/tritonserver/ops/tensorrt/liba.so")
    assert launch.server_command(["bash", "-c", "true"], {}, paths, "backend-config") == ["bash", "-c", "true"]
    preload = launch.server_command([], {}, paths, "preload")
    assert not any(arg.startswith("--backend-config") for arg in preload)
    monkeypatch.setenv("LD_PRELOAD", "/usr/lib/libjemalloc.so")
    env = launch.environment(paths, "preload", bundle)
    assert env["TRTIS_BUNDLE"] == bundle
    assert env["LD_PRELOAD"].split() == ["/opt/tritonserver/ops/tensorrt/liba.so",
                                         "/opt/tritonserver/ops/tensorrt/libb.so", "/usr/lib/libjemalloc.so"]
    assert "libc.so" not in env["LD_PRELOAD"] and env["TRTIS_TF_OP_LIBRARIES"].endswith("tensorflow/libc.so")
    monkeypatch.setenv("LD_PRELOAD", "/opt/tritonserver/ops/tensorflow/libc.so")
    with pytest.raises(launch.CheckError, match="crashes the Python stubs"):
        launch.environment(paths, "backend-config", bundle)


def test_launcher_reads_elf_needed(pure):
    import sysconfig

    library = next(Path(p) for p in ("/lib/x86_64-linux-gnu/libz.so.1", "/usr/lib/x86_64-linux-gnu/libz.so.1",
                                     sysconfig.get_config_var("LIBDIR") + "/libz.so.1") if Path(p).exists())
    assert "libc.so.6" in elf.dynamic_info(str(library))["needed"]
    with pytest.raises(elf.ElfError):
        elf.dynamic_info(__file__)


def test_launcher_check_reports_hash_and_missing(tmp_path, pure):
    (tmp_path / "tensorflow").mkdir()
    (tmp_path / "tensorflow" / "liba.so").write_bytes(b"changed")
    manifest = {"libraries": [
        {"framework": "tensorflow", "path": "tensorflow/liba.so", "sha256": hashlib.sha256(b"orig").hexdigest()},
        {"framework": "tensorflow", "path": "tensorflow/libmissing.so"},
        {"framework": "tensorflow", "path": "../outside.so", "sha256": "0" * 64}]}
    (tmp_path / "tensorflow" / "libnohash.so").write_bytes(b"x")
    manifest["libraries"].append({"framework": "tensorflow", "path": "tensorflow/libnohash.so"})
    problems = launch.check(manifest, str(tmp_path))
    assert len(problems) == 4
    assert "does not match its sha256" in problems[0] and "is missing" in problems[1]
    assert "not a path inside the bundle" in problems[2]
    assert "has no sha256" in problems[3]  # a missing hash must not skip the check


def test_dockerfile_text(pure, tmp_path):
    from trtis_build.image.registry import Reference

    base = BaseImage("nvcr.io/nvidia/tritonserver:24.10-py3", "sha256:" + "a" * 64, {"layers": []},
                     {"config": {}}, None, None, Reference("nvcr.io", "nvidia/tritonserver", "24.10-py3"))
    config = {"config": {"Entrypoint": ["/opt/tritonserver/ops/trtis-launch"], "Cmd": image.DEFAULT_CMD}}
    composed = image.Composed(None, None, config, None, base, {"org.trtis-build.ops": "tensorflow/addsub"}, [], 0)
    text = image.dockerfile_text(composed, "ctx")
    assert "ARG BASE=nvcr.io/nvidia/tritonserver@sha256:" + "a" * 64 in text
    assert "COPY --chown=0:0 ctx/ /" in text
    assert 'LABEL "org.trtis-build.ops"="tensorflow/addsub"' in text
    assert 'ENTRYPOINT ["/opt/tritonserver/ops/trtis-launch"]' in text


def test_source_date_epoch(pure):
    assert oci.source_date_epoch({}) == 0
    assert oci.source_date_epoch({"SOURCE_DATE_EPOCH": "1700000000"}) == 1700000000
    with pytest.raises(ImageError):
        oci.source_date_epoch({"SOURCE_DATE_EPOCH": "yesterday"})


def test_registry_target(pure):
    assert image.registry_target("trtis-server:latest") is None
    assert image.registry_target("localhost:5000/ops:1").registry == "localhost:5000"


def test_tensorrt_autoload_shims_are_what_triton_opens(tmp_path, pure):
    """Triton's plugins= only dlopens: the autoload shim beside a plugin library is what it
    must get, and the shim travels in the image layer."""
    (tmp_path / "tensorrt" / "autoload").mkdir(parents=True)
    for name in ("tensorrt/libp.so", "tensorrt/autoload/libp.so", "tensorrt/libq.so"):
        (tmp_path / name).write_bytes(name.encode())
    manifest = {"schema": 1, "libraries": [
        {"framework": "tensorrt", "op": "p", "path": "tensorrt/libp.so",
         "sha256": hashlib.sha256(b"tensorrt/libp.so").hexdigest()},
        {"framework": "tensorrt", "op": "q", "path": "tensorrt/libq.so",
         "sha256": hashlib.sha256(b"tensorrt/libq.so").hexdigest()}],
        "kernel_libraries": []}
    manifest["libraries"][0]["autoload"] = {"path": "tensorrt/autoload/libp.so",
                                            "sha256": hashlib.sha256(b"tensorrt/autoload/libp.so").hexdigest()}
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    _, _, files = image.bundle_files(tmp_path)
    assert [relative for relative, _ in files] == ["tensorrt/libp.so", "tensorrt/libq.so", "tensorrt/autoload/libp.so"]
    paths = launch.op_library_paths(manifest, str(tmp_path))
    assert paths["tensorrt"] == [str(tmp_path / "tensorrt/autoload/libp.so"), str(tmp_path / "tensorrt/libq.so")]


HELPER = """#!/bin/sh
# A docker credential helper (docker's protocol): `get`, the server on stdin, JSON on stdout.
read server
case "$server" in
  registry.example.com) echo '{"ServerURL": "registry.example.com", "Username": "robot", "Secret": "s3cret"}' ;;
  token.example.com) echo '{"ServerURL": "token.example.com", "Username": "<token>", "Secret": "refresh"}' ;;
  *) echo "credentials not found in native keychain"; exit 1 ;;
esac
"""


@pytest.mark.parametrize("key", ["credHelpers", "credsStore"])
def test_credentials_from_a_docker_credential_helper(tmp_path, key, monkeypatch):
    """A real executable speaking docker's helper protocol stands in for a cloud vendor's."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    helper = bin_dir / "docker-credential-fake"
    helper.write_text(HELPER)
    helper.chmod(0o755)
    config = {"credHelpers": {"registry.example.com": "fake", "token.example.com": "fake"}} \
        if key == "credHelpers" else {"credsStore": "fake"}
    (tmp_path / "config.json").write_text(json.dumps(config))
    env = {"DOCKER_CONFIG": str(tmp_path), "HOME": str(tmp_path / "nohome")}
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    assert credentials("registry.example.com", env) == ("robot", "s3cret")
    assert credentials("other.example.com", env) is None
    with pytest.raises(ImageError, match="identity token"):
        credentials("token.example.com", env)


def test_a_missing_credential_helper_is_a_clear_error(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"credsStore": "nosuchhelper"}))
    env = {"DOCKER_CONFIG": str(tmp_path), "HOME": str(tmp_path / "nohome")}
    with pytest.raises(ImageError, match="docker-credential-nosuchhelper is not installed") as info:
        credentials("registry.example.com", env)
    assert "skopeo login registry.example.com" in info.value.render()
