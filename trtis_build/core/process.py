"""The one place that starts processes.

Every external command goes through `run()`: it logs the command, can stream output live
(for Ninja's progress) while keeping a copy in a log file, and raises `CommandError` with
the stage, the command, the exit code, the log path and the last lines of output.
"""

from __future__ import annotations

import ctypes
import os
import shlex
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from queue import Empty, Queue
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping, Sequence

from .errors import CommandError

TAIL_LINES = 30


@dataclass(frozen=True)
class Completed:
    command: list[str]
    returncode: int
    output: str


def _environment(env: Mapping[str, str] | None, extra_env: Mapping[str, str] | None) -> dict[str, str]:
    merged = dict(os.environ if env is None else env)
    merged.update(extra_env or {})
    return merged


STOP_GRACE_S = 3.0  # after the first signal, before SIGKILL
_PR_SET_PDEATHSIG = 1
# Looked up once, here: between fork and exec the child must not load libraries or take
# locks another thread of ours may hold (the reader threads), only call this.
try:
    _PRCTL = ctypes.CDLL(None, use_errno=True).prctl
except (OSError, AttributeError):
    _PRCTL = None  # not Linux: the process group is still stopped on every exit we see


def _die_with_parent(parent: int):
    """preexec_fn: the child gets SIGKILL when this process dies, even by kill -9 (Linux),
    so a killed driver leaves no server or compiler running."""
    def arm() -> None:
        if _PRCTL is None:
            return
        _PRCTL(_PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != parent:  # the parent died before prctl took effect
            os._exit(1)
    return arm


def _kill_group(proc: subprocess.Popen, first: int = signal.SIGTERM, *, own_group: bool = True) -> None:
    """Stop the child and, when it has its own process group, everything it started:
    `first` (SIGINT lets Ninja delete the outputs of the commands it interrupts), then
    SIGKILL after a grace."""
    for sig in (first, signal.SIGKILL):
        try:
            if own_group:
                os.killpg(proc.pid, sig)
            else:
                proc.send_signal(sig)
        except (ProcessLookupError, PermissionError):
            proc.kill()
        try:
            proc.wait(timeout=STOP_GRACE_S)
            break
        except subprocess.TimeoutExpired:
            continue
    proc.wait()


def _pump(stream, queue: Queue) -> None:
    for line in stream:
        queue.put(line)
    queue.put(None)


def run(command: Sequence[str | os.PathLike], *, stage: str, cwd: Path | None = None,
        env: Mapping[str, str] | None = None, extra_env: Mapping[str, str] | None = None,
        log_path: Path | None = None, live: bool = False, check: bool = True,
        timeout: float | None = None, error_factory: Callable[..., CommandError] | None = None,
        failure_message: str | None = None, hint: str | None = None,
        echo: Callable[[str], None] | None = None,
        on_line: Callable[[str], None] | None = None, input_text: str | None = None,
        secret_output: bool = False,
        heartbeat: tuple[float, Callable[[float, str], None]] | None = None) -> Completed:
    """Run a command; stdout and stderr are merged.

    live=True streams each line to `echo` (default: stderr) as it arrives; `on_line` sees
    every line as it arrives (the build starts work when Ninja reports its first step).
    `input_text` is written to the command's stdin (otherwise stdin is empty). `timeout`
    is a deadline for the whole run: past it the command and everything it started are
    killed and CommandError says so. secret_output=True (credential helpers): stdout alone
    is captured, stderr is discarded, and neither the output nor a tail goes into a log or
    an error. heartbeat=(seconds, call): while the command runs, call(elapsed, last line)
    whenever `seconds` passed without one (a long silent step still shows it is alive).
    """
    argv = [os.fspath(part) for part in command]
    full_env = _environment(env, extra_env)
    if os.environ.get("TRTIS_BUILD_VERBOSE"):
        print(f"+ {shlex.join(argv)}", file=sys.stderr)
    log = open(log_path, "a", encoding="utf-8", buffering=1) if log_path and not secret_output else None
    deadline = None if timeout is None else time.monotonic() + timeout
    # A command with a deadline gets its own process group, so that the deadline stops all
    # it started (a probe's children). One without (a build) stays in ours: Ctrl-C and a
    # kill of our group reach Ninja and its compilers directly, as in a terminal.
    own_group = timeout is not None
    try:
        if log:
            log.write(f"$ {shlex.join(argv)}\n")
        try:
            proc = subprocess.Popen(argv, cwd=cwd, env=full_env, stdout=subprocess.PIPE,
                                    stderr=subprocess.DEVNULL if secret_output else subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL if input_text is None else subprocess.PIPE,
                                    text=True, errors="replace", bufsize=1, start_new_session=own_group,
                                    preexec_fn=_die_with_parent(os.getpid()))
        except (FileNotFoundError, PermissionError, NotADirectoryError) as exc:
            found = isinstance(exc, FileNotFoundError)
            raise CommandError(f"cannot execute {argv[0]!r}: {'not found' if found else exc.strerror}",
                               stage=stage, command=argv, returncode=127, log_path=log_path,
                               hint=hint or ("install it or put it on PATH" if found else
                                             "give the path of an executable program (chmod +x?)")) from None
        lines: list[str] = []
        tail: deque[str] = deque(maxlen=TAIL_LINES)
        emit = echo or (lambda text: print(text, file=sys.stderr, flush=True))
        try:
            assert proc.stdout is not None
            if input_text is not None:
                assert proc.stdin is not None
                try:
                    proc.stdin.write(input_text)  # small (a credential request): no deadlock
                    proc.stdin.close()
                except BrokenPipeError:
                    pass  # it exited without reading: its exit code says why
            queue: Queue = Queue()
            threading.Thread(target=_pump, args=(proc.stdout, queue), daemon=True).start()
            started = beat = time.monotonic()
            last_line = ""
            while True:
                now = time.monotonic()
                wait = None if deadline is None else max(0.0, deadline - now)
                if heartbeat:
                    until_beat = max(0.0, beat + heartbeat[0] - now)
                    wait = until_beat if wait is None else min(wait, until_beat)
                try:
                    line = queue.get(timeout=wait)
                except Empty:
                    if heartbeat and (deadline is None or time.monotonic() < deadline):
                        beat = time.monotonic()
                        heartbeat[1](beat - started, last_line.strip())
                        continue
                    _kill_group(proc, own_group=own_group)
                    raise CommandError(f"{failure_message or Path(argv[0]).name + ' failed'}: no result "
                                       f"within {timeout:g} s, so it was stopped", stage=stage, command=argv,
                                       returncode=-signal.SIGKILL, log_path=log_path,
                                       output_tail="" if secret_output else "".join(tail),
                                       hint=hint or "find what blocks it (a static initializer, a lock, "
                                                    "the network) in the output above") from None
                if line is None:
                    break
                lines.append(line)
                tail.append(line)
                last_line = line
                if log:
                    log.write(line)
                if live:
                    emit(line.rstrip("\n"))
                if on_line:
                    on_line(line)
            returncode = proc.wait()
        except KeyboardInterrupt:
            _kill_group(proc, signal.SIGINT, own_group=own_group)  # as if Ctrl-C had reached them
            raise
        except BaseException:
            _kill_group(proc, own_group=own_group)
            raise
    finally:
        if log:
            log.close()
    output = "".join(lines)
    if check and returncode != 0:
        factory = error_factory or CommandError
        raise factory(failure_message or f"{Path(argv[0]).name} failed", stage=stage,
                      command=argv, returncode=returncode, log_path=log_path,
                      output_tail="" if secret_output else "".join(tail), hint=hint)
    return Completed(argv, returncode, output)


class Pending:
    """A command started now and handed its input later: a probe that imports TensorFlow
    while the compiler runs. `finish()` writes the input and waits; `cancel()` kills it.
    Output (stdout and stderr merged) is read only at the end, so the probe must write
    little before its input arrives."""

    def __init__(self, command: Sequence[str | os.PathLike], *, stage: str,
                 extra_env: Mapping[str, str] | None = None):
        self.argv = [os.fspath(part) for part in command]
        self.stage = stage
        if os.environ.get("TRTIS_BUILD_VERBOSE"):
            print(f"+ {shlex.join(self.argv)} (started early)", file=sys.stderr)
        self.proc = subprocess.Popen(self.argv, env=_environment(None, extra_env), stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                     errors="replace", start_new_session=True,
                                     preexec_fn=_die_with_parent(os.getpid()))

    def finish(self, input_text: str, *, timeout: float | None = None, failure_message: str | None = None,
               hint: str | None = None) -> str:
        try:
            output, _ = self.proc.communicate(input_text, timeout=timeout)
        except subprocess.TimeoutExpired:
            self.cancel()
            raise CommandError(f"{failure_message or Path(self.argv[0]).name + ' failed'}: no result within "
                               f"{timeout:g} s, so it was stopped", stage=self.stage, command=self.argv,
                               returncode=-signal.SIGKILL,
                               hint=hint or "find what blocks it (a static initializer, a lock) and fix it") from None
        except BaseException:
            self.cancel()
            raise
        if self.proc.returncode != 0:
            raise CommandError(failure_message or f"{Path(self.argv[0]).name} failed", stage=self.stage,
                               command=self.argv, returncode=self.proc.returncode,
                               output_tail="".join(output.splitlines(True)[-TAIL_LINES:]), hint=hint)
        return output

    def cancel(self) -> None:
        if self.proc.poll() is None:
            _kill_group(self.proc, signal.SIGKILL)
        self.proc.communicate()


def alive(pid: int) -> bool:
    """Whether a process exists (someone else's counts: it is not ours to judge)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def capture(command: Sequence[str | os.PathLike], *, stage: str, **kwargs) -> str:
    """Run a command and return its merged output (raises on failure)."""
    return run(command, stage=stage, **kwargs).output


def start(command: Sequence[str | os.PathLike], *, cwd: Path | None = None,
          env: Mapping[str, str] | None = None, stdout=None, stderr=None) -> subprocess.Popen:
    """Start a long-running process in its own process group (servers), so that the
    whole group can be signalled at teardown; it dies with this process, even by kill -9."""
    argv = [os.fspath(part) for part in command]
    return subprocess.Popen(argv, cwd=cwd, env=dict(env) if env is not None else None,
                            stdout=stdout, stderr=stderr, stdin=subprocess.DEVNULL,
                            start_new_session=True, preexec_fn=_die_with_parent(os.getpid()))
