"""`trtis-build server`: compose a Triton server image = a base image + one layer holding
the op bundle, its manifest and the launcher (server/: trtis-launch and the trtis_server
package it runs), without a Docker engine. server/README.md is the image's runtime contract.

The layer is deterministic (oci.py), the config is the base's with the launcher as
entrypoint, the base's environment kept plus TRTIS_BUNDLE, and provenance labels. The same
bundle, base and SOURCE_DATE_EPOCH give the same digest. Outputs are written beside --out
and renamed into place at the end, so a failure leaves no partial image.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping, Sequence

import trtis_server
from trtis_server.launch import DIGEST_VARIABLE
from trtis_server.manifest import all_files, integrity_problem, safe_relative

from .. import __version__, frameworks
from ..bundle.manifest import read_manifest
from ..core.errors import BundleError, ImageError
from ..core.files import scratch_path, swap_directory, write_text_atomic
from ..core.redact import without_userinfo
from . import oci
from .base import BaseImage
from .registry import Reference, Registry, parse_reference, push_blobs

OPS_ROOT = "opt/tritonserver/ops"
# In the index of every layout `server --out` writes: only such a layout is ever replaced.
WRITTEN_BY = "org.trtis-build.layout"
LAUNCHER = "trtis-launch"
# The launcher's package, beside it in the image (trtis-launch puts runtime/ on sys.path).
RUNTIME_DIR = "runtime/trtis_server"
RUNTIME_MODULES = ("__init__.py", "elf.py", "manifest.py", "frameworks.py", "launch.py")
PLUGIN_MODES = ("backend-config", "preload")
LABEL = "org.trtis-build."
# Where a base declares its versions (our label, then the variables NGC images set). Whether
# they fit is each framework's own rule (Framework.base_skew); CUDA code needs the same major.
BASE_VERSION_KEYS = {
    **{seam.name: seam.base_version_keys for seam in frameworks.all()},
    "cuda": (LABEL + "base.cuda.version", "CUDA_VERSION"),
}
CUDA_SKEW_PARTS = 1
VERSIONED = tuple(BASE_VERSION_KEYS)   # what --base-version NAME=X.Y accepts
DEFAULT_CMD = ["tritonserver", "--model-repository=/models"]


@dataclass(frozen=True, kw_only=True)
class ComposeSettings:
    bundle_dir: Path
    tag: str                                   # NAME[:TAG] or REGISTRY/NAME[:TAG]
    epoch: int = 0
    plugin_mode: str = "backend-config"
    base_versions: Mapping[str, str] = field(default_factory=dict)  # from --base-version
    allow_version_skew: bool = False
    source: str | None = None                  # org.opencontainers.image.source
    revision: str | None = None                # org.opencontainers.image.revision


@dataclass(frozen=True)
class Composed:
    """The new image's parts, written into `layout` (a work directory)."""

    layout: oci.Layout
    manifest: oci.Descriptor
    config: dict
    layer: oci.Layer
    base: BaseImage
    labels: dict[str, str]
    skew: list[dict]
    seconds: float


# ---------------------------------------------------------------- bundle

def bundle_files(bundle_dir: Path) -> tuple[dict, bytes, list[tuple[str, Path]]]:
    """(manifest, manifest bytes, [(path in bundle, file)]); every listed library must exist
    and match its sha256, because the image is the last place to catch a broken bundle."""
    bundle_dir = Path(bundle_dir)
    try:
        manifest = read_manifest(bundle_dir)
    except BundleError as error:
        raise ImageError(error.message, where=error.where,
                         hint="build the bundle with `trtis-build ops build` or pass --bundle DIR") from None
    raw = (bundle_dir / "manifest.json").read_bytes()
    files = []
    for library in all_files(manifest, bundle_dir):
        relative = library.get("path", "")
        path = bundle_dir / relative
        if not safe_relative(relative) or not path.is_file():
            raise ImageError(f"the bundle lists {relative!r} but the file is missing", where=path,
                             hint="rebuild the bundle with `trtis-build ops build`")
        problem = integrity_problem(bundle_dir, library)
        if problem:
            raise ImageError(problem, where=path, hint="the bundle changed after it was built; rebuild it")
        files.append((relative, path))
    if not manifest.get("libraries"):
        # A kernels-only bundle (GPU harness) or one whose every op was skipped serves nothing.
        raise ImageError("the bundle has no op libraries, so the image would serve none", where=bundle_dir,
                         hint="build the ops with `trtis-build ops build` (not --kernels-only) and read "
                              "its 'skipped' lines")
    return manifest, raw, files


def bundle_frameworks(bundle_dir: Path) -> frozenset[str]:
    """The frameworks whose op libraries the bundle holds (what a default base must carry),
    after the checks compose makes: a broken bundle fails before a base is built."""
    manifest, _, _ = bundle_files(bundle_dir)
    return frozenset(lib.get("framework", "") for lib in manifest.get("libraries", []))


def bundle_versions(manifest: Mapping) -> dict[str, str]:
    """Framework versions the bundle's libraries were built against (only frameworks it uses)."""
    toolchain = manifest.get("toolchain") or {}
    used = {lib.get("framework") for lib in manifest.get("libraries", [])}
    versions = {}
    for name in frameworks.names():
        if name in used and (toolchain.get(name) or {}).get("version"):
            versions[name] = str(toolchain[name]["version"])
    cuda = manifest.get("cuda") or {}
    if cuda.get("enabled") and (toolchain.get("cuda") or {}).get("version"):
        versions["cuda"] = str(toolchain["cuda"]["version"])
    return versions


def base_versions(config: Mapping, given: Mapping[str, str]) -> dict[str, tuple[str, str]]:
    """framework -> (version, where it was declared): --base-version, a label, or an env var."""
    inner = config.get("config") or {}
    labels = inner.get("Labels") or {}
    env = dict(item.split("=", 1) for item in inner.get("Env") or [] if "=" in item)
    found = {}
    for name, keys in BASE_VERSION_KEYS.items():
        if given.get(name):
            found[name] = (given[name], "--base-version")
            continue
        for key in keys:
            value = labels.get(key) or env.get(key)
            if value:
                found[name] = (value, f"label {key}" if key in labels else f"env {key}")
                break
    return found


def version_skew(bundle: Mapping[str, str], base: Mapping[str, tuple[str, str]],
                 libraries: Sequence[Mapping] = ()) -> list[dict]:
    """One entry per framework whose base version cannot run the bundle's `libraries` (the
    manifest's entries: a framework's rule may read each library's own requirement)."""
    skew = []
    for name, built in bundle.items():
        if name not in base:
            continue
        declared, where = base[name]
        if name in frameworks.names():
            own = [dict(lib) for lib in libraries if lib.get("framework") == name]
            reason = frameworks.get(name).base_skew(built, declared, own)
        elif built.split(".")[:CUDA_SKEW_PARTS] != declared.split(".")[:CUDA_SKEW_PARTS]:
            reason = f"bundle built with {built}, base has {declared}"
        else:
            reason = None
        if reason:
            skew.append({"framework": name, "bundle": built, "base": declared, "declared_by": where,
                         "reason": reason})
    return skew


def check_skew(manifest: Mapping, base: BaseImage, settings: ComposeSettings,
               log: Callable[[str], None]) -> list[dict]:
    built = bundle_versions(manifest)
    declared = base_versions(base.config, settings.base_versions)
    skew = version_skew(built, declared, manifest.get("libraries", []))
    for name in built:
        if name not in declared:
            log(f"  note: the base declares no {name} version; not checked "
                f"(give --base-version {name}=X.Y to check it)")
    if skew and not settings.allow_version_skew:
        lines = "; ".join(f"{s['framework']}: {s['reason']} ({s['declared_by']})" for s in skew)
        raise ImageError(f"version skew between the bundle and the base image: {lines}",
                         hint="ops built against another framework version fail at load time: rebuild "
                              "the ops against the base's versions, pick a matching base, or pass "
                              "--allow-version-skew if you know they are compatible")
    for item in skew:
        log(f"  warning: {item['framework']} skew allowed: {item['reason']}")
    return skew


# ---------------------------------------------------------------- layer and config

SERVER_DIR = Path(trtis_server.__file__).parent


def launcher_entries() -> list[oci.Entry]:
    """trtis-launch and the trtis_server modules it runs, from server/."""
    entries = [oci.bytes_entry(f"{OPS_ROOT}/{LAUNCHER}", (SERVER_DIR / LAUNCHER).read_bytes(), mode=0o755)]
    entries += [oci.bytes_entry(f"{OPS_ROOT}/{RUNTIME_DIR}/{name}", (SERVER_DIR / name).read_bytes(), mode=0o644)
                for name in RUNTIME_MODULES]
    return entries


def layer_entries(raw_manifest: bytes, files: list[tuple[str, Path]], plugin_mode: str) -> list[oci.Entry]:
    launch = {"plugin_mode": plugin_mode, "tritonserver": "tritonserver", "trtis_build_version": __version__}
    entries = [oci.bytes_entry(f"{OPS_ROOT}/manifest.json", raw_manifest),
               oci.bytes_entry(f"{OPS_ROOT}/launch.json", oci.canonical_json(launch)),
               *launcher_entries()]
    entries += [oci.file_entry(f"{OPS_ROOT}/{relative}", path, mode=0o644) for relative, path in files]
    return oci.parent_dirs(entries)


def image_labels(manifest: Mapping, raw_manifest: bytes, base: BaseImage,
                 settings: ComposeSettings) -> dict[str, str]:
    libraries = manifest.get("libraries", [])
    toolchain = manifest.get("toolchain") or {}
    labels = {
        "org.opencontainers.image.base.name": base.name,
        "org.opencontainers.image.base.digest": base.manifest_digest,
        "org.opencontainers.image.created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(settings.epoch)),
        LABEL + "version": __version__,
        LABEL + "bundle.manifest.sha256": hashlib.sha256(raw_manifest).hexdigest(),
        LABEL + "bundle.path": "/" + OPS_ROOT,
        LABEL + "ops": ",".join(sorted({f"{lib['framework']}/{lib['op']}" for lib in libraries})),
        LABEL + "plugin-mode": settings.plugin_mode,
    }
    for seam in frameworks.all():
        own = [lib for lib in libraries if lib.get("framework") == seam.name]
        labels.update({LABEL + key: value for key, value in seam.image_labels(own).items()})
    for name in (*frameworks.names(), "cuda", "cxx"):
        version = (toolchain.get(name) or {}).get("version")
        if version:
            labels[LABEL + f"toolchain.{name}.version"] = str(version)
    if settings.source:
        labels["org.opencontainers.image.source"] = without_userinfo(settings.source)
    if settings.revision:
        labels["org.opencontainers.image.revision"] = settings.revision
    return {key: value for key, value in labels.items() if value}


def image_config(base: BaseImage, layer: oci.Layer, labels: Mapping[str, str], epoch: int) -> dict:
    """The base's config with our layer, entrypoint, environment and labels. Everything the
    base set that we do not override (user, working dir, ports, volumes) stays."""
    config = json.loads(json.dumps(base.config))  # deep copy
    inner = config.setdefault("config", {})
    ours = ("TRTIS_BUNDLE=", f"{DIGEST_VARIABLE}=")
    env = [item for item in inner.get("Env") or [] if not item.startswith(ours)]
    inner["Env"] = env + [f"TRTIS_BUNDLE=/{OPS_ROOT}"] + (
        [f"{DIGEST_VARIABLE}={labels[LABEL + 'bundle.manifest.sha256']}"] if LABEL + "bundle.manifest.sha256" in labels
        else [])
    inner["Entrypoint"] = [f"/{OPS_ROOT}/{LAUNCHER}"]
    inner["Cmd"] = list(DEFAULT_CMD)
    inner["Labels"] = {**(inner.get("Labels") or {}), **labels}
    created = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))
    config["created"] = created
    rootfs = config.setdefault("rootfs", {"type": "layers", "diff_ids": []})
    rootfs["diff_ids"] = [*rootfs.get("diff_ids", []), layer.diff_id]
    config["history"] = [*config.get("history", []),
                         {"created": created, "created_by": f"trtis-build {__version__} server: op bundle "
                                                            f"and launcher in /{OPS_ROOT}"}]
    return config


def _oci_layer(desc: oci.Descriptor) -> dict:
    """A base layer descriptor with OCI media types (same blob, same digest)."""
    media = {oci.DOCKER_LAYER_GZIP: oci.OCI_LAYER_GZIP, oci.DOCKER_LAYER: oci.OCI_LAYER}.get(
        desc.media_type, desc.media_type)
    return oci.Descriptor(media, desc.digest, desc.size, desc.annotations).to_json()


def compose(base: BaseImage, settings: ComposeSettings, work: Path,
            log: Callable[[str], None] = lambda _: None) -> Composed:
    """Write the new layer, config and manifest into the layout `work` (base blobs are linked
    in when the base is local)."""
    if settings.plugin_mode not in PLUGIN_MODES:
        raise ImageError(f"unknown plugin mode {settings.plugin_mode!r}",
                         hint=f"use one of: {', '.join(PLUGIN_MODES)}")
    started = time.monotonic()
    manifest, raw, files = bundle_files(settings.bundle_dir)
    skew = check_skew(manifest, base, settings, log)
    for seam in frameworks.all():
        own = [lib for lib in manifest.get("libraries", []) if lib.get("framework") == seam.name]
        for warning in seam.image_warnings(own, settings.bundle_dir):
            log(f"  warning: {warning}")
    layout = oci.Layout.create(work)
    layer = oci.write_layer(layer_entries(raw, files, settings.plugin_mode), layout.blobs,
                            epoch=settings.epoch, level=6)
    labels = image_labels(manifest, raw, base, settings)
    config = image_config(base, layer, labels, settings.epoch)
    config_desc = layout.add_json(config, oci.OCI_CONFIG)
    annotations = {key: labels[key] for key in labels if key.startswith("org.opencontainers.image.")}
    image_manifest = {"schemaVersion": 2, "mediaType": oci.OCI_MANIFEST, "config": config_desc.to_json(),
                      "layers": [*(_oci_layer(d) for d in base.layers), layer.descriptor.to_json()],
                      "annotations": annotations}
    desc = layout.add_json(image_manifest, oci.OCI_MANIFEST)
    if base.layout is not None:
        for item in base.layers:  # a damaged base is named here, not by skopeo later
            layout.link_blob(base.layout.verified_blob(item), item.digest)
    tag = image_tag(settings.tag)
    layout.write_index([oci.Descriptor(desc.media_type, desc.digest, desc.size, {oci.REF_NAME: tag})],
                       annotations={WRITTEN_BY: __version__})
    return Composed(layout, desc, config, layer, base, labels, skew, time.monotonic() - started)


def replaceable_output(out: Path) -> str | None:
    """Why `out` may not be replaced by a new image layout, or None: it must be missing,
    an empty directory, or a layout this tool wrote (never a base or another tool's images)."""
    if out.is_symlink() or (out.exists() and not out.is_dir()):
        return "is not a directory"
    if not out.exists() or not any(out.iterdir()):
        return None
    if not (out / "oci-layout").is_file():
        return "exists and is not an OCI image layout"
    try:
        index = json.loads((out / "index.json").read_text())
    except (OSError, ValueError):
        return "is an OCI layout with no readable index.json"
    if not isinstance(index, dict) or WRITTEN_BY not in (index.get("annotations") or {}):
        return "is an OCI layout that trtis-build did not write (a base, or other images)"
    return None


def image_tag(name: str) -> str:
    last = name.rsplit("/", 1)[-1]
    return last.rsplit(":", 1)[1] if ":" in last else "latest"


# ---------------------------------------------------------------- outputs

def dockerfile_text(composed: Composed, context_name: str) -> str:
    """The same image for teams that build with Docker: FROM the base, COPY the layer's files,
    the same environment, labels, entrypoint and command."""
    base = composed.base
    inner = composed.config["config"]
    lines = [f"# Generated by trtis-build {__version__} (`trtis-build server --dockerfile`).",
             "# Build context: this directory; " + context_name + "/ holds the layer's files.",
             "# docker build reproduces the content, not the digest (Docker stamps its own times)."]
    if base.from_ref:
        lines.append(f"ARG BASE={base.from_ref}")
    else:
        lines.append(f"# The base was {base.name} ({base.manifest_digest}), which is not in a registry:")
        lines.append("# push it (skopeo copy oci:DIR docker://REGISTRY/NAME) and pass --build-arg BASE=...")
        lines.append("ARG BASE")
    lines.append("FROM ${BASE}")
    lines.append(f"COPY --chown=0:0 {context_name}/ /")
    lines.append(f"ENV TRTIS_BUNDLE=/{OPS_ROOT}")
    digest = composed.labels.get(LABEL + "bundle.manifest.sha256")
    if digest:
        lines.append(f"ENV {DIGEST_VARIABLE}={digest}")
    for key, value in sorted(composed.labels.items()):
        lines.append(f"LABEL {json.dumps(key)}={json.dumps(value)}")
    lines.append(f"ENTRYPOINT {json.dumps(inner['Entrypoint'])}")
    lines.append(f"CMD {json.dumps(inner['Cmd'])}")
    return "\n".join(lines) + "\n"


def write_dockerfile(composed: Composed, settings: ComposeSettings, path: Path) -> Path:
    """Dockerfile plus its build context (the layer's files, with the layer's modes)."""
    context_name = "trtis-server-context"
    path = Path(path)
    context = path.parent / context_name
    work = scratch_path(path.parent, f".{context_name}", "tmp")
    shutil.rmtree(work, ignore_errors=True)
    _, raw, files = bundle_files(settings.bundle_dir)
    for entry in layer_entries(raw, files, settings.plugin_mode):
        target = work / entry.info.name
        if entry.info.isdir():
            target.mkdir(parents=True, exist_ok=True)
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        with entry.opener() as data, open(target, "wb") as out:
            shutil.copyfileobj(data, out)
        target.chmod(entry.info.mode)
    swap_directory(work, context)
    write_text_atomic(path, dockerfile_text(composed, context_name))
    return path


def push(composed: Composed, target: str, *, insecure: bool | None = None, env=None,
         log: Callable[[str], None] = lambda _: None) -> dict:
    """Send the image to `target`. Blobs already in the target repository are skipped, base
    layers in the same registry are mounted from the base's repository (never downloaded),
    and the manifest is sent byte for byte, so the pushed digest is the composed one."""
    ref = parse_reference(target)
    base = composed.base
    same_registry = base.reference is not None and base.reference.registry == ref.registry
    client = base.registry if same_registry and base.registry else Registry(ref.registry, insecure=insecure, env=env)
    layout = composed.layout
    manifest = layout.read_json(composed.manifest.digest)
    blobs: list[tuple[oci.Descriptor, Path | None]] = []
    for item in [*oci.manifest_layers(manifest), oci.Descriptor.from_json(manifest["config"])]:
        path = layout.blob_path(item.digest)
        blobs.append((item, path if path.is_file() else None))
    mount_from = base.reference.repository if same_registry else None
    log(f"pushing to {ref}")
    how = push_blobs(client, ref.repository, blobs, mount_from=mount_from, log=log)
    body = layout.read_blob(composed.manifest.digest)
    digest = client.put_manifest(ref.repository, ref.tag or "latest", body, oci.OCI_MANIFEST)
    if digest and digest != composed.manifest.digest:
        raise ImageError(f"the registry stored the manifest as {digest}, not {composed.manifest.digest}",
                         where=str(ref), hint="the registry rewrote the manifest; digests are not kept")
    return {"reference": f"{ref.registry}/{ref.repository}:{ref.tag}@{composed.manifest.digest}",
            "blobs": how, "requests": len(client.requests)}


def registry_target(tag: str) -> Reference | None:
    """The tag as a registry reference when it names a registry host, else None."""
    first = tag.split("/", 1)[0]
    if "/" in tag and ("." in first or ":" in first or first == "localhost"):
        return parse_reference(tag)
    return None
