"""An OS file lock (flock) that serializes builds of one tree. The kernel releases it when
the holder dies, so a killed build never leaves a stale lock behind."""

from __future__ import annotations

import fcntl
import os
import time
from pathlib import Path
from typing import Callable

from .errors import LockTimeout


class BuildLock:
    def __init__(self, path: Path, *, timeout: float = 3600.0,
                 on_wait: Callable[[str], None] | None = None):
        self.path = path
        self.timeout = timeout
        self.on_wait = on_wait
        self._fd: int | None = None

    def __enter__(self) -> "BuildLock":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        deadline = time.monotonic() + self.timeout
        told = False
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if not told and self.on_wait:
                    self.on_wait(f"waiting for another build of this tree to finish (lock {self.path})")
                    told = True
                if time.monotonic() > deadline:
                    os.close(fd)
                    raise LockTimeout(f"another build held {self.path} for over {self.timeout:.0f} s",
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
