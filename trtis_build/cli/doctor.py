"""`trtis-build doctor`: what toolchain was found, what is missing, the command that fixes it."""

from __future__ import annotations

import platform
import sys
import tempfile
from pathlib import Path

from .. import frameworks
from ..builder.driver import load_toolchain
from .common import add_toolchain_options, options_from, print_json


def register(subparsers) -> None:
    doctor = subparsers.add_parser("doctor", help="show the toolchain found and how to fix what is missing")
    add_toolchain_options(doctor)
    doctor.add_argument("--refresh", action="store_true", help="detect again, ignoring the cache")
    doctor.add_argument("--json", action="store_true", help="the report as JSON on stdout")
    doctor.set_defaults(handler=cmd_doctor)


def cmd_doctor(args) -> int:
    options = options_from(args)
    tc = load_toolchain(options, refresh=args.refresh)
    archs = tc.default_cuda_archs()
    report = {
        "python": {"path": tc.python, "version": platform.python_version()},
        "cxx": {**vars(tc.cxx), "family": tc.cxx_family},
        "linker": {**vars(tc.linker), "name": tc.linker_name} if tc.linker else None,
        "cmake": vars(tc.cmake) if tc.cmake else None,
        "ninja": vars(tc.ninja) if tc.ninja else None,
        "cuda": ({"nvcc": tc.cuda.nvcc, "version": tc.cuda.version, "supported_archs": list(tc.cuda.sass_archs),
                  "default_archs": list(archs), "cudart_static": tc.cuda.cudart_static} if tc.cuda else None),
        **{key: value for seam in frameworks.all()
           for key, value in seam.doctor(tc.framework(seam.name), options).items()},
        "compiler_cache": _compiler_cache(options, tc),
        "problems": list(tc.problems),
        "fingerprint": tc.fingerprint,
    }
    if report["compiler_cache"].get("problem"):
        report["problems"].append(f"compiler cache: {report['compiler_cache']['problem']}")
    if args.json:
        print_json(report)
    else:
        _print_report(report)
    cache = report["compiler_cache"]
    missing_required = tc.cmake is None or tc.ninja is None or (
        cache["setting"] == "sccache" and not cache.get("answers"))
    return 4 if missing_required else 0


def _compiler_cache(options, tc) -> dict:
    """The cache found and, when the build uses it, whether it answers (a real round trip)."""
    from ..builder import compiler_cache
    from ..core.errors import ToolchainError

    wanted = options.compiler_cache == "sccache"
    try:
        sccache = compiler_cache.find()
    except ToolchainError as error:
        return {"setting": options.compiler_cache, "tool": None,
                "problem": f"{error.message} ({error.hint})" if wanted else None}
    if not wanted:
        return {"setting": "none", "tool": f"sccache {sccache.version}", "path": sccache.path}
    with tempfile.TemporaryDirectory(prefix="trtis-doctor-cache-") as work:
        return {"setting": "sccache", **compiler_cache.check(sccache, tc.cxx.path, Path(work))}


def _print_report(report: dict) -> None:
    def line(label, value):
        print(f"  {label:<12} {value}")

    print("trtis-build doctor")
    line("python", f"{report['python']['version']} ({report['python']['path']})")
    line("c++", f"{report['cxx']['family']} {report['cxx']['version']} ({report['cxx']['path']})")
    linker = report["linker"]
    line("linker", f"{linker['name']} {linker['version']} ({linker['path']})" if linker
         else "the compiler's own (apt-get install lld links 3-4x faster)")
    for tool in ("cmake", "ninja"):
        line(tool, f"{report[tool]['version']} ({report[tool]['path']})" if report[tool] else "MISSING")
    cuda = report["cuda"]
    if cuda:
        line("nvcc", f"CUDA {cuda['version']} ({cuda['nvcc']})")
        line("", f"supported: sm_{', sm_'.join(cuda['supported_archs'])}")
        line("", f"default:   sm_{', sm_'.join(cuda['default_archs'])} + PTX compute_{cuda['default_archs'][-1]}")
    else:
        line("nvcc", "not found (CPU kernels only)")
    for seam in frameworks.all():
        for label, text in seam.doctor_lines(report):
            line(label, text)
    cache = report["compiler_cache"]
    if cache["setting"] == "sccache" and cache.get("path"):
        line("cache", f"{cache['tool']} ({cache['path']}), storage: {cache['backend'] or 'unknown'}, "
                      f"answers: {'yes' if cache['answers'] else 'NO'}")
    elif cache["setting"] == "sccache":
        line("cache", "sccache MISSING")
    else:
        line("cache", "none" + (f" ({cache['tool']} found: --compiler-cache sccache uses it)" if cache["tool"] else ""))
    if report["problems"]:
        print("problems:")
        for problem in report["problems"]:
            print(f"  - {problem}")
    else:
        print("everything found")
    sys.stdout.flush()
