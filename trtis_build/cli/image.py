"""`trtis-build server`: compose (and optionally push) a Triton server image with the bundle."""

from __future__ import annotations

import argparse
import os
import shutil
import time
from pathlib import Path

from ..core.errors import CommandError, ConfigError
from .common import info, options_from, print_json


def _version_pair(text: str) -> tuple[str, str]:
    from ..image.compose import VERSIONED

    name, sep, version = text.partition("=")
    if not sep or name not in VERSIONED or not version:
        raise argparse.ArgumentTypeError(f"expected FRAMEWORK=VERSION with FRAMEWORK one of "
                                         f"{', '.join(VERSIONED)}, e.g. tensorflow=2.21.0")
    return name, version


def register(subparsers) -> None:
    server = subparsers.add_parser(
        "server", help="compose a Triton server image with the op bundle (no Docker needed)",
        description="Compose an OCI image: the base Triton image plus one reproducible layer with "
                    "the bundle under /opt/tritonserver/ops, its manifest and the trtis-launch "
                    "entrypoint (checks the libraries, passes TensorRT plugins to Triton). Writes an "
                    "OCI layout (--out), optionally a docker/podman-loadable archive, a Dockerfile, "
                    "and pushes to a registry.")
    server.add_argument("--base", metavar="REF",
                        help="base image: REGISTRY/NAME:TAG, oci:DIR[:NAME], an OCI layout dir, or a "
                             "docker/OCI archive (default: a CPU Triton base built from the `server` "
                             "extra and cached)")
    server.add_argument("--base-torch", metavar="SPEC",
                        help="the CPU torch of the default base, added when the bundle has torch ops: a "
                             "version (pip fetches torch==VERSION+cpu), a wheel, or a directory with torch/ "
                             "and its dist-info (default: $TRTIS_BUILD_BASE_TORCH, else 2.13.0)")
    server.add_argument("--tag", default="trtis-server:latest", metavar="NAME[:TAG]",
                        help="image name; with --push a registry reference (default: trtis-server:latest)")
    server.add_argument("--out", metavar="DIR", help="OCI image layout to write (default: build/image)")
    server.add_argument("--archive", nargs="?", const="", metavar="FILE",
                        help="also write one tar for `docker load` / `podman load` (default FILE: <out>.tar)")
    server.add_argument("--dockerfile", metavar="PATH",
                        help="also write the equivalent Dockerfile (and its context next to it)")
    server.add_argument("--push", action="store_true",
                        help="push to the registry named by --tag (auth: docker/skopeo login files); "
                             "a base in the same registry is appended to without downloading its layers")
    server.add_argument("--bundle", metavar="DIR",
                        help="use this bundle as is (default: build/bundle, built or updated first)")
    server.add_argument("--no-build", action="store_true", help="do not build the bundle; use it as is")
    build = server.add_argument_group("bundle build options (as for `ops build`)")
    build.add_argument("--build-dir", metavar="DIR", help="build directory (default: build)")
    build.add_argument("-j", "--jobs", type=int, metavar="N", help="parallel compile jobs")
    build.add_argument("--cuda-arch", metavar="LIST", help="CUDA architectures, e.g. 80,90")
    build.add_argument("--no-cuda", action="store_true", default=None, help="build CPU kernels only")
    build.add_argument("--tensorrt-root", metavar="DIR", help="TensorRT install (headers in include/)")
    build.add_argument("--python", metavar="EXE", help="Python interpreter that has TensorFlow")
    server.add_argument("--plugin-mode", choices=("backend-config", "preload"), default="backend-config",
                        help="how TensorRT plugins reach Triton (default backend-config; preload = LD_PRELOAD)")
    server.add_argument("--base-version", action="append", type=_version_pair, default=[],
                        metavar="FW=VER", help="versions the base has, when its labels do not say "
                                               "(tensorflow=..., tensorrt=..., torch=..., cuda=...; repeatable)")
    server.add_argument("--allow-version-skew", action="store_true",
                        help="compose even when bundle and base framework versions differ")
    server.add_argument("--source", metavar="URL", help="org.opencontainers.image.source (default: CI or git)")
    server.add_argument("--revision", metavar="REV", help="org.opencontainers.image.revision (default: CI or git)")
    server.add_argument("--insecure-registry", action="store_true",
                        help="plain HTTP to the registries (loopback registries are HTTP by default)")
    server.add_argument("--json", action="store_true", help="print the result as JSON on stdout")
    server.set_defaults(handler=cmd_server)


def _git(root: Path, *args: str) -> str | None:
    from ..core import process

    if shutil.which("git") is None:
        return None
    try:
        return process.capture(["git", "-C", str(root), *args], stage="image").strip() or None
    except CommandError:
        return None


def provenance(root: Path, env=os.environ) -> tuple[str | None, str | None]:
    """(source URL, revision) from the CI's variables, else from git."""
    if env.get("GITHUB_REPOSITORY"):
        source = f"{env.get('GITHUB_SERVER_URL', 'https://github.com')}/{env['GITHUB_REPOSITORY']}"
        return source, env.get("GITHUB_SHA")
    if env.get("CI_PROJECT_URL"):
        return env["CI_PROJECT_URL"], env.get("CI_COMMIT_SHA")
    return _git(root, "config", "--get", "remote.origin.url"), _git(root, "rev-parse", "HEAD")


def _bundle_dir(args, options) -> Path:
    if args.bundle:
        return Path(args.bundle).resolve()
    if args.no_build:
        return options.bundle_dir
    from ..bundle.publish import build

    info("bundle: building if needed")
    result = build(options)
    return result.bundle.path


def _check_output_file(flag: str, value: str | None) -> None:
    """Before any work: an output file path must name a file (its missing directories are
    created when it is written), never a directory, and no part of it may be a file."""
    if not value:
        return
    path = Path(value).resolve()
    if path.is_dir():
        raise ConfigError(f"{flag} {value} is a directory", where=path, hint="give a file name, e.g. image.tar")
    blocking = next((parent for parent in path.parents if parent.exists() and not parent.is_dir()), None)
    if blocking is not None:
        raise ConfigError(f"{flag} {value}: {blocking} is a file, not a directory", where=blocking,
                          hint="give a path whose directories are directories")


def cmd_server(args) -> int:
    from ..core.files import scratch_path, swap_directory, user_cache_dir
    from ..image import base as imagebase
    from ..image import compose as image
    from ..image import oci

    started = time.monotonic()
    options = options_from(args)
    from ..image.registry import parse_reference

    parse_reference(args.tag)  # every --tag names a valid image, pushed or not (it is written as its name)
    for flag, value in (("--archive", args.archive), ("--dockerfile", args.dockerfile)):
        _check_output_file(flag, value)
    target = image.registry_target(args.tag)
    if args.push and target is None:
        raise ConfigError(f"--push needs --tag with a registry host, not {args.tag!r}",
                          hint="e.g. --tag registry.example.com/team/triton-ops:1 or localhost:5000/ops:1")
    if args.base_torch and args.base:
        raise ConfigError(f"--base-torch shapes the default base only, but --base {args.base} was given",
                          hint="drop --base-torch (the skew guard checks the torch your base declares), "
                               "or drop --base to use the default base")
    out = Path(args.out).resolve() if args.out else options.build_dir / "image"
    refusal = image.replaceable_output(out)
    if refusal:
        # It is replaced as a whole at the end: never take what an earlier `server` did not write.
        raise ConfigError(f"--out {out} {refusal}; it is left as it is",
                          where=out, hint="give a new directory or one an earlier `trtis-build server` wrote")
    cache = user_cache_dir()
    base_is_registry = args.base is not None and _looks_remote(args.base)
    # Append in place: push into the base's own registry and keep no local copy -> read only
    # the base's manifest and config; its layers are mounted registry-side.
    remote = bool(args.push and not args.out and args.archive is None and base_is_registry
                  and target is not None
                  and imagebase.parse_reference(args.base).registry == target.registry)
    insecure = True if args.insecure_registry else None
    settings = image.ComposeSettings(
        bundle_dir=_bundle_dir(args, options), tag=args.tag, epoch=oci.source_date_epoch(),
        plugin_mode=args.plugin_mode, base_versions=dict(args.base_version),
        allow_version_skew=args.allow_version_skew,
        **dict(zip(("source", "revision"), _provenance_args(args, options.root))))
    # The bundle is checked before any base is fetched or built; its frameworks shape the default base.
    needs = image.bundle_frameworks(settings.bundle_dir)
    if args.base_torch and "torch" not in needs:
        info("  note: --base-torch ignored: the bundle has no torch op libraries")
    info(f"base: {args.base or imagebase.DEFAULT_BASE_NAME}" + (" (remote append)" if remote else ""))
    base = imagebase.open_base(args.base, cache=cache, remote=remote, insecure=insecure, log=info,
                               needs=needs, torch=args.base_torch)
    work = scratch_path(out.parent, f".{out.name}", "partial")
    shutil.rmtree(work, ignore_errors=True)
    result: dict = {}
    try:
        composed = image.compose(base, settings, work, log=info)
        info(f"composed {args.tag}: {composed.manifest.digest} in {composed.seconds:.2f} s "
             f"(layer {composed.layer.descriptor.size:,} bytes, {len(composed.layer.files)} entries)")
        result = _result(args, composed, None if remote else out)
        if args.archive is not None:
            archive = Path(args.archive).resolve() if args.archive else out.with_name(out.name + ".tar")
            archive.parent.mkdir(parents=True, exist_ok=True)
            oci.write_archive(composed.layout, composed.manifest, archive, name=args.tag, epoch=settings.epoch)
            result["archive"] = str(archive)
            info(f"archive: {archive} (docker load -i / podman load -i)")
        if args.dockerfile:
            result["dockerfile"] = str(image.write_dockerfile(composed, settings, Path(args.dockerfile)))
            info(f"dockerfile: {result['dockerfile']}")
        if not remote:
            swap_directory(work, out)
            composed = _relocated(composed, out)
            info(f"image layout: {out} (skopeo copy oci:{out}:{image.image_tag(args.tag)} ...)")
        if args.push:
            result["pushed"] = image.push(composed, args.tag, insecure=insecure, log=info)
            info(f"pushed: {result['pushed']['reference']}")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    result["seconds"] = round(time.monotonic() - started, 3)
    if args.json:
        print_json(result)
    return 0


def _looks_remote(spec: str) -> bool:
    if spec.startswith(("oci:", "oci-archive:", "docker-archive:", "/", "./", "~")):
        return False
    return not Path(spec).expanduser().exists()


def _provenance_args(args, root: Path) -> tuple[str | None, str | None]:
    source, revision = provenance(root)
    return args.source or source, args.revision or revision


def _relocated(composed, out: Path):
    from dataclasses import replace

    from ..image.oci import Layout

    return replace(composed, layout=Layout(out))


def _result(args, composed, out: Path | None) -> dict:
    layer = composed.layer
    return {
        "image": args.tag, "digest": composed.manifest.digest, "layout": str(out) if out else None,
        "base": {"name": composed.base.name, "digest": composed.base.manifest_digest},
        "layer": {"digest": layer.descriptor.digest, "size": layer.descriptor.size,
                  "uncompressed_size": layer.uncompressed_size, "diff_id": layer.diff_id,
                  "files": list(layer.files)},
        "labels": composed.labels, "version_skew": composed.skew,
        "compose_seconds": round(composed.seconds, 3),
    }
