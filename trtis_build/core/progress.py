"""Progress of long byte transfers (layer writes, pulls, pushes): a line with bytes done, the
total and the rate, at most every few seconds and once at the end, on the log callback the
command gives (stderr). Plain lines, not a redrawn bar: CI logs keep every one."""

from __future__ import annotations

import time
from typing import Callable

EVERY_S = 5.0


def mib(size: float) -> str:
    return f"{size / (1 << 20):,.1f} MiB"


class ByteProgress:
    def __init__(self, what: str, total: int | None, echo: Callable[[str], None] | None, *,
                 every: float | None = None, clock: Callable[[], float] = time.monotonic):
        self.what, self.total, self.echo, self.clock = what, total, echo, clock
        self.every = EVERY_S if every is None else every
        self.done_bytes = 0
        self.start = self.last = clock()

    def _line(self) -> str:
        took = max(self.clock() - self.start, 1e-9)
        of = f" of {mib(self.total)}" if self.total else ""
        return f"  {self.what}: {mib(self.done_bytes)}{of} ({mib(self.done_bytes / took)}/s)"

    def advance(self, count: int) -> None:
        self.done_bytes += count
        if self.echo and self.clock() - self.last >= self.every:
            self.last = self.clock()
            self.echo(self._line())

    def rewind(self, to: int) -> None:
        """A retried transfer goes back to what the other side has."""
        self.done_bytes = to

    def finish(self) -> None:
        if self.echo and self.clock() - self.start >= self.every:  # short ones said enough already
            self.echo(self._line() + " done")
