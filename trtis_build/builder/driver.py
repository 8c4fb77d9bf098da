"""Stage 4: configure CMake with Ninja from the plan and build; then hand the outputs to
the bundle stage (`build` below runs the whole pipeline). Concurrent builds of one tree are
serialized by an OS file lock."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from .. import frameworks as framework_seams
from ..core import process
from ..core.errors import BuildError, ConfigError
from ..core.files import write_text_atomic
from ..core.locks import FileLock
from ..core.options import Options
from ..ops import names
from ..ops.discover import discover
from . import compiler_cache
from .link_errors import LINK_DIAGNOSTIC, undefined_symbols
from . import toolchain as toolchain_stage
from .compile_launcher import SOURCE_LINK
from .plan import BuildPlan, make_plan, write_plan

if TYPE_CHECKING:  # the bundle stage sits above this one: it is handed in, never imported
    from ..bundle.publish import Bundle

CMAKE_SOURCE_DIR = Path(__file__).parent / "cmake"
COMPILE_LAUNCHER = Path(__file__).with_name("compile_launcher.py")
OWNED_MARK = ".trtis-build-owned"  # in every directory the driver may delete
# A second build of one tree waits for the first; past this it gives up with a message.
LOCK_TIMEOUT_S = 3600.0
# gcc/clang "file:line:col: error: ..." and nvcc/cudafe "file(line): error: ...".
DIAGNOSTIC = re.compile(r"^(?P<loc>[^\s:()][^:()]*(?::\d+(?::\d+)?|\(\d+\))): (?:fatal )?error\b.*$")


@dataclass(frozen=True)
class BuildResult:
    plan: BuildPlan
    bundle: "Bundle"
    toolchain: toolchain_stage.Toolchain
    steps: tuple[tuple[str, float], ...]   # (step, seconds) for the summary
    compiled: bool                         # False when Ninja had nothing to do
    cache: compiler_cache.CacheReport | None = None   # with compiler-cache = "sccache"


class Progress:
    """Steps with durations, printed to stderr (stdout stays clean for --json)."""

    def __init__(self, echo: Callable[[str], None] | None = None):
        self.echo = echo or (lambda text: print(text, file=sys.stderr, flush=True))
        self.steps: list[tuple[str, float]] = []

    def step(self, name: str):
        progress = self

        class _Step:
            def __enter__(self):
                self.start = time.monotonic()
                return self

            def __exit__(self, exc_type, *_):
                took = time.monotonic() - self.start
                progress.steps.append((name, took))
                if exc_type is None:
                    progress.echo(f"  {name:<12} {took:6.2f} s")

        return _Step()


def load_toolchain(options: Options, refresh: bool = False) -> toolchain_stage.Toolchain:
    return toolchain_stage.load(python=options.python, options=options, refresh=refresh)


def _configure(options: Options, tc: toolchain_stage.Toolchain, plan_path: Path, progress: Progress) -> None:
    """Run CMake's configure step when the build dir is new or was made by other tools."""
    cmake_dir = options.cmake_dir
    stamp_path = cmake_dir / ".trtis-stamp.json"
    stamp = {"cmake": tc.cmake.path, "ninja": tc.ninja.path, "cxx": tc.cxx.path,
             "source": str(CMAKE_SOURCE_DIR), "plan": str(plan_path), "toolchain": tc.fingerprint,
             "source_link": SOURCE_LINK}
    if stamp_path.is_file() and (cmake_dir / "build.ninja").is_file():
        try:
            if json.loads(stamp_path.read_text()) == stamp:
                _link_source_root(options)  # a deleted link is made again
                return  # Ninja re-runs CMake by itself when the plan file changes
        except ValueError:
            pass
    if cmake_dir.exists() or cmake_dir.is_symlink():
        # A stale cache from another toolchain or source: start clean, but only in a directory
        # this tool made (--build-dir . in a tree with its own cmake/ must lose nothing).
        if cmake_dir.is_symlink() or not cmake_dir.is_dir() or (
                any(cmake_dir.iterdir()) and not (cmake_dir / OWNED_MARK).is_file() and not stamp_path.is_file()):
            raise ConfigError(f"{cmake_dir} exists and was not made by trtis-build; it is left as it is",
                              where=cmake_dir, hint="choose another --build-dir (default: build), "
                                                    "or move that directory away")
        shutil.rmtree(cmake_dir)
    cmake_dir.mkdir(parents=True)
    (cmake_dir / OWNED_MARK).write_text("made by trtis-build: deleted and remade when the toolchain changes\n")
    _link_source_root(options)
    with progress.step("configure"):
        process.run([tc.cmake.path, "-S", CMAKE_SOURCE_DIR, "-B", cmake_dir, "-G", "Ninja",
                     f"-DCMAKE_MAKE_PROGRAM={tc.ninja.path}", f"-DCMAKE_CXX_COMPILER={tc.cxx.path}",
                     "-DCMAKE_BUILD_TYPE=Release", f"-DTRTIS_PLAN={plan_path}",
                     f"-DTRTIS_SOURCE_ROOT={cmake_dir / SOURCE_LINK}",
                     "-DCMAKE_EXPORT_COMPILE_COMMANDS=ON"],
                    stage="configure", log_path=options.build_dir / "configure.log",
                    failure_message="CMake could not configure the build",
                    hint=f"read {options.build_dir / 'configure.log'}")
    stamp_path.write_text(json.dumps(stamp))


def _link_source_root(options: Options) -> None:
    """<cmake dir>/src -> the project root (a relative link): sources reached through it sit
    inside the binary dir, so CMake names their objects and the launcher their paths without
    the checkout's absolute path."""
    link = options.cmake_dir / SOURCE_LINK
    target = os.path.relpath(options.root, options.cmake_dir)
    if link.is_symlink() and os.readlink(link) == target:
        return
    if link.is_symlink():
        link.unlink()
    elif link.exists():
        raise ConfigError(f"{link} exists and is not the link trtis-build makes", where=link,
                          hint="remove the build directory (default: build) and build again")
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(target)


def compile_launcher(options: Options, cache_command: list[str]) -> list[str]:
    """What the plan puts in front of every compile (see compile_launcher.py)."""
    return [sys.executable, "-S", str(COMPILE_LAUNCHER), str(options.root), *cache_command, "--"]


def diagnostics(output: str, limit: int = 20) -> list[str]:
    found = [line.strip() for line in output.splitlines()
             if DIAGNOSTIC.match(line.strip()) or LINK_DIAGNOSTIC.search(line.strip())]
    return list(dict.fromkeys(found))[:limit]


def _build_error(message, **kwargs) -> BuildError:
    return BuildError(message, diagnostics=diagnostics(kwargs.get("output_tail", "")), **kwargs)


class _EarlyProbes:
    """Starts the frameworks' registry probes (start_early_probe) when Ninja reports its
    first step (so a no-op build, where Ninja has no work, starts no framework) and makes
    sure none outlives the build."""

    def __init__(self, tc, names: list[str]):
        self.tc, self.names, self.pending, self.started = tc, names, {}, False

    def on_ninja_line(self, line: str) -> None:
        if self.names and not self.started and line.startswith("["):
            self.started = True
            for name in self.names:
                probe = framework_seams.get(name).start_early_probe(self.tc.framework(name))
                if probe is not None:
                    self.pending[name] = probe

    def __enter__(self):
        return self

    def __exit__(self, *_):
        for probe in self.pending.values():
            probe.cancel()  # unused (the cache knew the library) or already finished


PROGRESS_EVERY_S = 10.0  # Ninja's "[done/total seconds]" lines when stderr is no terminal


def _throttled_progress(echo: Callable[[str], None], then: Callable[[str], None] | None,
                        every: float = PROGRESS_EVERY_S, clock: Callable[[], float] = time.monotonic):
    """An on_line that also echoes a Ninja status line at most every `every` seconds."""
    last = [clock()]

    def on_line(line: str) -> None:
        if then:
            then(line)
        if line.startswith("[") and clock() - last[0] >= every:
            last[0] = clock()
            echo(f"  compile      {line.strip()}")

    return on_line


def _compile(options: Options, tc, plan: BuildPlan, progress: Progress, targets: list[str] | None,
             on_line=None, extra_env: dict[str, str] | None = None) -> bool:
    log = options.build_dir / "build.log"
    log.write_text("")
    command = [tc.cmake.path, "--build", options.cmake_dir]
    if options.jobs:
        command += ["-j", str(options.jobs)]
    if targets:
        command += ["--target", *targets]
    live = sys.stderr.isatty() or bool(os.environ.get("CI"))
    if not live:  # a log file or a pipe: Ninja's progress, throttled, so a long build shows it is alive
        on_line = _throttled_progress(progress.echo, on_line)
    with progress.step("compile"):
        try:
            result = process.run(command, stage="compile", log_path=log, live=live, on_line=on_line,
                                 extra_env={"NINJA_STATUS": "[%f/%t %es] ", **(extra_env or {})},
                                 failure_message="the build failed", error_factory=_build_error,
                                 hint="fix the errors above; the previous bundle was kept")
        except BuildError as error:
            if error.returncode in (130, -signal.SIGINT) or "interrupted by user" in error.output_tail:
                # A Ctrl-C that reached only Ninja: an interruption, not a failed build.
                raise KeyboardInterrupt from None
            # The tail may have cut the first error: scan the whole log.
            text = log.read_text(errors="replace")
            error.diagnostics = diagnostics(text) or error.diagnostics
            undefined = undefined_symbols(text)
            for name in sorted({target.framework for target in plan.targets}):
                hint = framework_seams.get(name).failure_hint(text, undefined)
                if hint:
                    error.hint = f"{hint}; the previous bundle was kept"
                    break
            raise
    return "no work to do" not in result.output


def build(options: Options, *, publish: Callable[..., "Bundle"], progress: Progress | None = None,
          dry_run: bool = False, frameworks: tuple[str, ...] | None = None,
          kernels_only: bool = False) -> BuildResult | BuildPlan:
    """discover -> names -> toolchain -> plan -> CMake/Ninja -> `publish` (the bundle stage's,
    handed in: bundle.publish.build calls this). Returns the plan alone for dry_run."""
    progress = progress or Progress()
    with FileLock(options.build_dir / ".lock", what="another build of this tree",
                  timeout=LOCK_TIMEOUT_S, on_wait=progress.echo):
        with progress.step("discover"):
            ops = discover(options.root, default_namespace=options.tensorrt_namespace)
        if not ops:
            raise ConfigError(f"no ops found under {options.ops_dir}",
                              hint="create one with `trtis-build ops add NAME`")
        with progress.step("toolchain"):
            tc = load_toolchain(options)
            names.check_declared(ops, tc.frameworks)
        if options.cuda_arch and tc.cuda:
            unsupported = [a for a in options.cuda_arch if a not in tc.cuda.sass_archs]
            if unsupported:
                raise ConfigError(f"nvcc {tc.cuda.version} cannot generate code for sm_{', sm_'.join(unsupported)}",
                                  where=f"--cuda-arch ({options.sources.get('cuda_arch', 'default')})",
                                  hint=f"supported: {', '.join(tc.cuda.sass_archs)}")
        cache = compiler_cache.CacheServer(
            compiler_cache.find() if options.compiler_cache == "sccache" and not dry_run else None,
            log_path=options.build_dir / "sccache.log", base_dirs=[options.root, options.build_dir])
        plan = make_plan(ops, tc, output_dir=options.build_dir / "out", build_dir=options.build_dir,
                         no_cuda=options.no_cuda, cuda_archs=options.cuda_arch, frameworks=frameworks,
                         options=options, launcher=compile_launcher(options, cache.command))
        plan_path = options.build_dir / "plan.cmake"
        write_plan(plan, plan_path)
        if dry_run:
            return plan
        toolchain_stage.require_build_tools(tc)
        planned = sorted({t.framework for t in plan.targets})
        by_key = {op.key: op for op in ops}
        for name in planned:
            framework_seams.get(name).prepare([by_key[t.key] for t in plan.targets if t.framework == name],
                                              tc, options.build_dir)
        _configure(options, tc, plan_path, progress)
        targets = [f"{t.cmake_prefix}_harness" for t in plan.targets if t.harness] if kernels_only else None
        with _EarlyProbes(tc, [] if kernels_only else planned) as early:
            with cache:
                compiled = _compile(options, tc, plan, progress, targets, on_line=early.on_ninja_line,
                                    extra_env=cache.env)
                report = cache.report()
            if report is not None:
                _log_cache_report(options.build_dir / "build.log", report, progress)
            with progress.step("bundle"):
                result = publish(plan, tc, options, built_dir=options.build_dir / "out",
                                 kernels_only=kernels_only, early_probes=early.pending)
        return BuildResult(plan=plan, bundle=result, toolchain=tc, steps=tuple(progress.steps),
                           compiled=compiled, cache=report)


def _log_cache_report(log: Path, report: compiler_cache.CacheReport, progress: Progress) -> None:
    """Which compile steps came from the cache: each one in the build log, the count on stderr."""
    with log.open("a") as out:
        out.write(f"\ncompiler cache: {report.summary()}\n")
        for step in report.steps:
            out.write(f"  {step['result']:<14} {step['output']}\n")
    write_text_atomic(log.parent / compiler_cache.REPORT_FILE, json.dumps(report.to_json(), indent=1))
    progress.echo(f"  cache        {report.summary()}")
    warning = compiler_cache.fell_back(report.backend, os.environ)
    if warning:
        progress.echo(f"warning: {warning}")
