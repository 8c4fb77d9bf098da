"""Every error the driver raises on purpose, with the exit code the CLI returns for it.

The CLI turns these into one paragraph: what went wrong, where, and how to fix it.
Anything else that escapes is a bug and keeps its traceback.
"""

from __future__ import annotations

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
        from shlex import join

        lines = [f"error [{self.stage}]: {self.message} (exit code {self.returncode})",
                 f"  command: {join(self.command)}"]
        if self.log_path:
            lines.append(f"  log:     {self.log_path}")
        if self.output_tail.strip():
            lines.append("  last output:")
            lines += ["    " + line for line in self.output_tail.rstrip().splitlines()]
        if self.hint:
            lines.append(f"  fix:   {self.hint}")
        return "\n".join(lines)


class BuildError(CommandError):
    """The compiler or linker failed; `diagnostics` holds file:line error lines."""

    def __init__(self, message: str, *, diagnostics: list[str] | None = None, **kwargs):
        super().__init__(message, **kwargs)
        self.diagnostics = diagnostics or []

    def render(self) -> str:
        text = super().render()
        if self.diagnostics:
            text += "\n  compiler errors:\n" + "\n".join("    " + d for d in self.diagnostics)
        return text


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
