"""Command line: parses arguments, calls the stages, and turns TrtisBuildError into one
paragraph and an exit code. No traceback for a user error."""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
from typing import Sequence

from .. import __version__
from ..core.errors import FileSystemError, InternalError, Interrupted, TrtisBuildError, UsageError

# Each module of this package adds its subcommands with register(subparsers).
COMMAND_MODULES = ("ops", "doctor", "serving", "image", "cache")


class _Parser(argparse.ArgumentParser):
    """argparse, remembering its usage error so that --json can return it as data
    (subcommand parsers are made of this class too)."""

    usage_error: str | None = None

    def error(self, message):
        _Parser.usage_error = f"{self.prog}: {message}"
        super().error(message)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="trtis-build",
        description="Build TensorFlow custom ops, TensorRT plugins and PyTorch operators into a "
                    "checked bundle and serve them with Triton Inference Server.")
    parser.add_argument("--version", action="version", version=f"trtis-build {__version__}")
    parser.add_argument("-C", "--root", metavar="DIR",
                        help="project root (default: nearest directory upwards with ops/)")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMAND_MODULES:
        importlib.import_module(f".{name}", __package__).register(subparsers)
    return parser


class _TrackedStdout:
    """stdout that remembers whether a command wrote its (JSON) result before failing."""

    def __init__(self, stream):
        self.stream, self.written = stream, False

    def write(self, text):
        self.written = self.written or bool(text)
        return self.stream.write(text)

    def __getattr__(self, name):
        return getattr(self.stream, name)


def _dump_json(error: TrtisBuildError) -> None:
    json.dump(error.to_json(), sys.stdout, indent=2)
    sys.stdout.write("\n")
    sys.stdout.flush()


def _wants_json(argv: list[str]) -> bool:
    return "--json" in (argv[:argv.index("--")] if "--" in argv else argv)


def _report(error: TrtisBuildError, args: argparse.Namespace) -> int:
    """The paragraph on stderr; with --json, stdout holds one JSON object: the command's
    result (`ops test` reports failed tests in it), or this error when it failed before it had
    one, so a pipeline that reads stdout gets data in both outcomes."""
    print(error.render(), file=sys.stderr)
    if getattr(args, "json", False) and not getattr(sys.stdout, "written", False):
        _dump_json(error)
    return error.exit_code


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    words = sys.argv[1:] if argv is None else list(argv)
    if not words:
        parser.print_help()  # `trtis-build` alone: what it can do, not a usage error
        return 0
    try:
        args = parser.parse_args(argv)
    except SystemExit as stop:
        if stop.code not in (0, None) and _wants_json(words) and _Parser.usage_error:
            _dump_json(UsageError(_Parser.usage_error, hint="see `trtis-build COMMAND --help`"))
        raise
    wants_json = bool(getattr(args, "json", False))
    if wants_json:
        sys.stdout = _TrackedStdout(sys.stdout)
    try:
        return int(args.handler(args) or 0)
    except TrtisBuildError as error:
        return _report(error, args)
    except BrokenPipeError:
        # `trtis-build ops list | head`: not an error.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except OSError as exc:
        # Disk full, read-only or mistyped paths: the environment, not a bug; every writer
        # publishes atomically, so nothing half-written is left.
        return _report(FileSystemError.from_os_error(exc), args)
    except KeyboardInterrupt:
        # Builds publish atomically and servers are torn down by their own handlers, so
        # nothing half-done is left; say what applies to the command that was running.
        kept = {"ops": "the previous bundle was kept", "server": "no image was written to --out"}
        stop = Interrupted(f"interrupted: {kept.get(args.command, 'stopped')}")
        stop.stage = args.command
        print(stop.message, file=sys.stderr)
        if wants_json and not sys.stdout.written:
            _dump_json(stop)
        return stop.exit_code
    except Exception as exc:  # a bug: the traceback is for its report, and --json still gets data
        import traceback

        traceback.print_exc()
        bug = InternalError(f"internal error: {type(exc).__name__}: {exc}")
        bug.stage = args.command
        print(f"trtis-build: {bug.message} (a bug in trtis-build: please report it with the traceback above)",
              file=sys.stderr)
        if wants_json and not sys.stdout.written:
            _dump_json(bug)
        return bug.exit_code
