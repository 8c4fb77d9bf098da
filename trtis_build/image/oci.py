"""OCI images with the standard library only: deterministic layers, blobs, manifests,
image layouts, and single-file archives that both `docker load` and `podman load` accept.

Reproducibility rules for every tar this module writes: entries sorted by name, mtime from
SOURCE_DATE_EPOCH (0 when unset), owner 0:0 with empty names for our own files, fixed
modes (0644, 0755 for executables and directories), PAX format, and a gzip stream from
zlib with a fixed header (no file name, mtime 0). Same inputs, same bytes, same digest.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import shutil
import stat
import tarfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import BinaryIO, Callable, Iterable, Iterator, Mapping

from ..core.errors import ImageError
from ..core.files import scratch_path, sha256_digest, user_cache_dir, write_text_atomic
from ..core.progress import ByteProgress

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar"
MANIFEST_TYPES = (OCI_MANIFEST, DOCKER_MANIFEST)
INDEX_TYPES = (OCI_INDEX, DOCKER_LIST)
REF_NAME = "org.opencontainers.image.ref.name"
CONTAINERD_NAME = "io.containerd.image.name"
CHUNK = 1 << 20


def source_date_epoch(env: Mapping[str, str] | None = None) -> int:
    """SOURCE_DATE_EPOCH (reproducible-builds.org) or 0: the timestamp of every entry."""
    value = (os.environ if env is None else env).get("SOURCE_DATE_EPOCH", "0").strip() or "0"
    try:
        epoch = int(value)
    except ValueError:
        raise ImageError(f"SOURCE_DATE_EPOCH must be an integer, not {value!r}",
                         hint="set it to a Unix time, e.g. $(git log -1 --format=%ct)") from None
    if epoch < 0:
        raise ImageError("SOURCE_DATE_EPOCH must not be negative")
    return epoch


DIGEST = re.compile(r"sha256:[0-9a-f]{64}")


def canonical_json(obj) -> bytes:
    """One byte string per value: sorted keys, no spaces (digests depend on it)."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


@dataclass(frozen=True)
class Descriptor:
    media_type: str
    digest: str
    size: int
    annotations: Mapping[str, str] | None = None
    platform: Mapping[str, str] | None = None

    def to_json(self) -> dict:
        out: dict = {"mediaType": self.media_type, "digest": self.digest, "size": self.size}
        if self.annotations:
            out["annotations"] = dict(self.annotations)
        if self.platform:
            out["platform"] = dict(self.platform)
        return out

    @classmethod
    def from_json(cls, data: Mapping) -> "Descriptor":
        try:
            return cls(data["mediaType"], data["digest"], int(data["size"]),
                       data.get("annotations"), data.get("platform"))
        except (KeyError, TypeError, ValueError) as exc:
            raise ImageError(f"invalid OCI descriptor {data!r}: {exc}") from None


# --------------------------------------------------------------------------- layers

@dataclass
class Entry:
    """One tar member: its header and, for regular files, how to open its data."""

    info: tarfile.TarInfo
    opener: Callable[[], BinaryIO] | None = None


def _info(path: str, kind: bytes, mode: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(str(PurePosixPath(path.strip("/"))))
    info.type = kind
    info.mode = mode
    return info


def dir_entry(path: str, mode: int = 0o755) -> Entry:
    return Entry(_info(path, tarfile.DIRTYPE, mode))


def bytes_entry(path: str, data: bytes, mode: int = 0o644) -> Entry:
    info = _info(path, tarfile.REGTYPE, mode)
    info.size = len(data)
    return Entry(info, lambda: io.BytesIO(data))


def file_entry(path: str, source: Path, mode: int | None = None) -> Entry:
    """A host file; mode 0755 if any execute bit is set on the host, else 0644."""
    st = source.stat()
    if mode is None:
        mode = 0o755 if st.st_mode & 0o111 else 0o644
    info = _info(path, tarfile.REGTYPE, mode)
    info.size = st.st_size
    return Entry(info, lambda: open(source, "rb"))


def symlink_entry(path: str, target: str) -> Entry:
    info = _info(path, tarfile.SYMTYPE, 0o777)
    info.linkname = target
    return Entry(info)


def tree_entries(source: Path, prefix: str, *, skip: Callable[[Path], bool] | None = None) -> Iterator[Entry]:
    """Every file, directory and symlink under `source`, placed under `prefix`.
    Hard links become copies (ordering-independent); other special files are refused."""
    yield dir_entry(prefix)
    for path in sorted(source.rglob("*")):
        if skip and skip(path):
            continue
        name = f"{prefix.strip('/')}/{path.relative_to(source).as_posix()}"
        st = path.lstat()
        if stat.S_ISLNK(st.st_mode):
            yield symlink_entry(name, os.readlink(path))
        elif stat.S_ISDIR(st.st_mode):
            yield dir_entry(name)
        elif stat.S_ISREG(st.st_mode):
            yield file_entry(name, path)
        else:
            raise ImageError(f"cannot put special file {path} into an image layer",
                             hint="remove it from the directory being packed")


def tar_entries(path: Path) -> Iterator[Entry]:
    """The members of an uncompressed tar (a root filesystem from mmdebstrap), owners and
    modes kept. Hard links become copies and device nodes are dropped (runtimes provide
    /dev), so the entries can be re-sorted freely."""
    tar = tarfile.open(path, mode="r:")
    members = {m.name: m for m in tar.getmembers()}

    def opener(member: tarfile.TarInfo) -> Callable[[], BinaryIO]:
        return lambda: tar.extractfile(member)

    for member in members.values():
        name = _safe_name(member.name.removeprefix("./"))
        if name in (None, ".", ""):
            continue
        info = member.__class__(name)
        for attr in ("mode", "uid", "gid", "uname", "gname", "linkname", "type", "size"):
            setattr(info, attr, getattr(member, attr))
        if member.islnk():
            target = members.get(member.linkname) or members.get("./" + member.linkname.removeprefix("./"))
            if target is None or not target.isreg():
                raise ImageError(f"hard link {member.name} -> {member.linkname} has no target", where=path)
            info.type, info.linkname, info.size = tarfile.REGTYPE, "", target.size
            yield Entry(info, opener(target))
        elif member.isreg():
            yield Entry(info, opener(member))
        elif member.isdir() or member.issym():
            yield Entry(info)


def parent_dirs(entries: Iterable[Entry]) -> list[Entry]:
    """Entries plus a directory entry for every parent that has none, so that layers are
    complete on their own (some unpackers create missing parents with odd modes)."""
    entries = list(entries)
    present = {e.info.name for e in entries}
    extra = []
    for entry in entries:
        for parent in PurePosixPath(entry.info.name).parents:
            key = str(parent)
            if key not in (".", "") and key not in present:
                present.add(key)
                extra.append(dir_entry(key))
    return entries + extra


class _HashingSink:
    """tarfile writes here: hash the tar (diff_id), gzip it, hash and store the blob."""

    def __init__(self, out: BinaryIO, level: int | None):
        self.out = out
        self.diff = hashlib.sha256()
        self.blob = hashlib.sha256()
        self.size = 0
        self.raw_size = 0
        # wbits=31: gzip container; zlib writes a fixed header (mtime 0, no name).
        self.compressor = zlib.compressobj(level, zlib.DEFLATED, 31) if level is not None else None

    def _emit(self, data: bytes) -> None:
        if data:
            self.blob.update(data)
            self.out.write(data)
            self.size += len(data)

    def write(self, data: bytes) -> int:
        self.diff.update(data)
        self.raw_size += len(data)
        self._emit(self.compressor.compress(data) if self.compressor else bytes(data))
        return len(data)

    def finish(self) -> None:
        if self.compressor:
            self._emit(self.compressor.flush())


@dataclass(frozen=True)
class Layer:
    descriptor: Descriptor
    diff_id: str
    uncompressed_size: int
    files: tuple[str, ...] = field(default=(), compare=False)


def normalize(entries: Iterable[Entry], *, epoch: int, own: bool = True) -> list[Entry]:
    """Sort by name, refuse duplicates, fix timestamps; `own`: owner 0:0 with no names
    (files we add). Base filesystems keep their owners (own=False)."""
    by_name: dict[str, Entry] = {}
    for entry in entries:
        name = entry.info.name
        if name in by_name:
            raise ImageError(f"two layer entries for {name!r}")
        by_name[name] = entry
    ordered = [by_name[name] for name in sorted(by_name, key=lambda n: n.encode())]
    for entry in ordered:
        info = entry.info
        info.mtime = epoch
        info.pax_headers = {}
        if own:
            info.uid = info.gid = 0
            info.uname = info.gname = ""
    return ordered


def write_layer(entries: Iterable[Entry], blobs_dir: Path, *, epoch: int,
                level: int | None = 6, own: bool = True, log=None, what: str = "layer") -> Layer:
    """Write one layer blob into `blobs_dir` (OCI blobs/sha256); returns its descriptor and
    diff_id. level=None writes an uncompressed tar layer. With `log`, the bytes written so far
    (of the files' total) every few seconds."""
    ordered = normalize(entries, epoch=epoch, own=own)
    progress = ByteProgress(what, sum(e.info.size for e in ordered if e.info.isreg()), log)
    blobs_dir.mkdir(parents=True, exist_ok=True)
    tmp = blobs_dir / f".layer-{os.getpid()}.tmp"
    with open(tmp, "wb") as out:
        sink = _HashingSink(out, level)
        with tarfile.open(fileobj=sink, mode="w|", format=tarfile.PAX_FORMAT) as tar:
            for entry in ordered:
                if entry.info.isreg():
                    assert entry.opener is not None, entry.info.name
                    with entry.opener() as data:
                        tar.addfile(entry.info, data)
                    progress.advance(entry.info.size)
                else:
                    tar.addfile(entry.info)
        sink.finish()
    progress.finish()
    digest = "sha256:" + sink.blob.hexdigest()
    os.replace(tmp, blobs_dir / digest.split(":", 1)[1])
    media = OCI_LAYER_GZIP if level is not None else OCI_LAYER
    return Layer(Descriptor(media, digest, sink.size), "sha256:" + sink.diff.hexdigest(),
                 sink.raw_size, tuple(e.info.name for e in ordered))


def open_layer(path: Path, media_type: str) -> tarfile.TarFile:
    """A layer blob as a streaming tar reader (gzip or plain, by media type or magic)."""
    if media_type.endswith("+zstd") or media_type.endswith(".zstd"):
        raise ImageError(f"zstd-compressed layers are not supported: {path.name}",
                         hint="use a base image with gzip layers")
    try:
        return tarfile.open(path, mode="r|*")
    except (tarfile.TarError, OSError) as exc:
        raise ImageError(f"layer {path.name} is not a readable tar: {exc}", where=path) from None


# --------------------------------------------------------------------------- layouts

class _VerifiedBlobs:
    """Digests already checked for blobs in the tool's own base cache, by file identity
    (device, inode, size, mtime, ctime): a cached base of hundreds of MB is hashed once, not
    on every compose. Blobs anywhere else (a layout the user names) are hashed every time."""

    LIMIT = 1024

    def __init__(self):
        self._entries: dict[str, str] | None = None

    @staticmethod
    def _key(path: Path, info: os.stat_result) -> str | None:
        cache = user_cache_dir()
        if cache not in Path(path).resolve().parents:
            return None
        return f"{info.st_dev}:{info.st_ino}:{info.st_size}:{info.st_mtime_ns}:{info.st_ctime_ns}"

    def _load(self) -> dict[str, str]:
        if self._entries is None:
            try:
                loaded = json.loads((user_cache_dir() / "verified-blobs.json").read_text())
                self._entries = loaded if isinstance(loaded, dict) else {}
            except (OSError, ValueError):
                self._entries = {}
        return self._entries

    def knows(self, path: Path, info: os.stat_result, digest: str) -> bool:
        key = self._key(path, info)
        return key is not None and self._load().get(key) == digest

    def remember(self, path: Path, info: os.stat_result, digest: str) -> None:
        key = self._key(path, info)
        if key is None:
            return
        entries = self._load()
        entries.pop(key, None)
        entries[key] = digest
        for old in list(entries)[:-self.LIMIT]:
            del entries[old]
        try:
            write_text_atomic(user_cache_dir() / "verified-blobs.json", json.dumps(entries))
        except OSError:
            pass  # a read-only cache only costs the hash next time


_VERIFIED = _VerifiedBlobs()


class Layout:
    """An OCI image layout directory (oci-layout, index.json, blobs/sha256/...)."""

    def __init__(self, root: Path):
        self.root = Path(root)

    @property
    def blobs(self) -> Path:
        return self.root / "blobs" / "sha256"

    @classmethod
    def create(cls, root: Path) -> "Layout":
        layout = cls(root)
        layout.blobs.mkdir(parents=True, exist_ok=True)
        (layout.root / "oci-layout").write_bytes(canonical_json({"imageLayoutVersion": "1.0.0"}))
        return layout

    @classmethod
    def open(cls, root: Path) -> "Layout":
        layout = cls(root)
        if not (layout.root / "oci-layout").is_file() or not (layout.root / "index.json").is_file():
            raise ImageError(f"{root} is not an OCI image layout (no oci-layout or index.json)",
                             where=root, hint="give a directory written by skopeo/umoci/trtis-build, "
                                              "an archive (.tar) or a registry reference")
        return layout

    def blob_path(self, digest: str) -> Path:
        """Where a blob lives. Digests come from image manifests and indexes, which may be
        hostile: only sha256:<64 lower-case hex> names a file, always inside blobs/sha256/."""
        if not isinstance(digest, str) or not DIGEST.fullmatch(digest):
            raise ImageError(f"invalid blob digest {str(digest)[:80]!r} in the image {self.root}", where=self.root,
                             hint="digests are sha256:<64 hex digits>; the image is damaged or crafted")
        return self.blobs / digest[len("sha256:"):]

    def verified_blob(self, desc: "Descriptor") -> Path:
        """A blob checked against its descriptor (size, then sha256) before it is reused."""
        path = self.blob_path(desc.digest)
        if not path.is_file():
            raise ImageError(f"blob {desc.digest} is missing from the image layout {self.root}", where=self.root)
        info = path.stat()
        if info.st_size != desc.size:
            raise ImageError(f"blob {desc.digest} of {self.root} has {info.st_size} bytes, its manifest says "
                             f"{desc.size}", where=path, hint="the base image is damaged: pull or export it again")
        if _VERIFIED.knows(path, info, desc.digest):
            return path
        if sha256_digest(path) != desc.digest:
            raise ImageError(f"blob {desc.digest} of {self.root} does not match its digest", where=path,
                             hint="the base image is damaged or was modified: pull or export it again")
        _VERIFIED.remember(path, info, desc.digest)
        return path

    def has_blob(self, digest: str) -> bool:
        return self.blob_path(digest).is_file()

    def add_bytes(self, data: bytes, media_type: str, annotations=None) -> Descriptor:
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        path = self.blob_path(digest)
        if not path.is_file():
            tmp = path.with_name(path.name + f".{os.getpid()}.tmp")
            tmp.write_bytes(data)
            os.replace(tmp, path)
        return Descriptor(media_type, digest, len(data), annotations)

    def add_json(self, obj, media_type: str) -> Descriptor:
        return self.add_bytes(canonical_json(obj), media_type)

    def link_blob(self, source: Path, digest: str) -> None:
        """Bring a blob from another layout: a hard link when possible (cached bases are
        gigabytes; blobs are immutable), else a copy."""
        target = self.blob_path(digest)
        if target.exists():
            return
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(source, target)
        except OSError:
            shutil.copyfile(source, target)

    def read_blob(self, digest: str, *, limit: int = 64 << 20) -> bytes:
        path = self.blob_path(digest)
        try:
            if path.stat().st_size > limit:
                raise ImageError(f"blob {digest} is too large to read as metadata", where=path)
            data = path.read_bytes()
        except FileNotFoundError:
            raise ImageError(f"blob {digest} is missing from the image layout", where=self.root,
                             hint="the layout is incomplete or corrupt; fetch the image again") from None
        if "sha256:" + hashlib.sha256(data).hexdigest() != digest:
            raise ImageError(f"blob {digest} does not match its digest (corrupt)", where=path)
        return data

    def read_json(self, digest: str) -> dict:
        try:
            return json.loads(self.read_blob(digest))
        except json.JSONDecodeError as exc:
            raise ImageError(f"blob {digest} is not valid JSON: {exc}", where=self.blob_path(digest)) from None

    def index(self) -> dict:
        try:
            return json.loads((self.root / "index.json").read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise ImageError(f"cannot read index.json: {exc}", where=self.root) from None

    def write_index(self, manifests: Iterable[Descriptor], annotations: Mapping[str, str] | None = None) -> None:
        index = {"schemaVersion": 2, "mediaType": OCI_INDEX,
                 "manifests": [d.to_json() for d in manifests]}
        if annotations:
            index["annotations"] = dict(annotations)
        (self.root / "index.json").write_bytes(canonical_json(index))

    def find_manifest(self, ref: str | None = None, *, arch: str = "amd64") -> tuple[Descriptor, dict]:
        """The image manifest named `ref` (annotation org.opencontainers.image.ref.name),
        or the only one; an index or manifest list is resolved to linux/<arch>."""
        entries = [Descriptor.from_json(m) for m in self.index().get("manifests", [])]
        if ref:
            named = [d for d in entries if (d.annotations or {}).get(REF_NAME) == ref]
            if not named:
                names = sorted({(d.annotations or {}).get(REF_NAME, "") for d in entries} - {""})
                raise ImageError(f"no image named {ref!r} in the layout", where=self.root,
                                 hint=f"names present: {', '.join(names) or 'none'}")
            entries = named
        if len(entries) != 1:
            raise ImageError(f"the layout holds {len(entries)} images; say which one (DIR:NAME)",
                             where=self.root)
        return self._resolve(entries[0], arch)

    def _resolve(self, desc: Descriptor, arch: str) -> tuple[Descriptor, dict]:
        data = self.read_json(desc.digest)
        media = data.get("mediaType", desc.media_type)
        if media in INDEX_TYPES:
            for item in data.get("manifests", []):
                platform = item.get("platform") or {}
                if platform.get("os", "linux") == "linux" and platform.get("architecture") == arch:
                    return self._resolve(Descriptor.from_json(item), arch)
            raise ImageError(f"the image index {desc.digest} has no linux/{arch} image", where=self.root)
        if media not in MANIFEST_TYPES:
            raise ImageError(f"unsupported manifest type {media!r}", where=self.root)
        return desc, data


def manifest_layers(manifest: Mapping) -> list[Descriptor]:
    return [Descriptor.from_json(layer) for layer in manifest.get("layers", [])]


# --------------------------------------------------------------------------- archives

def write_tar(entries: Iterable[Entry], out: BinaryIO, *, epoch: int) -> None:
    """A plain, deterministic tar of `entries` (our own files: owner 0:0)."""
    with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tar:
        for entry in normalize(entries, epoch=epoch):
            if entry.info.isreg():
                with entry.opener() as data:
                    tar.addfile(entry.info, data)
            else:
                tar.addfile(entry.info)


def image_blobs(layout: Layout, manifest: Descriptor) -> list[str]:
    """Digests of the manifest, its config and its layers, in that order."""
    data = layout.read_json(manifest.digest)
    return [manifest.digest, data["config"]["digest"], *(d.digest for d in manifest_layers(data))]


def write_archive(layout: Layout, manifest: Descriptor, out: Path, *, name: str, epoch: int) -> Path:
    """One tar holding both an OCI layout (index.json, oci-layout, blobs/) and Docker's
    manifest.json pointing into blobs/: the shape `docker save` writes since Docker 25.
    `docker load` reads either part, `podman load` the manifest.json (containers/image
    decompresses gzip layers itself), `skopeo` both (docker-archive: / oci-archive:)."""
    data = layout.read_json(manifest.digest)
    layers = [d.digest for d in manifest_layers(data)]
    blob = lambda digest: f"blobs/sha256/{digest.split(':', 1)[1]}"  # noqa: E731
    tag = name.rsplit(":", 1)[1] if ":" in name.rsplit("/", 1)[-1] else "latest"
    docker_manifest = [{"Config": blob(data["config"]["digest"]), "RepoTags": [name],
                        "Layers": [blob(d) for d in layers]}]
    annotated = Descriptor(manifest.media_type, manifest.digest, manifest.size,
                           {CONTAINERD_NAME: name, REF_NAME: tag})
    index = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [annotated.to_json()]}
    entries = [dir_entry("blobs"), dir_entry("blobs/sha256"),
               bytes_entry("oci-layout", canonical_json({"imageLayoutVersion": "1.0.0"})),
               bytes_entry("index.json", canonical_json(index)),
               bytes_entry("manifest.json", canonical_json(docker_manifest))]
    for digest in dict.fromkeys(image_blobs(layout, manifest)):
        entries.append(file_entry(blob(digest), layout.blob_path(digest), mode=0o644))
    tmp = scratch_path(out.parent, out.name, "tmp")
    try:
        with open(tmp, "wb") as handle:
            write_tar(entries, handle, epoch=epoch)
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    return out


_ARCHIVE_NAMES = ("oci-layout", "index.json", "manifest.json", "repositories")


def _safe_name(name: str) -> str | None:
    path = PurePosixPath(name)
    if path.is_absolute() or ".." in path.parts:
        return None
    return str(path)


def _extract(path: Path, dest: Path) -> set[str]:
    """Extract the regular files of an image archive (no links, nothing outside dest)."""
    names = set()
    try:
        with tarfile.open(path, mode="r:*") as tar:
            for member in tar:
                name = _safe_name(member.name)
                if name is None:
                    raise ImageError(f"archive member {member.name!r} escapes the archive", where=path)
                if not member.isreg():
                    continue
                target = dest / name
                target.parent.mkdir(parents=True, exist_ok=True)
                source = tar.extractfile(member)
                with open(target, "wb") as out:
                    shutil.copyfileobj(source, out, CHUNK)
                names.add(name)
    except (tarfile.TarError, OSError, EOFError, zlib.error) as exc:
        raise ImageError(f"{path} is not a readable image archive: {exc}", where=path,
                         hint="the file is truncated or corrupt; write it again "
                              "(docker save / podman save / trtis-build server --archive)") from None
    return names


def import_archive(path: Path, dest: Path) -> Layout:
    """Turn an OCI archive or docker archive into an OCI layout at `dest` (which must not
    exist); every blob the image references is checked against its digest."""
    work = scratch_path(dest.parent, dest.name, "partial")
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    try:
        names = _extract(path, work)
        if "oci-layout" in names and "index.json" in names:
            layout = Layout(work)
            desc, _ = layout.find_manifest()
            for digest in image_blobs(layout, desc):
                if not layout.has_blob(digest) or sha256_digest(layout.blob_path(digest)) != digest:
                    raise ImageError(f"blob {digest} is missing or corrupt in the archive", where=path)
        elif "manifest.json" in names:
            _docker_to_layout(path, work)
        else:
            raise ImageError(f"{path} holds neither an OCI layout nor a docker manifest.json "
                             "(truncated, or not an image archive)", where=path,
                             hint="give an archive from docker save, podman save, "
                                  "skopeo copy ... docker-archive:/oci-archive: or trtis-build")
        os.replace(work, dest)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return Layout(dest)


def _docker_to_layout(path: Path, work: Path) -> None:
    try:
        items = json.loads((work / "manifest.json").read_text())
        item = items[0]
        config_name = _safe_name(item["Config"]) if isinstance(item.get("Config"), str) else None
        if not config_name:
            raise ValueError(f"Config {item.get('Config')!r} is not a file inside the archive")
        config_bytes = (work / config_name).read_bytes()
        layer_files = [work / _safe_name(name) for name in item["Layers"]]
    except (OSError, ValueError, KeyError, IndexError, TypeError) as exc:
        raise ImageError(f"the docker manifest.json in {path} is invalid: {exc}", where=path) from None
    layout = Layout.create(work)
    config = layout.add_bytes(config_bytes, OCI_CONFIG)
    layers = []
    for file in layer_files:
        if not file.is_file():
            raise ImageError(f"layer {file.relative_to(work)} is missing from the archive", where=path)
        with open(file, "rb") as handle:
            gzipped = handle.read(2) == b"\x1f\x8b"
        digest = sha256_digest(file)
        if not layout.has_blob(digest):
            os.replace(file, layout.blob_path(digest))
        media = OCI_LAYER_GZIP if gzipped else OCI_LAYER
        layers.append(Descriptor(media, digest, layout.blob_path(digest).stat().st_size))
    manifest = {"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": config.to_json(),
                "layers": [d.to_json() for d in layers]}
    desc = layout.add_json(manifest, OCI_MANIFEST)
    tags = item.get("RepoTags") or []
    ref = tags[0].rsplit(":", 1)[1] if tags and ":" in tags[0].rsplit("/", 1)[-1] else None
    layout.write_index([Descriptor(desc.media_type, desc.digest, desc.size, {REF_NAME: ref} if ref else None)])
    for leftover in work.iterdir():  # docker save's <id>/layer.tar, <id>.json, manifest.json
        if leftover.name not in ("oci-layout", "index.json", "blobs"):
            if leftover.is_dir():
                shutil.rmtree(leftover)
            else:
                leftover.unlink()
