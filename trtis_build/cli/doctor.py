"""`trtis-build doctor`: what toolchain was found, what is missing, the command that fixes it."""

from __future__ import annotations

import platform
import sys

from .. import build as build_stage
from .common import add_build_options, options_from, print_json


def register(subparsers) -> None:
    doctor = subparsers.add_parser("doctor", help="show the toolchain found and how to fix what is missing")
    add_build_options(doctor)
    doctor.add_argument("--refresh", action="store_true", help="detect again, ignoring the cache")
    doctor.add_argument("--json", action="store_true")
    doctor.set_defaults(handler=cmd_doctor)


def cmd_doctor(args) -> int:
    options = options_from(args)
    tc = build_stage.load_toolchain(options, refresh=args.refresh)
    archs = tc.default_cuda_archs()
    report = {
        "python": {"path": tc.python, "version": platform.python_version()},
        "cxx": vars(tc.cxx),
        "cmake": vars(tc.cmake) if tc.cmake else None,
        "ninja": vars(tc.ninja) if tc.ninja else None,
        "cuda": ({"nvcc": tc.cuda.nvcc, "version": tc.cuda.version, "supported_archs": list(tc.cuda.sass_archs),
                  "default_archs": list(archs), "cudart_static": tc.cuda.cudart_static} if tc.cuda else None),
        "tensorflow": ({"version": tc.tensorflow.version, "include_dir": tc.tensorflow.include_dir,
                        "lib_dir": tc.tensorflow.lib_dir, "framework_lib": tc.tensorflow.framework_lib,
                        "cxx11_abi_flag": f"-D_GLIBCXX_USE_CXX11_ABI={tc.tensorflow.cxx11_abi}"}
                       if tc.tensorflow else None),
        "tensorrt": vars(tc.tensorrt) if tc.tensorrt else None,
        "tensorrt_runtime": _tensorrt_runtime(options, tc),
        "problems": list(tc.problems),
        "fingerprint": tc.fingerprint,
    }
    if args.json:
        print_json(report)
    else:
        _print_report(report)
    missing_required = tc.cmake is None or tc.ninja is None
    return 4 if missing_required else 0


def _tensorrt_runtime(options, tc) -> dict | None:
    """The TensorRT Python runtime the bundle's registry checks use, and whether its major
    matches the headers (only then are the autoload shims checked for registration)."""
    from .. import tensorrt as trt_support

    version = trt_support.runtime_version(options.tensorrt_python_path)
    if version is None and options.tensorrt_python_path is None:
        return None
    same = bool(version and tc.tensorrt and version.split(".")[0] == tc.tensorrt.version.split(".")[0])
    return {"version": version, "python_path": str(options.tensorrt_python_path or "") or None,
            "checks_autoload_registration": same}


def _print_report(report: dict) -> None:
    def line(label, value):
        print(f"  {label:<12} {value}")

    print("trtis-build doctor")
    line("python", f"{report['python']['version']} ({report['python']['path']})")
    line("c++", f"{report['cxx']['version']} ({report['cxx']['path']})")
    for tool in ("cmake", "ninja"):
        line(tool, f"{report[tool]['version']} ({report[tool]['path']})" if report[tool] else "MISSING")
    cuda = report["cuda"]
    if cuda:
        line("nvcc", f"CUDA {cuda['version']} ({cuda['nvcc']})")
        line("", f"supported: sm_{', sm_'.join(cuda['supported_archs'])}")
        line("", f"default:   sm_{', sm_'.join(cuda['default_archs'])} + PTX compute_{cuda['default_archs'][-1]}")
    else:
        line("nvcc", "not found (CPU kernels only)")
    tf = report["tensorflow"]
    if tf:
        line("tensorflow", f"{tf['version']}  {tf['cxx11_abi_flag']}")
        line("", f"include: {tf['include_dir']}")
        line("", f"library: {tf['lib_dir']}/{tf['framework_lib']}")
    else:
        line("tensorflow", "not found")
    trt = report["tensorrt"]
    line("tensorrt", f"{trt['version']} headers ({trt['include_dir']}, from {trt['source']})" if trt else "not found")
    runtime = report["tensorrt_runtime"]
    if runtime:
        where = f" from {runtime['python_path']}" if runtime["python_path"] else ""
        line("", f"runtime for the registry checks: {runtime['version'] or 'none found'}{where}")
        if trt and not runtime["checks_autoload_registration"]:
            line("", f"autoload shims: loaded but not checked for registration (needs a TensorRT "
                     f"{trt['version'].split('.')[0]} runtime: --tensorrt-python-path DIR)")
    elif trt:
        line("", "runtime for the registry checks: none (pip install 'trtis-build[trt]')")
    if report["problems"]:
        print("problems:")
        for problem in report["problems"]:
            print(f"  - {problem}")
    else:
        print("everything found")
    sys.stdout.flush()
