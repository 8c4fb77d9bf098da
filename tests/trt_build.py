"""Build TensorRT plugin libraries by hand for the TensorRT tests, with the flags the CMake
build must use (the contract in trtis_build/tensorrt.py and the README):

  adapter:  g++ -std=c++17 -O2 -fPIC -isystem <TensorRT include>
            -isystem <CUDA include> -I<dir of trtis_plugin_config.h> -I<op include dirs>
            [-DTRTIS_WITH_CUDA=1]
  kernels:  g++ (CPU .cc) and nvcc -Xcompiler=-fPIC,-fvisibility=hidden (CUDA .cu)
  link:     g++ -shared ... -l:libcudart_static.a -ldl -lpthread -lrt -Wl,--no-undefined
            -Wl,--version-script=<frameworks/tensorrt/exports.map> (what is exported)

The tests take library paths from fixtures built with `build_plugin`; to test the real
bundle instead, point those fixtures at `trtis-build ops build`'s build/bundle/tensorrt/.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import replace
from pathlib import Path

from trtis_build.core import process
from trtis_build.frameworks.tensorrt.names import PluginId
from trtis_build.ops.discover import OpSpec
from trtis_build.frameworks.tensorrt.config_header import write_plugin_config
from trtis_build.frameworks.tensorrt import AUTOLOAD_SOURCE, EXPORT_MAP
from trtis_build.frameworks.tensorrt.headers import TensorRTHeaders

# One SASS arch keeps the tests fast; the real build compiles the configured list.
TEST_ARCH = os.environ.get("TRTIS_TEST_CUDA_ARCH", "90")


def cuda_home() -> Path | None:
    for candidate in (os.environ.get("CUDA_HOME"), "/usr/local/cuda"):
        if candidate and (Path(candidate) / "include" / "cuda_runtime_api.h").is_file():
            return Path(candidate)
    nvcc = shutil.which("nvcc")
    return Path(nvcc).resolve().parent.parent if nvcc else None


def nvcc_path() -> Path | None:
    home = cuda_home()
    return home / "bin" / "nvcc" if home and (home / "bin" / "nvcc").is_file() else None


def build_plugin(op: OpSpec, out_dir: Path, headers: TensorRTHeaders, *, cuda: bool = True,
                 plugins: tuple[PluginId, ...] | None = None, library_name: str | None = None) -> Path:
    """lib<op>.so from an OpSpec, like the CMake build: `plugins` overrides op.toml's (to make a
    second library with another namespace from the same sources)."""
    home = cuda_home()
    assert home is not None, "CUDA headers are needed: the TensorRT headers include cuda_runtime_api.h"
    out_dir.mkdir(parents=True, exist_ok=True)
    spec = replace(op, declared=plugins) if plugins else op
    config_dir = out_dir / "config"
    write_plugin_config(config_dir, spec.name, spec.declared)
    includes = [f"-I{config_dir}"] + [f"-I{d}" for d in spec.include_dirs]
    cxx = ["g++", "-std=c++17", "-O2", "-fPIC", "-Wall", "-Wextra",
           "-isystem", str(headers.include_dir), "-isystem", str(home / "include"), *includes]
    if cuda:
        cxx.append("-DTRTIS_WITH_CUDA=1")
    objects = []
    for index, source in enumerate(spec.sources + spec.kernel_sources):
        obj = out_dir / f"{index}_{source.stem}.o"
        process.run([*cxx, "-c", str(source), "-o", str(obj)], stage="test build")
        objects.append(obj)
    link = []
    if cuda and spec.cuda_sources:
        nvcc = nvcc_path()
        assert nvcc is not None, "nvcc not found"
        for index, source in enumerate(spec.cuda_sources):
            obj = out_dir / f"cu{index}_{source.stem}.o"
            process.run([str(nvcc), "-O3", "-std=c++17", "-Xcompiler=-fPIC", "-Xcompiler=-fvisibility=hidden",
                         f"-gencode=arch=compute_{TEST_ARCH},code=sm_{TEST_ARCH}",
                         *[f"-I{d}" for d in spec.include_dirs], "-c", str(source), "-o", str(obj)],
                        stage="test build")
            objects.append(obj)
        link = [f"-L{home / 'lib64'}", "-l:libcudart_static.a", "-ldl", "-lpthread", "-lrt"]
    library = out_dir / (library_name or f"lib{spec.name}.so")
    # The export map decides what is visible, as in the CMake build (tensorrt.cmake).
    process.run(["g++", "-shared", "-o", str(library), *map(str, objects), *link,
                 "-Wl,--no-undefined", f"-Wl,--version-script={EXPORT_MAP}"], stage="test build")
    return library


def build_autoload(plugin_library: Path, headers: TensorRTHeaders) -> Path:
    """The autoload shim for a plugin library: <dir>/autoload/<same name> (see
    server/autoload/trtis_autoload.cc), compiled against the same headers."""
    home = cuda_home()
    shim = plugin_library.parent / "autoload" / plugin_library.name
    shim.parent.mkdir(exist_ok=True)
    process.run(["g++", "-std=c++17", "-O2", "-fPIC", "-fvisibility=hidden", "-shared", "-Wall", "-Wextra",
                 "-isystem", str(headers.include_dir), "-isystem", str(home / "include"),
                 str(AUTOLOAD_SOURCE),
                 "-ldl", "-Wl,--no-undefined", "-o", str(shim)], stage="test build")
    return shim
