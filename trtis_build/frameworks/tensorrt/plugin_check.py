"""The C++ plugin check program (plugin_check/plugin_check.cc): built once per headers with
g++, it dlopens plugin libraries, calls getCreators, creates each plugin from fields, checks
output types and shapes, clones, serializes and recreates (and with --enqueue runs it)."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

from ...core import process
from ...core.errors import CommandError, ToolchainError
from .headers import TensorRTHeaders
from .names import PluginId
from .test_cases import PluginTestCase, cases_file_text

CHECKS_DIR = Path(__file__).parent / "plugin_check"
CHECK_SOURCES = ("plugin_check.cc", "plugin_check_cases.h", "plugin_check_enqueue.h", "plugin_check_support.h",
                 "plugin_check_json.h")

def check_program_command(cxx: str, headers: TensorRTHeaders, cuda_include: Path, output: Path) -> list[str]:
    """g++ command for plugin_check: TensorRT and CUDA headers only (the TensorRT headers
    include cuda_runtime_api.h), no libnvinfer and no libcudart (opened with dlopen)."""
    return [cxx, "-std=c++17", "-O1", "-Wall", "-isystem", str(headers.include_dir), "-isystem",
            str(cuda_include), str(CHECKS_DIR / "plugin_check.cc"), "-ldl", "-o", str(output)]


def build_check_program(*, cxx: str, headers: TensorRTHeaders, cuda_include: Path, out_dir: Path,
                        log_path: Path | None = None) -> Path:
    """Build plugin_check into out_dir once per (sources, command); about 2 s with g++."""
    if not (Path(cuda_include) / "cuda_runtime_api.h").is_file():
        raise ToolchainError(f"no cuda_runtime_api.h in {cuda_include}: the TensorRT headers include it",
                             hint="install the CUDA toolkit headers (nvcc's include directory) or set CUDA_HOME")
    out_dir.mkdir(parents=True, exist_ok=True)
    program = out_dir / "plugin_check"
    stamp = out_dir / "plugin_check.stamp"
    digest = hashlib.sha256(" ".join(check_program_command(cxx, headers, cuda_include, program)).encode())
    for name in CHECK_SOURCES:
        digest.update((CHECKS_DIR / name).read_bytes())
    if program.is_file() and stamp.is_file() and stamp.read_text() == digest.hexdigest():
        return program
    staging = out_dir / f".plugin_check.{os.getpid()}"
    process.run(check_program_command(cxx, headers, cuda_include, staging), stage="ops check",
                log_path=log_path, failure_message="building the TensorRT plugin check program failed",
                hint="run `trtis-build doctor`; the TensorRT headers must be 10.0 or newer")
    os.replace(staging, program)
    stamp.write_text(digest.hexdigest())
    return program


@dataclass(frozen=True)
class PluginCheckResult:
    ok: bool
    failures: tuple[str, ...]
    warnings: tuple[str, ...]
    report: dict = field(repr=False, compare=False)

    @property
    def plugins(self) -> list[PluginId]:
        return [PluginId(p["name"], p["version"], p["namespace"]) for lib in self.report.get("libraries", [])
                for p in lib.get("plugins", []) if "name" in p]


def run_plugin_check(program: Path, libraries: Iterable[Path], *, expect: Iterable[PluginId] = (),
                     cases: Sequence[tuple[PluginId, Sequence[PluginTestCase]]] = (),
                     enqueue: bool = False, extra_args: Sequence[str] = (),
                     timeout: float = 300) -> PluginCheckResult:
    """Run plugin_check; check failures come back in the result, a crash or bad usage raises.
    `cases`: op.toml's test cases per plugin (test_cases.py)."""
    with tempfile.TemporaryDirectory(prefix="trtis-plugin-check-") as tmp:
        report_path = Path(tmp) / "report.json"
        command = [str(program), "--json", str(report_path)]
        if cases:
            cases_path = Path(tmp) / "cases.tsv"
            cases_path.write_text(cases_file_text(cases))
            command += ["--cases", str(cases_path)]
        command += [arg for plugin in expect for arg in ("--expect", f"{plugin.name}:{plugin.version}:{plugin.namespace}")]
        command += (["--enqueue"] if enqueue else []) + list(extra_args) + [str(lib) for lib in libraries]
        done = process.run(command, stage="ops check", check=False, timeout=timeout)
        if done.returncode not in (0, 1) or not report_path.is_file():
            how = f"died of signal {-done.returncode}" if done.returncode < 0 else f"exited {done.returncode}"
            raise CommandError(f"the plugin check program {how} (a crash inside a plugin method, or bad usage)",
                               stage="ops check", command=command, returncode=done.returncode,
                               output_tail="\n".join(done.output.splitlines()[-30:]),
                               hint="run the command above by hand; a crash points at the plugin's code")
        report = json.loads(report_path.read_text())
    return PluginCheckResult(ok=bool(report.get("ok")) and done.returncode == 0,
                             failures=tuple(report.get("failures", [])),
                             warnings=tuple(report.get("warnings", [])), report=report)


def check_libraries(options, tc, libraries: list[Path], expect: list[PluginId],
                    cases: Sequence[tuple[PluginId, Sequence[PluginTestCase]]] = (), *,
                    enqueue: bool = False) -> dict:
    """The plugin check (built once per headers) on plugin libraries, as a report dict:
    {"ok", "failures", "warnings", "needs_gpu", "plugins", "cases", "log"}, or {"skipped": why}
    without the headers. `tc`: the builder's toolchain (g++ and the CUDA headers); `enqueue`:
    also run each test case on the GPU (a machine without one fails the check, saying so)."""
    from .headers import find_tensorrt

    headers = find_tensorrt(options.tensorrt_root)
    if headers is None or tc.cuda is None:
        return {"skipped": "TensorRT or CUDA headers not found (needed to build the check program)"}
    program = build_check_program(cxx=tc.cxx.path, headers=headers, cuda_include=Path(tc.cuda.include_dir),
                                  out_dir=options.build_dir / "checks")
    result = run_plugin_check(program, libraries, expect=expect, cases=cases, enqueue=enqueue)
    runs = [run for lib in result.report.get("libraries", []) for plugin in lib.get("plugins", [])
            for run in (plugin.get("cases") or [plugin])]
    return {"runs": len(runs), "untested": sum(1 for run in runs if not run.get("inputs")),
            "ok": result.ok, "failures": list(result.failures), "warnings": list(result.warnings),
            "needs_gpu": list(result.report.get("needs_gpu", [])), "plugins": [str(p) for p in result.plugins],
            "cases": sum(len(c) for _, c in cases), "enqueue": enqueue, "log": list(result.report.get("log", []))}


def summarize(checked: dict) -> tuple[str, str]:
    """(PASS | PARTIAL | FAIL | SKIP, one line) for a check_libraries report: SKIP where nothing
    could be checked here (no headers, or every plugin needs a GPU to be created), PARTIAL where
    a plugin had no test case (created, cloned and serialized only)."""
    if "skipped" in checked:
        return "SKIP", f"plugin check not run: {checked['skipped']}"
    if checked["failures"]:
        return "FAIL", "plugin check failed: " + "; ".join(checked["failures"])
    gpu = checked.get("needs_gpu", [])
    if gpu and len(gpu) >= checked.get("runs", 0):
        return "SKIP", "not checked here, creation needs a GPU: " + "; ".join(gpu)
    done = f"plugin check: {', '.join(checked['plugins'])} created, cloned, serialized and recreated"
    if checked.get("cases"):
        done += f"; {checked['cases']} op.toml test case(s) checked for output types and shapes"
    done += ("; enqueue run on the GPU" if checked.get("enqueue")
             else "; enqueue not run (`ops test --gpu` on a machine with a GPU runs it)")
    if checked.get("untested"):
        done += (f"; {checked['untested']} without a test case (output shapes and enqueue not checked: "
                 "declare [[plugins.tests]] in op.toml)")
    if gpu:
        done += f"; {len(gpu)} need a GPU: " + "; ".join(gpu)
    return ("PARTIAL" if checked.get("untested") else "PASS"), done
