"""`trtis-build ops check`: check a published bundle.

Per library: the file exists and matches its manifest sha256; which SASS and PTX
architectures its CUDA code carries (and, with --gpu-arch, whether any of it runs there);
for TensorRT plugin libraries, the C++ plugin check program (dlopen, getCreators, create,
output types and shapes, clone, serialize and recreate)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from . import fatbin
from .bundle import read_manifest, sha256_file
from .discover import PluginId
from .errors import BundleError


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


def run_plugin_check(options, libraries: list[Path], expect: list[PluginId]) -> dict:
    """The C++ plugin check (built once per headers) on plugin libraries, as a report dict:
    {"ok", "failures", "warnings", "plugins"}, or {"skipped": why} without the headers."""
    from . import build as build_stage, tensorrt as trt_support

    tc = build_stage.load_toolchain(options)
    headers = trt_support.find_tensorrt(options.tensorrt_root)
    if headers is None or tc.cuda is None:
        return {"skipped": "TensorRT or CUDA headers not found (needed to build the check program)"}
    program = trt_support.build_check_program(cxx=tc.cxx.path, headers=headers,
                                              cuda_include=Path(tc.cuda.include_dir),
                                              out_dir=options.build_dir / "checks")
    result = trt_support.run_plugin_check(program, libraries, expect=expect)
    return {"ok": result.ok, "failures": list(result.failures), "warnings": list(result.warnings),
            "plugins": [str(p) for p in result.plugins]}


def _plugin_check(options, bundle, manifest) -> dict | None:
    libraries = [lib for lib in manifest["libraries"] if lib["framework"] == "tensorrt"]
    if not libraries:
        return None
    expect = [PluginId(p["name"], p["version"], p["namespace"]) for lib in libraries for p in lib["plugins"]]
    return run_plugin_check(options, [bundle / lib["path"] for lib in libraries], expect)


def check_bundle(options, *, gpu_arch: str | None = None, as_json: bool = False) -> int:
    bundle = options.bundle_dir
    manifest = read_manifest(bundle)
    if gpu_arch:
        gpu_arch = gpu_arch.removeprefix("sm_")
    entries = [_check_library(bundle, lib, gpu_arch) for lib in manifest["libraries"]]
    entries += [_check_library(bundle, lib, gpu_arch) for lib in manifest["kernel_libraries"]]
    # TensorRT autoload shims: host code only (no CUDA), checked against their manifest sha256.
    entries += [_check_library(bundle, {**lib["autoload"], "cuda_archs": []}, gpu_arch)
                for lib in manifest["libraries"] if lib.get("autoload")]
    plugins = _plugin_check(options, bundle, manifest)
    report = {"bundle": str(bundle), "libraries": entries, "plugin_check": plugins}
    problems = [f"{e['path']}: {p}" for e in entries for p in e["problems"]]
    if plugins and plugins.get("ok") is False:
        problems += [f"plugin check: {f}" for f in plugins["failures"]]
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
        if plugins:
            print(f"plugin check: {'ok' if plugins.get('ok') else plugins}", file=sys.stderr)
    if problems:
        raise BundleError("bundle check failed: " + "; ".join(problems), where=bundle,
                          hint="rebuild with `trtis-build ops build` (use --cuda-arch to add architectures)")
    return 0
