"""Open the base image of `trtis-build server`, whatever form it comes in:

  (none)                          the default base (default_base.py), built once and cached
  oci:DIR[:NAME] or DIR           an OCI image layout (skopeo, umoci, buildah, trtis-build)
  docker-archive:FILE, oci-archive:FILE or FILE
                                  an archive from docker save / podman save / skopeo
  REGISTRY/NAME[:TAG|@DIGEST]     an image in a registry; pulled once into the cache (keyed
                                  by manifest digest), or - for a push into the same
                                  registry - only its manifest and config are read
                                  (`remote=True`), so no base layer is downloaded.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Collection, Mapping

from ..core.errors import ImageError
from ..core.files import scratch_path
from . import default_base, oci
from .registry import Reference, Registry, parse_reference

DEFAULT_BASE_NAME = "trtis-build default base"


@dataclass(frozen=True)
class BaseImage:
    name: str                        # as the user gave it (for labels and messages)
    manifest_digest: str
    manifest: dict
    config: dict
    layout: oci.Layout | None        # where the layer blobs are; None: only in the registry
    registry: Registry | None = None
    reference: Reference | None = None

    @property
    def layers(self) -> list[oci.Descriptor]:
        return oci.manifest_layers(self.manifest)

    @property
    def from_ref(self) -> str | None:
        """A FROM line for a Dockerfile: registry bases only."""
        if self.reference is None:
            return None
        return f"{self.reference.registry}/{self.reference.repository}@{self.manifest_digest}"


def _from_layout(name: str, layout: oci.Layout, ref: str | None) -> BaseImage:
    desc, manifest = layout.find_manifest(ref)
    config = layout.read_json(manifest["config"]["digest"])
    missing = [d.digest for d in oci.manifest_layers(manifest) if not layout.has_blob(d.digest)]
    if missing:
        raise ImageError(f"base image {name} lacks {len(missing)} layer blob(s), e.g. {missing[0]}",
                         where=layout.root, hint="copy the complete image again (skopeo copy ... oci:DIR)")
    return BaseImage(name, desc.digest, manifest, config, layout)


def _archive_cache_key(path: Path) -> str:
    st = path.stat()
    return hashlib.sha256(f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}".encode()).hexdigest()[:16]


def _open_archive(name: str, path: Path, cache: Path) -> BaseImage:
    target = cache / "bases" / f"archive-{_archive_cache_key(path)}"
    if not (target / "index.json").is_file():
        target.parent.mkdir(parents=True, exist_ok=True)
        with default_base.cache_lock(target.with_suffix(".lock"), f"the base image from {path}"):
            if not (target / "index.json").is_file():
                oci.import_archive(path, target)
    return _from_layout(name, oci.Layout(target), None)


def _registry_manifest(client: Registry, ref: Reference) -> tuple[str, dict, dict]:
    body, media, digest = client.resolve_image(ref.repository, ref.reference)
    if media not in oci.MANIFEST_TYPES:
        raise ImageError(f"{ref} has an unsupported manifest type {media!r}",
                         hint="use an image with a Docker schema 2 or OCI manifest")
    manifest = json.loads(body)
    config = json.loads(client.get_blob(ref.repository, manifest["config"]["digest"]))
    return digest, manifest, config


def _pull(client: Registry, ref: Reference, digest: str, manifest: dict, cache: Path,
          log: Callable[[str], None]) -> oci.Layout:
    """Fetch the layers once into cache/bases/pulled-<digest>; later runs reuse them."""
    target = cache / "bases" / f"pulled-{digest.split(':')[1][:24]}"
    if (target / "index.json").is_file():
        return oci.Layout(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    with default_base.cache_lock(target.with_suffix(".lock"), f"the base image {ref}", log):
        if (target / "index.json").is_file():
            return oci.Layout(target)
        work = scratch_path(target.parent, target.name, "partial")
        shutil.rmtree(work, ignore_errors=True)
        try:
            layout = oci.Layout.create(work)
            layers = oci.manifest_layers(manifest)
            for number, layer in enumerate(layers, 1):
                log(f"  pulling layer {number}/{len(layers)} {layer.digest[:19]} ({layer.size:,} bytes)")
                client.download_blob(ref.repository, layer.digest, layout.blob_path(layer.digest),
                                     size=layer.size, log=log)
            layout.add_bytes(client.get_blob(ref.repository, manifest["config"]["digest"]),
                             manifest["config"].get("mediaType", oci.OCI_CONFIG))
            desc = layout.add_bytes(oci.canonical_json(manifest), manifest.get("mediaType", oci.OCI_MANIFEST))
            # Keep the registry's manifest digest as the name: our re-serialised copy may differ.
            layout.write_index([oci.Descriptor(desc.media_type, desc.digest, desc.size,
                                               {oci.REF_NAME: "base", "org.trtis-build.source-digest": digest})])
            os.replace(work, target)
        finally:
            shutil.rmtree(work, ignore_errors=True)
    return oci.Layout(target)


def open_base(spec: str | None, *, cache: Path, env: Mapping[str, str] | None = None,
              remote: bool = False, insecure: bool | None = None,
              log: Callable[[str], None] = lambda _: None,
              needs: Collection[str] = (), torch: str | None = None) -> BaseImage:
    """Resolve --base. remote=True (registry bases only): read manifest and config, no layers.
    needs and torch shape the default base (default_base.default_base)."""
    if spec is None:
        layout_dir, ref = default_base.default_base(env=env, log=log, needs=needs, torch=torch)
        return _from_layout(DEFAULT_BASE_NAME, oci.Layout(layout_dir), ref)
    for prefix in ("docker-archive:", "oci-archive:"):
        if spec.startswith(prefix):
            path = Path(spec[len(prefix):]).expanduser()
            if not path.is_file():
                raise ImageError(f"base archive {path} does not exist", where=path)
            return _open_archive(spec, path, cache)
    if spec.startswith("oci:") or Path(spec).expanduser().exists() or spec.startswith(("/", "./", "~")):
        return _open_local(spec, cache)
    ref = parse_reference(spec)
    client = Registry(ref.registry, insecure=insecure, env=env)
    digest, manifest, config = _registry_manifest(client, ref)
    pinned = Reference(ref.registry, ref.repository, ref.tag, digest)
    if remote:
        return BaseImage(spec, digest, manifest, config, None, client, pinned)
    log(f"base {spec}: {digest}")
    layout = _pull(client, ref, digest, manifest, cache, log)
    return BaseImage(spec, digest, manifest, config, layout, client, pinned)


def _open_local(spec: str, cache: Path) -> BaseImage:
    text = spec.removeprefix("oci:")
    path, ref = Path(text).expanduser(), None
    if not path.exists() and ":" in text:
        head, _, ref = text.rpartition(":")
        path = Path(head).expanduser()
    if not path.exists():
        raise ImageError(f"base image {spec!r} not found: {path} does not exist", where=path,
                         hint="give an OCI layout directory, an image archive, or a registry "
                              "reference such as nvcr.io/nvidia/tritonserver:24.10-py3")
    if path.is_file():
        return _open_archive(spec, path, cache)
    return _from_layout(spec, oci.Layout.open(path), ref)
