"""The one OS file lock (flock): serializes builds of one tree and builders of one cache
entry. The kernel releases it when the holder dies, so a killed process never leaves a
stale lock; waiting is bounded by a timeout and said once."""

from __future__ import annotations

import fcntl
import os
import time
from pathlib import Path
from typing import Callable

from .errors import LockTimeout

DEFAULT_TIMEOUT = 3600.0


class FileLock:
    """`with FileLock(path, what="a build of this tree"):` holds an exclusive lock on `path`
    (created if missing; a symlink there is refused, never followed)."""

    def __init__(self, path: Path, *, what: str = "another trtis-build process",
                 timeout: float = DEFAULT_TIMEOUT, on_wait: Callable[[str], None] | None = None):
        self.path = Path(path)
        self.what = what
        self.timeout = timeout
        self.on_wait = on_wait
        self._fd: int | None = None

    def __enter__(self) -> "FileLock":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            raise LockTimeout(f"cannot open the lock file {self.path}: {exc.strerror}", where=self.path,
                              hint="remove it if it is not a regular file trtis-build created") from None
        deadline = time.monotonic() + self.timeout
        told = False
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if not told and self.on_wait:
                    self.on_wait(f"waiting for {self.what} to finish (lock {self.path})")
                    told = True
                if time.monotonic() > deadline:
                    os.close(fd)
                    raise LockTimeout(f"{self.what} held {self.path} for over {self.timeout:.0f} s",
                                      where=self.path,
                                      hint="wait for it, or stop the other trtis-build process") from None
                time.sleep(0.1)
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd
        return self

    def __exit__(self, *exc) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None
