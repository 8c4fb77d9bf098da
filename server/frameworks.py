"""What the launcher does per framework inside the image: where the framework keeps the
shared libraries it loads before ours (searched for the libraries ours need), what to tell
the user when one is missing, and how the framework's op libraries reach tritonserver.

One entry per framework; the launcher iterates over them and names none."""

import os
import sys


class Runtime:
    name = ""
    provides = "the library that provides it"

    def library_dirs(self):
        return []

    def server_args(self, paths, mode):
        """(option prefix, value) pairs added to tritonserver's command line."""
        return []

    def preload(self, paths, mode):
        """Libraries to put on LD_PRELOAD."""
        return []

    def environment(self, paths):
        return {}


class TensorFlow(Runtime):
    """Op libraries are never preloaded (TensorFlow's bundled BoringSSL clashes with the
    server's libcrypto and crashes every Python stub); models load them."""

    name = "tensorflow"
    provides = "TensorFlow (python3 -c 'import tensorflow' must work in the image)"

    def library_dirs(self):
        dirs = []
        for entry in sys.path:
            candidate = os.path.join(entry or ".", "tensorflow")
            if os.path.isfile(os.path.join(candidate, "libtensorflow_framework.so.2")):
                dirs.append(candidate)
        return dirs

    def environment(self, paths):
        return {"TRTIS_TF_OP_LIBRARIES": ":".join(paths)}

    def refuse_preload(self, preloaded, paths):
        clash = sorted(set(preloaded) & set(paths))
        if clash:
            return ("LD_PRELOAD names TensorFlow op libraries (%s): preloading them crashes the "
                    "Python stubs; remove them, models load them" % ", ".join(clash))
        return None


class TensorRT(Runtime):
    """Plugins reach Triton's TensorRT backend as --backend-config=tensorrt,plugins=... (or
    LD_PRELOAD in preload mode); the paths are the autoload shims, which register the plugin
    library beside them when merely opened."""

    name = "tensorrt"
    provides = "TensorRT (the tensorrt backend or libnvinfer)"
    PLUGINS = "--backend-config=tensorrt,plugins="

    def library_dirs(self):
        backends = os.environ.get("TRTIS_BACKEND_DIR", "/opt/tritonserver/backends")
        return [os.path.join(backends, "tensorrt")] + [os.path.join(entry or ".", "tensorrt_libs")
                                                      for entry in sys.path]

    def server_args(self, paths, mode):
        return [(self.PLUGINS, ";".join(paths))] if paths and mode == "backend-config" else []

    def preload(self, paths, mode):
        return list(paths) if mode == "preload" else []


class Torch(Runtime):
    """Op libraries need torch's C++ libraries (torch/lib of the image's Python); models of
    the Python backend load them from their own ops/ (TRTIS_TORCH_OP_LIBRARIES names the
    image's), Triton's PyTorch backend only through LD_PRELOAD (its documented way)."""

    name = "torch"
    provides = "torch (python3 -c 'import torch' must work in the image)"

    def library_dirs(self):
        return [os.path.join(entry or ".", "torch", "lib") for entry in sys.path
                if os.path.isfile(os.path.join(entry or ".", "torch", "lib", "libtorch_cpu.so"))]

    def environment(self, paths):
        return {"TRTIS_TORCH_OP_LIBRARIES": ":".join(paths)}


RUNTIMES = {runtime.name: runtime for runtime in (TensorFlow(), TensorRT(), Torch())}


def runtime(name):
    return RUNTIMES.get(name, Runtime())
