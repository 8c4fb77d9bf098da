"""`trtis-build ops test`: build (a no-op when up to date), then run each op's test files
under pytest in a separate process with TRTIS_BUNDLE pointing at the fresh bundle; an op
without a test file gets its framework's own test (test_without_python: for TensorRT, the
C++ plugin check); with --gpu, the CUDA kernels run through the harness."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import sys

from .. import frameworks
from ..bundle.publish import build
from ..core import process
from ..core.errors import TestFailure, ToolchainError
from . import GPU_REQUESTED


def require_pytest() -> None:
    """The ops' own tests run under pytest: say which extra brings it, not "No module named pytest"."""
    if importlib.util.find_spec("pytest") is None:
        raise ToolchainError(f"the ops' tests run under pytest, which is not installed for {sys.executable}",
                             hint="install the dev extra: pip install 'trtis-build[dev]' (scripts/setup.sh does)")


def run_op_tests(options, *, gpu: bool = False, as_json: bool = False,
                 pytest_args: list[str] | None = None) -> int:
    """Build (a no-op when up to date), then run each op's test files with pytest."""
    if gpu:
        from . import harness

        harness.require_gpu()  # before anything runs: --gpu on a machine without one is an error
    result = build(options)
    bundle = result.bundle
    tested = [op for op in result.plan.ops
              if op.tests and any(t.key == op.key for t in result.plan.targets)]
    if tested:
        require_pytest()
    # Frameworks' start-up chatter (oneDNN, absl) stays out of the report unless asked for.
    quiet = {} if os.environ.get("TRTIS_BUILD_VERBOSE") else {"TF_CPP_MIN_LOG_LEVEL": "3"}
    report = {"bundle": str(bundle.path), "ops": {}}
    failed = []
    for op in tested:
        log = options.build_dir / f"test-{op.framework}-{op.name}.log"
        log.write_text("")
        completed = process.run(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--rootdir", op.directory,
             *map(str, op.tests), *(pytest_args or [])],
            stage="ops test", cwd=op.directory, check=False, live=not as_json, log_path=log,
            extra_env={"TRTIS_BUNDLE": str(bundle.path.resolve()), **quiet,
                       GPU_REQUESTED: "1" if gpu else "0"})
        summary = completed.output.strip().splitlines()[-1] if completed.output.strip() else ""
        passed = completed.returncode == 0
        status = "PASS" if passed else "FAIL"
        if completed.returncode == 5 and pytest_args and re.search(r"\b\d+ deselected\b", summary):
            # `ops test -- -k NAME` selected none of this op's tests: not run, not failed.
            report["ops"][op.key] = {"passed": False, "status": "DESELECTED", "summary": summary, "log": str(log)}
            continue
        if passed and not re.search(r"\b\d+ passed\b", summary):
            # Every test skipped (a missing module, no GPU...): nothing was checked.
            passed, status, summary = False, "SKIP", f"no test ran ({summary or 'no output'})"
        report["ops"][op.key] = {"passed": passed, "status": status, "summary": summary, "log": str(log)}
        if not passed:
            failed.append(op.key)
    by_key = {op.key: op for op in result.plan.ops}
    untested: list[str] = []
    for target in result.plan.targets:
        if target.key not in report["ops"]:
            entry = frameworks.get(target.framework).test_without_python(
                options, result.toolchain, bundle.path, target, by_key[target.key], gpu=gpu)
            if entry is None:
                untested.append(target.key)
                continue
            entry.setdefault("status", "PASS" if entry["passed"] else "FAIL")
            report["ops"][target.key] = entry
            if not entry["passed"]:
                failed.append(target.key)
    if gpu:
        gpu_results = harness.run_gpu_checks(bundle.path, project_root=options.root)
        report["gpu"] = [r.to_json() for r in gpu_results]
        if not as_json:
            print(harness.format_results(gpu_results), file=sys.stderr)
        if any(r.status == "failed" for r in gpu_results):
            failed.append("gpu kernel checks")
    report["untested"] = untested
    report["not_built"] = [{"op": key, "reason": reason} for key, reason in result.plan.skipped]
    if as_json:
        json.dump(report, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        for key, entry in report["ops"].items():
            print(f"{entry['status']}  {key}  {entry['summary']}", file=sys.stderr)
    for key in untested:
        print(f"NO TEST  {key}  (add a test_*.py to its directory: `ops add` writes one to start from)",
              file=sys.stderr)
    for key, reason in result.plan.skipped:
        print(f"NOT BUILT  {key}  ({reason})", file=sys.stderr)
    if not report["ops"]:
        print("no op has a test file (test_*.py in its directory)", file=sys.stderr)
    if failed:
        not_run = [key for key in failed if report["ops"].get(key, {}).get("status") == "SKIP"]
        broken = [key for key in failed if key not in not_run]
        parts = ([f"tests failed for {', '.join(broken)}"] if broken else []) + (
            [f"nothing was checked for {', '.join(not_run)} (SKIP: the reason is above)"] if not_run else [])
        raise TestFailure("; ".join(parts),
                          where=", ".join(report["ops"][k]["log"] for k in failed if k in report["ops"]),
                          hint="read the log(s); rerun one with `trtis-build ops test -- -x -k NAME`" if broken
                          else "run them where they can run: on a machine with a GPU, or with what the reason names "
                               "installed")
    return 0

