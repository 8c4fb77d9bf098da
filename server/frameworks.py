"""What the launcher does per framework inside the image: where the framework keeps the
shared libraries it loads before ours (searched for the libraries ours need), what to tell
the user when one is missing, and how the framework's op libraries reach tritonserver.

One entry per framework; the launcher iterates over them and names none."""

import os
import re
import sys


class Runtime:
    name = ""
    provides = "the library that provides it"

    def library_dirs(self):
        return []

    def server_args(self, paths, mode):
        """(option prefix, value) pairs added to tritonserver's command line."""
        return []

    def preload(self, paths, mode, command=()):
        """Libraries to put on LD_PRELOAD; `command` is the tritonserver command line."""
        return []

    def environment(self, paths, preloaded=(), base=None):
        """Variables to set; `preloaded` is what preload() chose, `base` the environment."""
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

    def environment(self, paths, preloaded=(), base=None):
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

    def preload(self, paths, mode, command=()):
        return list(paths) if mode == "preload" else []


class Torch(Runtime):
    """Op libraries need torch's C++ libraries (the PyTorch backend's, or torch/lib of the
    image's Python). Models of the Python backend load them from their own ops/
    (TRTIS_TORCH_OP_LIBRARIES names the image's); Triton's PyTorch backend takes custom ops
    only through LD_PRELOAD (its documented way), so they are preloaded when the server will
    serve a PyTorch-backend model (TRTIS_TORCH_PRELOAD=auto, the default), in preload mode,
    or always / never as TRTIS_TORCH_PRELOAD says. Preloaded, the library finds libtorch
    through LD_LIBRARY_PATH (it has no RPATH: in a Python process torch is loaded first)."""

    name = "torch"
    provides = "torch (the pytorch backend, or python3 -c 'import torch' in the image)"
    POLICIES = ("auto", "always", "never")
    VARIABLE = "TRTIS_TORCH_PRELOAD"

    def library_dirs(self):
        backends = os.environ.get("TRTIS_BACKEND_DIR", "/opt/tritonserver/backends")
        candidates = [os.path.join(backends, "pytorch")] + [os.path.join(entry or ".", "torch", "lib")
                                                          for entry in sys.path]
        return list(dict.fromkeys(d for d in candidates if os.path.isfile(os.path.join(d, "libtorch_cpu.so"))))

    def refuse_preload(self, preloaded, paths):
        policy = os.environ.get(self.VARIABLE, "auto")
        if policy not in self.POLICIES:
            return "%s is %r: use auto (preload for PyTorch-backend models), always or never" % (
                self.VARIABLE, policy)
        return None

    def preload(self, paths, mode, command=()):
        policy = os.environ.get(self.VARIABLE, "auto")
        if not paths or policy == "never":
            return []
        if policy == "always" or mode == "preload" or pytorch_backend_models(command):
            return list(paths)
        return []

    def environment(self, paths, preloaded=(), base=None):
        env = {"TRTIS_TORCH_OP_LIBRARIES": ":".join(paths)}
        dirs = self.library_dirs()
        if preloaded and dirs:
            given = (base or {}).get("LD_LIBRARY_PATH", "")
            env["LD_LIBRARY_PATH"] = ":".join([dirs[0]] + [d for d in given.split(":") if d and d != dirs[0]])
        return env


PYTORCH_CONFIG = re.compile(r'^\s*(platform\s*:\s*"pytorch_libtorch"|backend\s*:\s*"pytorch")', re.M)


def _option_values(command, names):
    """The values of --name=VALUE and --name VALUE options in a command line."""
    values = []
    for index, arg in enumerate(command):
        for name in names:
            if arg.startswith(name + "="):
                values.append(arg.split("=", 1)[1])
            elif arg == name and index + 1 < len(command):
                values.append(command[index + 1])
    return values


def pytorch_backend_models(command):
    """Models of the repositories on a tritonserver command line whose configuration (the
    one --model-config-name picks, else config.pbtxt) is for Triton's PyTorch backend. Remote
    repositories (s3://...) are not read: TRTIS_TORCH_PRELOAD=always covers those."""
    config_names = _option_values(command, ("--model-config-name",))
    found = []
    for repository in _option_values(command, ("--model-repository", "--model-store")):
        if "://" in repository or not os.path.isdir(repository):
            continue
        for model in sorted(os.listdir(repository)):
            model_dir = os.path.join(repository, model)
            custom = [os.path.join(model_dir, "configs", name + ".pbtxt") for name in config_names[-1:]]
            config = next((path for path in custom if os.path.isfile(path)), os.path.join(model_dir, "config.pbtxt"))
            try:
                with open(config, errors="replace") as handle:
                    if PYTORCH_CONFIG.search(handle.read()):
                        found.append(model)
            except OSError:
                pass  # not a model directory
    return found


RUNTIMES = {runtime.name: runtime for runtime in (TensorFlow(), TensorRT(), Torch())}


def runtime(name):
    return RUNTIMES.get(name, Runtime())
