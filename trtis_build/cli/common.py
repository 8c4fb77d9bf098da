"""Helpers shared by the command modules: options from arguments, JSON output."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

from ..core.errors import ConfigError
from ..core.options import Options, find_project_root, resolve_options


def add_bundle_options(parser) -> None:
    # --bundle, as in `model add` and `server`; --out is kept as an alias.
    parser.add_argument("--bundle", "--out", dest="bundle_dir", metavar="DIR",
                        help="bundle directory (default: build/bundle; --out is an alias)")
    parser.add_argument("--build-dir", metavar="DIR", help="build directory (default: build)")


def add_toolchain_options(parser, *, compiler_cache: bool = True) -> None:
    """What finding the toolchain reads (doctor, check), without what only a compile uses."""
    parser.add_argument("--tensorrt-root", metavar="DIR", help="TensorRT install (headers in include/)")
    parser.add_argument("--tensorrt-python-path", metavar="DIR",
                        help="directory with a TensorRT Python runtime for the plugin checks; one of the "
                             "headers' major also checks that the autoload shims register")
    parser.add_argument("--python", metavar="EXE", help="Python interpreter that has TensorFlow")
    parser.add_argument("--cxx", metavar="COMPILER",
                        help="C++ compiler, e.g. clang++ (default: $CXX, then g++); nvcc uses it as its host compiler")
    parser.add_argument("--linker", metavar="auto|system|lld|mold|gold",
                        help="what the compiler links with (default: auto, lld when installed)")
    if compiler_cache:
        parser.add_argument("--compiler-cache", metavar="none|sccache",
                            help="launch g++ and nvcc through sccache (default: none); sccache's own "
                                 "environment (SCCACHE_REDIS_ENDPOINT, SCCACHE_BUCKET, SCCACHE_DIR, ...) "
                                 "picks the storage")


def add_build_options(parser) -> None:
    add_bundle_options(parser)
    parser.add_argument("-j", "--jobs", type=int, metavar="N", help="parallel compile jobs")
    parser.add_argument("--cuda-arch", metavar="LIST",
                        help="CUDA architectures, e.g. 80,90 (default: sm_75 up to the newest "
                             "that nvcc supports, one per major, plus PTX for the newest)")
    parser.add_argument("--no-cuda", action="store_true", default=None,
                        help="build CPU kernels only")
    add_toolchain_options(parser)


def options_from(args, **extra: Any) -> Options:
    if getattr(args, "root", None):
        root = Path(args.root).resolve()
        if not root.is_dir():  # before anything is created under it
            raise ConfigError(f"-C {args.root}: no such directory", where=root,
                              hint="give the project root (the directory that holds ops/)")
    else:
        root = find_project_root(Path.cwd())
    cli = {name: getattr(args, name, None)
           for name in ("bundle_dir", "build_dir", "jobs", "cuda_arch", "no_cuda", "tensorrt_root",
                        "tensorrt_python_path", "python", "compiler_cache", "cxx", "linker")}
    cli.update(extra)
    return resolve_options(root=root, env=os.environ, cli=cli)


def print_json(data: Any) -> None:
    json.dump(data, sys.stdout, indent=2, default=str)
    sys.stdout.write("\n")


def info(text: str) -> None:
    print(text, file=sys.stderr, flush=True)
