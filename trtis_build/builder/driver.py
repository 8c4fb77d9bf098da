"""Stage 4: configure CMake with Ninja from the plan and build; then hand the outputs to
the bundle stage. Concurrent builds of one tree are serialized by an OS file lock."""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from . import bundle as bundle_stage
from . import names, process, toolchain as toolchain_stage
from .config import Options
from .discover import discover
from .errors import BuildError, ConfigError
from .locking import BuildLock
from .plan import BuildPlan, make_plan, write_plan

CMAKE_SOURCE_DIR = Path(__file__).parent / "cmake"
# gcc/clang "file:line:col: error: ..." and nvcc/cudafe "file(line): error: ...".
DIAGNOSTIC = re.compile(r"^(?P<loc>[^\s:()][^:()]*(?::\d+(?::\d+)?|\(\d+\))): (?:fatal )?error\b.*$")


@dataclass(frozen=True)
class BuildResult:
    plan: BuildPlan
    bundle: bundle_stage.Bundle
    toolchain: toolchain_stage.Toolchain
    steps: tuple[tuple[str, float], ...]   # (step, seconds) for the summary
    compiled: bool                         # False when Ninja had nothing to do


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
    return toolchain_stage.load(python=options.python,
                                tensorrt_root=options.tensorrt_root, refresh=refresh)


def _tf_shim(options: Options, tc: toolchain_stage.Toolchain) -> Path | None:
    """TensorFlow's GPU headers include CUDA through third_party/gpus/...; the CPU wheel
    does not ship that path. Point it at the found CUDA toolkit (classic layout only)."""
    if tc.cuda is None:
        return None
    shim = options.build_dir / "tf-shim"
    link = shim / "third_party" / "gpus" / "cuda" / "include"
    if not link.is_symlink() or os.readlink(link) != tc.cuda.include_dir:
        link.parent.mkdir(parents=True, exist_ok=True)
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to(tc.cuda.include_dir)
    return shim


def _has_tensorrt_runtime(options: Options, ops) -> bool:
    if not any(op.framework == "tensorrt" for op in ops):
        return True  # nothing to check: do not look
    from . import tensorrt as trt_support

    if options.tensorrt_python_path:
        trt_support.runtime_env(options.tensorrt_python_path)  # a bad setting is an error, before compiling
        return True
    return trt_support.has_runtime()


def _configure(options: Options, tc: toolchain_stage.Toolchain, plan_path: Path, progress: Progress) -> None:
    """Run CMake's configure step when the build dir is new or was made by other tools."""
    cmake_dir = options.cmake_dir
    stamp_path = cmake_dir / ".trtis-stamp.json"
    stamp = {"cmake": tc.cmake.path, "ninja": tc.ninja.path, "cxx": tc.cxx.path,
             "source": str(CMAKE_SOURCE_DIR), "plan": str(plan_path), "toolchain": tc.fingerprint}
    if stamp_path.is_file() and (cmake_dir / "build.ninja").is_file():
        try:
            if json.loads(stamp_path.read_text()) == stamp:
                return  # Ninja re-runs CMake by itself when the plan file changes
        except ValueError:
            pass
    if cmake_dir.exists():
        shutil.rmtree(cmake_dir)  # stale cache from another toolchain or source: start clean
    cmake_dir.mkdir(parents=True)
    with progress.step("configure"):
        process.run([tc.cmake.path, "-S", CMAKE_SOURCE_DIR, "-B", cmake_dir, "-G", "Ninja",
                     f"-DCMAKE_MAKE_PROGRAM={tc.ninja.path}", f"-DCMAKE_CXX_COMPILER={tc.cxx.path}",
                     "-DCMAKE_BUILD_TYPE=Release", f"-DTRTIS_PLAN={plan_path}",
                     "-DCMAKE_EXPORT_COMPILE_COMMANDS=ON"],
                    stage="configure", log_path=options.build_dir / "configure.log",
                    failure_message="CMake could not configure the build",
                    hint=f"read {options.build_dir / 'configure.log'}")
    stamp_path.write_text(json.dumps(stamp))


def diagnostics(output: str, limit: int = 20) -> list[str]:
    found = [line.strip() for line in output.splitlines() if DIAGNOSTIC.match(line.strip())]
    return list(dict.fromkeys(found))[:limit]


def _build_error(message, **kwargs) -> BuildError:
    return BuildError(message, diagnostics=diagnostics(kwargs.get("output_tail", "")), **kwargs)


class _EarlyProbe:
    """Starts the TensorFlow registry probe when Ninja reports its first step (so a no-op
    build, where Ninja has no work, never starts TensorFlow) and makes sure it never outlives
    the build."""

    def __init__(self, tc, wanted: bool):
        self.tc, self.wanted, self.pending = tc, wanted, None

    def on_ninja_line(self, line: str) -> None:
        if self.wanted and self.pending is None and line.startswith("["):
            self.pending = bundle_stage.start_tensorflow_probe(self.tc)

    def __enter__(self):
        return self

    def __exit__(self, *_):
        if self.pending is not None:
            self.pending.cancel()  # unused (the cache knew the library) or already finished


def _compile(options: Options, tc, plan: BuildPlan, progress: Progress, targets: list[str] | None,
             on_line=None) -> bool:
    log = options.build_dir / "build.log"
    log.write_text("")
    command = [tc.cmake.path, "--build", options.cmake_dir]
    if options.jobs:
        command += ["-j", str(options.jobs)]
    if targets:
        command += ["--target", *targets]
    live = sys.stderr.isatty() or bool(os.environ.get("CI"))
    with progress.step("compile"):
        try:
            result = process.run(command, stage="compile", log_path=log, live=live, on_line=on_line,
                                 extra_env={"NINJA_STATUS": "[%f/%t %es] "},
                                 failure_message="the build failed", error_factory=_build_error,
                                 hint="fix the errors above; the previous bundle was kept")
        except BuildError as error:
            # The tail may have cut the first error: scan the whole log.
            error.diagnostics = diagnostics(log.read_text(errors="replace")) or error.diagnostics
            raise
    return "no work to do" not in result.output


def build(options: Options, *, progress: Progress | None = None, dry_run: bool = False,
          frameworks: tuple[str, ...] | None = None, kernels_only: bool = False) -> BuildResult | BuildPlan:
    """discover -> names -> toolchain -> plan -> CMake/Ninja -> bundle. Returns the plan alone
    for dry_run."""
    progress = progress or Progress()
    with BuildLock(options.build_dir / ".lock", on_wait=progress.echo):
        with progress.step("discover"):
            ops = discover(options.root, default_namespace=options.tensorrt_namespace)
        if not ops:
            raise ConfigError(f"no ops found under {options.ops_dir}",
                              hint="create one with `trtis-build ops add NAME`")
        with progress.step("toolchain"):
            tc = load_toolchain(options)
            names.check_declared(ops, tc.tensorflow.builtin_ops if tc.tensorflow else frozenset())
        if options.cuda_arch and tc.cuda:
            unsupported = [a for a in options.cuda_arch if a not in tc.cuda.sass_archs]
            if unsupported:
                raise ConfigError(f"nvcc {tc.cuda.version} cannot generate code for sm_{', sm_'.join(unsupported)}",
                                  where=f"--cuda-arch ({options.sources.get('cuda_arch', 'default')})",
                                  hint=f"supported: {', '.join(tc.cuda.sass_archs)}")
        plan = make_plan(ops, tc, output_dir=options.build_dir / "out", no_cuda=options.no_cuda,
                         cuda_archs=options.cuda_arch, shim_dir=options.build_dir / "tf-shim",
                         generated_dir=options.build_dir / "generated", frameworks=frameworks,
                         tensorrt_runtime=_has_tensorrt_runtime(options, ops))
        plan_path = options.build_dir / "plan.cmake"
        write_plan(plan, plan_path)
        if dry_run:
            return plan
        toolchain_stage.require_build_tools(tc)
        if any(op.gpu_sources for op in ops):
            _tf_shim(options, tc)
        bundle_stage.write_generated_headers(plan, options.build_dir / "generated")
        _configure(options, tc, plan_path, progress)
        targets = [f"{t.cmake_prefix}_harness" for t in plan.targets if t.harness] if kernels_only else None
        wants_probe = not kernels_only and tc.tensorflow is not None and any(
            t.framework == "tensorflow" for t in plan.targets)
        with _EarlyProbe(tc, wants_probe) as early:
            compiled = _compile(options, tc, plan, progress, targets, on_line=early.on_ninja_line)
            with progress.step("bundle"):
                result = bundle_stage.publish(plan, tc, options, built_dir=options.build_dir / "out",
                                              kernels_only=kernels_only, early_tf_probe=early.pending)
        return BuildResult(plan=plan, bundle=result, toolchain=tc, steps=tuple(progress.steps),
                           compiled=compiled)
