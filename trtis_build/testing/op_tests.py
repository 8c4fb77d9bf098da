"""`trtis-build ops test` and helpers for the ops' own tests.

Each op's test file runs under pytest in a separate process with TRTIS_BUNDLE pointing at
the freshly built bundle; `run_savedmodel_in_fresh_process` proves a SavedModel that uses
the op reloads where only the bundle (not the test's Python objects) provides it."""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path
from typing import Mapping

from . import build as build_stage
from . import process
from .errors import TestFailure
from .loader import default_bundle_path

PROBES = Path(__file__).parent / "probes"


def bundle_path() -> Path:
    return default_bundle_path()


def run_savedmodel_in_fresh_process(saved_model: Path, inputs: Mapping[str, "object"],
                                    *, bundle: Path | None = None,
                                    signature: str = "serving_default") -> dict:
    import numpy as np

    bundle = Path(bundle or bundle_path()).resolve()
    with tempfile.TemporaryDirectory(prefix="trtis-savedmodel-") as tmp:
        inputs_path, outputs_path = Path(tmp, "inputs.npz"), Path(tmp, "outputs.npz")
        np.savez(inputs_path, **inputs)
        process.run([sys.executable, PROBES / "savedmodel_probe.py", bundle, saved_model,
                     inputs_path, outputs_path, signature], stage="ops test",
                    failure_message="the SavedModel failed in a fresh process")
        with np.load(outputs_path) as outputs:
            return {name: outputs[name] for name in outputs.files}


def _plugin_op_check(options, bundle: Path, target, plan) -> dict:
    from .check import run_plugin_check

    op = next(op for op in plan.ops if op.key == target.key)
    log = options.build_dir / f"test-{op.framework}-{op.name}.log"
    checked = run_plugin_check(options, [bundle / target.library], list(op.plugins))
    log.write_text(json.dumps(checked, indent=2) + "\n")
    if "skipped" in checked:
        return {"passed": True, "summary": f"plugin check skipped: {checked['skipped']}", "log": str(log)}
    if checked["ok"]:
        summary = f"plugin check: {', '.join(checked['plugins'])} created, cloned, serialized and recreated"
    else:
        summary = "plugin check failed: " + "; ".join(checked["failures"])
    return {"passed": checked["ok"], "summary": summary, "log": str(log)}


def run_op_tests(options, *, gpu: bool = False, as_json: bool = False,
                 pytest_args: list[str] | None = None) -> int:
    """Build (a no-op when up to date), then run each op's test files with pytest."""
    result = build_stage.build(options)
    bundle = result.bundle
    tested = [op for op in result.plan.ops
              if op.tests and any(t.key == op.key for t in result.plan.targets)]
    report = {"bundle": str(bundle.path), "ops": {}}
    failed = []
    for op in tested:
        log = options.build_dir / f"test-{op.framework}-{op.name}.log"
        log.write_text("")
        completed = process.run(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--rootdir", op.directory,
             *map(str, op.tests), *(pytest_args or [])],
            stage="ops test", cwd=op.directory, check=False, live=not as_json, log_path=log,
            extra_env={"TRTIS_BUNDLE": str(bundle.path.resolve()), "TF_CPP_MIN_LOG_LEVEL": "3"})
        summary = completed.output.strip().splitlines()[-1] if completed.output.strip() else ""
        report["ops"][op.key] = {"passed": completed.returncode == 0, "summary": summary, "log": str(log)}
        if completed.returncode != 0:
            failed.append(op.key)
    for target in result.plan.targets:
        if target.framework == "tensorrt" and target.key not in report["ops"]:
            # A plugin op without a Python test: the C++ plugin check is its test.
            entry = _plugin_op_check(options, bundle.path, target, result.plan)
            report["ops"][target.key] = entry
            if not entry["passed"]:
                failed.append(target.key)
    if gpu:
        from . import harness  # raises GpuUnavailableError (clear message) without a GPU

        gpu_results = harness.run_gpu_checks(bundle.path, project_root=options.root)
        report["gpu"] = [r.to_json() for r in gpu_results]
        if not as_json:
            print(harness.format_results(gpu_results), file=sys.stderr)
        if any(r.status == "failed" for r in gpu_results):
            failed.append("gpu kernel checks")
    if as_json:
        json.dump(report, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        for key, entry in report["ops"].items():
            print(f"{'PASS' if entry['passed'] else 'FAIL'}  {key}  {entry['summary']}", file=sys.stderr)
    if not report["ops"]:
        print("no op has a test file (test_*.py in its directory)", file=sys.stderr)
    if failed:
        raise TestFailure(f"tests failed for {', '.join(failed)}",
                          where=", ".join(report["ops"][k]["log"] for k in failed if k in report["ops"]),
                          hint="read the log(s); rerun one with `trtis-build ops test -- -x -k NAME`")
    return 0

