"""`trtis-build ops check`: check a published bundle.

Per library: the file exists and matches its manifest sha256; which SASS and PTX
architectures its CUDA code carries (and, with --gpu-arch, whether any of it runs there);
then each framework's own check of its libraries (check_bundle: for TensorRT, the C++ plugin
check program)."""

from __future__ import annotations

import json
import sys

from trtis_server.manifest import autoload_entry

from .. import frameworks
from ..builder import toolchain as toolchain_stage
from ..core.errors import BundleError
from ..core.files import sha256_file
from . import fatbin
from .manifest import read_manifest


def _check_library(bundle, library: dict, gpu_arch: str | None) -> dict:
    path = bundle / library["path"]
    entry = {"path": library["path"], "problems": []}
    if not path.is_file():
        entry["problems"].append("file missing")
        return entry
    if sha256_file(path) != library["sha256"]:
        entry["problems"].append("sha256 differs from the manifest (file changed after the build)")
    if library.get("cuda_archs") == []:
        return entry  # the manifest says no CUDA code was built into this library
    archs = fatbin.cuda_archs(path)
    entry["cuda"] = fatbin.describe(archs)
    entry["archs"] = archs
    if gpu_arch:
        code = fatbin.matching_code(archs, gpu_arch)
        entry["runs_on"] = code
        if code is None:
            entry["problems"].append(f"no SASS or PTX that runs on sm_{gpu_arch}")
    return entry


def _print_check(title: str, checked: dict) -> None:
    """A framework's check report as lines (its failures also end up in the error)."""
    if "skipped" in checked:
        print(f"{title}: not run: {checked['skipped']}", file=sys.stderr)
        return
    print(f"{title}: {'ok' if checked.get('ok') else 'FAILED'}", file=sys.stderr)
    for label, key in (("FAIL", "failures"), ("needs a GPU, not checked here", "needs_gpu"), ("warning", "warnings")):
        for line in checked.get(key, []):
            print(f"  {label}: {line}", file=sys.stderr)


def check_bundle(options, *, gpu_arch: str | None = None, as_json: bool = False) -> int:
    bundle = options.bundle_dir
    manifest = read_manifest(bundle)
    if gpu_arch:
        gpu_arch = gpu_arch.removeprefix("sm_")
    entries = [_check_library(bundle, lib, gpu_arch) for lib in manifest["libraries"]]
    entries += [_check_library(bundle, lib, gpu_arch) for lib in manifest["kernel_libraries"]]
    # Autoload shims: host code only (no CUDA), checked against their manifest sha256.
    entries += [_check_library(bundle, {**shim, "cuda_archs": []}, gpu_arch)
                for shim in (autoload_entry(lib, bundle) for lib in manifest["libraries"])
                if shim and shim.get("sha256")]
    report = {"bundle": str(bundle), "libraries": entries}
    problems = [f"{e['path']}: {p}" for e in entries for p in e["problems"]]
    tc = None
    for seam in frameworks.all():
        libraries = [lib for lib in manifest["libraries"] if lib["framework"] == seam.name]
        if seam.check_name is None:
            continue
        checked = None
        if libraries:
            tc = tc or toolchain_stage.load(python=options.python, options=options)
            checked = seam.check_bundle(options, tc, bundle, libraries)
        report[seam.check_name] = checked
        if checked and checked.get("ok") is False:
            problems += [f"{seam.check_name.replace('_', ' ')}: {f}" for f in checked["failures"]]
    if as_json:
        json.dump(report, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        for e in entries:
            status = "FAIL" if e["problems"] else "ok  "
            extra = f"  {e['cuda']}" if "cuda" in e else "  (no CUDA code)"
            if gpu_arch and "runs_on" in e:
                extra += f"  sm_{gpu_arch}: {e['runs_on'] or 'nothing runs'}"
            print(f"{status} {e['path']}{extra}", file=sys.stderr)
        for seam in frameworks.all():
            checked = report.get(seam.check_name) if seam.check_name else None
            if checked:
                _print_check(seam.check_name.replace("_", " "), checked)
    if problems:
        raise BundleError("bundle check failed: " + "; ".join(problems), where=bundle,
                          hint="rebuild with `trtis-build ops build` (use --cuda-arch to add architectures)")
    return 0
