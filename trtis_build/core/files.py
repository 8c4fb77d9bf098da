"""Atomic file operations and the one sha256 helper.

Writers here never leave a half-written file or a missing directory behind: text is written
to a temporary file beside the target and renamed over it; a finished directory replaces
the old one with one rename-exchange (renameat2 RENAME_EXCHANGE), so readers see the old
tree or the new one, never neither."""

from __future__ import annotations

import ctypes
import errno
import glob
import os
import shutil
from pathlib import Path
from typing import Mapping

from trtis_server.manifest import sha256_file

from .process import alive as process_alive

__all__ = ["sha256_file", "sha256_digest", "write_text_atomic", "write_text_if_changed",
           "swap_directory", "user_cache_dir", "scratch_path"]

_AT_FDCWD = -100
_RENAME_EXCHANGE = 2


def sha256_digest(path: str | os.PathLike) -> str:
    """The OCI form of a file's sha256: 'sha256:<hex>'."""
    return "sha256:" + sha256_file(path)


def write_text_atomic(path: Path, text: str) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        staging.write_text(text)
        os.replace(staging, path)
    finally:
        if staging.exists():
            staging.unlink()


def write_text_if_changed(path: Path, text: str) -> bool:
    """Write `text` unless the file already holds it (its mtime stays, so Ninja rebuilds
    nothing); True when it was written."""
    path = Path(path)
    try:
        if path.is_file() and path.read_text() == text:
            return False
    except (OSError, UnicodeDecodeError):
        pass
    write_text_atomic(path, text)
    return True


def _rename_exchange(first: Path, second: Path) -> bool:
    """Swap two paths in one system call; False where the kernel or filesystem cannot."""
    libc = ctypes.CDLL(None, use_errno=True)
    renameat2 = getattr(libc, "renameat2", None)
    if renameat2 is None:
        return False
    result = renameat2(_AT_FDCWD, os.fsencode(first), _AT_FDCWD, os.fsencode(second), _RENAME_EXCHANGE)
    if result == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP):
        return False
    raise OSError(code, os.strerror(code), str(second))


def swap_directory(staging: Path, target: Path) -> None:
    """Put the finished directory `staging` at `target`. An existing target is exchanged with
    it in one rename (never missing in between) and then deleted from where staging was."""
    staging, target = Path(staging), Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    if not target.exists() and not target.is_symlink():
        os.replace(staging, target)
        return
    if not _rename_exchange(staging, target):
        # Filesystems without RENAME_EXCHANGE: two renames, the old tree kept until the end.
        old = target.with_name(f".{target.name}.old-{os.getpid()}")
        os.replace(target, old)
        os.replace(staging, target)
        staging = old
    if staging.is_dir() and not staging.is_symlink():
        shutil.rmtree(staging, ignore_errors=True)
    else:
        staging.unlink()


def user_cache_dir(env: Mapping[str, str] | None = None) -> Path:
    """Where trtis-build keeps caches shared by every project of this user (toolchain, base
    images): $TRTIS_BUILD_CACHE_DIR, else $XDG_CACHE_HOME/trtis-build, else
    ~/.cache/trtis-build."""
    env = os.environ if env is None else env
    if env.get("TRTIS_BUILD_CACHE_DIR"):
        return Path(env["TRTIS_BUILD_CACHE_DIR"]).expanduser()
    root = Path(env["XDG_CACHE_HOME"]) if env.get("XDG_CACHE_HOME") else Path.home() / ".cache"
    return root / "trtis-build"


def scratch_path(directory: Path, stem: str, kind: str) -> Path:
    """directory/<stem>.<pid>.<kind>: where this process builds something before renaming it
    into place. What an earlier process left under that pattern (it was killed: kill -9 runs
    no cleanup) is deleted first, once its process is gone; a live one's is left alone."""
    directory = Path(directory)
    for old in directory.glob(f"{glob.escape(stem)}.*.{kind}") if directory.is_dir() else ():
        pid = old.name[len(stem) + 1:-(len(kind) + 1)]
        if pid.isdigit() and int(pid) != os.getpid() and not process_alive(int(pid)):
            if old.is_dir() and not old.is_symlink():
                shutil.rmtree(old, ignore_errors=True)
            else:
                old.unlink(missing_ok=True)
    return directory / f"{stem}.{os.getpid()}.{kind}"
