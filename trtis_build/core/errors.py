"""Every error the driver raises on purpose, with the exit code the CLI returns for it.

The CLI turns these into one paragraph: what went wrong, where, and how to fix it.
Anything else that escapes is a bug and keeps its traceback.
"""

from __future__ import annotations

import errno
from pathlib import Path


class TrtisBuildError(Exception):
    """Base class: a user-facing failure with a fix."""

    exit_code = 1
    stage = "trtis-build"

    def __init__(self, message: str, *, where: str | Path | None = None, hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.where = str(where) if where is not None else None
        self.hint = hint

    def render(self) -> str:
        lines = [f"error [{self.stage}]: {self.message}"]
        if self.where:
            lines.append(f"  where: {self.where}")
        if self.hint:
            lines.append(f"  fix:   {self.hint}")
        return "\n".join(lines)

    def to_json(self) -> dict:
        """The error as data, for `--json` callers (what, where, how to fix, the exit code)."""
        return {"error": {"kind": type(self).__name__, "stage": self.stage, "message": self.message,
                          "where": self.where, "fix": self.hint, "exit_code": self.exit_code}}


class UsageError(TrtisBuildError):
    """Arguments argparse refused (it has printed the usage already)."""

    exit_code = 2
    stage = "usage"


class Interrupted(TrtisBuildError):
    """Ctrl-C: nothing half-done is left (builds publish atomically)."""

    exit_code = 130


class InternalError(TrtisBuildError):
    """A bug: an exception the driver did not raise on purpose (its traceback goes to stderr)."""


class ConfigError(TrtisBuildError):
    """Bad option, bad configuration key or value."""

    exit_code = 2
    stage = "config"


class OpSpecError(TrtisBuildError):
    """An op directory or its op.toml is invalid."""

    exit_code = 3
    stage = "discover"


class NameConflictError(TrtisBuildError):
    """Two ops register one name, a name shadows a built-in, or a library registers other names."""

    exit_code = 3
    stage = "names"


class ScaffoldError(TrtisBuildError):
    exit_code = 3
    stage = "ops add"


class ToolchainError(TrtisBuildError):
    """A required tool (compiler, CMake, TensorFlow...) is missing or unusable."""

    exit_code = 4
    stage = "toolchain"


class GpuUnavailableError(ToolchainError):
    """No usable CUDA GPU (no driver, no device, or no torch/cupy to own buffers)."""

    stage = "gpu"


class CommandError(TrtisBuildError):
    """An external command failed. Carries the command, exit code, log and output tail."""

    exit_code = 5

    def __init__(self, message: str, *, stage: str, command: list[str], returncode: int,
                 log_path: Path | None = None, output_tail: str = "", hint: str | None = None):
        super().__init__(message, where=log_path, hint=hint)
        self.stage = stage
        self.command = command
        self.returncode = returncode
        self.log_path = log_path
        self.output_tail = output_tail

    def render(self) -> str:
        return "\n".join(self._head() + self._body() + ([f"  fix:   {self.hint}"] if self.hint else []))

    def _head(self) -> list[str]:
        from shlex import join

        lines = [f"error [{self.stage}]: {self.message} (exit code {self.returncode})",
                 f"  command: {join(self.command)}"]
        if self.log_path:
            lines.append(f"  log:     {self.log_path}")
        return lines

    def _body(self) -> list[str]:
        if not self.output_tail.strip():
            return []
        return ["  last output:"] + ["    " + line for line in self.output_tail.rstrip().splitlines()]


class BuildError(CommandError):
    """The compiler or linker failed; `diagnostics` holds file:line error lines."""

    def __init__(self, message: str, *, diagnostics: list[str] | None = None, **kwargs):
        super().__init__(message, **kwargs)
        self.diagnostics = diagnostics or []

    def _body(self) -> list[str]:
        # The errors found in the whole log, not the last lines of output, which in a parallel
        # build are often another job's warnings; the log keeps everything.
        if not self.diagnostics:
            return super()._body()
        return ["  compiler errors:"] + ["    " + d for d in self.diagnostics]


class BundleError(TrtisBuildError):
    """A built library failed a check; the previous bundle was kept."""

    exit_code = 6
    stage = "bundle"


class LockTimeout(TrtisBuildError):
    exit_code = 7
    stage = "lock"


class TestFailure(TrtisBuildError):
    exit_code = 8
    stage = "ops test"


class ServerError(TrtisBuildError):
    """The Triton server could not start, load a model or answer."""

    exit_code = 9
    stage = "server"


class ImageError(TrtisBuildError):
    """An OCI image could not be read, composed or pushed."""

    exit_code = 10
    stage = "image"


class ModelError(TrtisBuildError):
    """A SavedModel cannot become a Triton model (unknown op, no signature, bad shape...)."""

    exit_code = 11
    stage = "model add"


class FileSystemError(TrtisBuildError):
    """A file or directory the command must read or write cannot be (disk full, read-only,
    a file where a directory should be...): said with the path and the fix, no traceback."""

    exit_code = 12
    stage = "files"

    HINTS = {
        errno.ENOSPC: "free disk space there (the previous bundle, image or model was kept)",
        errno.EDQUOT: "free space within your quota there",
        errno.EROFS: "choose a directory on a writable file system",
        errno.EACCES: "choose a directory you may write to, or fix its permissions",
        errno.EPERM: "choose a directory you may write to, or fix its permissions",
        errno.ENOTDIR: "a part of that path is a file, not a directory: choose another path",
        errno.EISDIR: "that path is a directory: give a file name",
        errno.ENOENT: "create its parent directory first, or choose an existing one",
        errno.ENAMETOOLONG: "choose a shorter name",
        errno.EEXIST: "a file is in the way where a directory belongs: move it, or choose another path",
    }

    @classmethod
    def from_os_error(cls, error: OSError) -> "FileSystemError":
        what = error.strerror or str(error)
        where = error.filename if error.filename is not None else None
        return cls(f"cannot use {where}: {what}" if where else what, where=where,
                   hint=cls.HINTS.get(error.errno, "check that path and try again"))
