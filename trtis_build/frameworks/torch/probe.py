"""Run as `python probe.py info`, `python probe.py registered LIB...` or `python probe.py
serve` (libraries on stdin, one per line); prints JSON after a mark.

info:       torch's version, include/lib dirs, C++ ABI flag, CUDA version, whether the stable
            ABI headers ship, and the namespaces torch registers itself.
registered: for each library, loaded in turn into this fresh process: the operators it
            defines (schemas, output names, dispatch keys with kernels) and the operators that
            existed before it whose dispatch table it changed (kernels added for built-ins).
"""

import ctypes
import json
import os
import sys

# frameworks/probe_support/ holds only bare_import.py (this probe runs as a script).
sys.path.append(os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "probe_support"))
from bare_import import import_core  # noqa: E402


def _operators(torch):
    return set(torch._C._dispatch_get_all_op_names())


def info():
    import torch

    root = os.path.dirname(torch.__file__)
    include = os.path.join(root, "include")
    return {
        "version": torch.__version__,
        "include_dir": include,
        "lib_dir": os.path.join(root, "lib"),
        "cxx11_abi": int(torch._C._GLIBCXX_USE_CXX11_ABI),
        "cuda": torch.version.cuda,
        "has_stable_abi": os.path.isfile(os.path.join(include, "torch", "csrc", "stable", "library.h")),
        "builtin_namespaces": sorted({name.split("::")[0] for name in _operators(torch)}),
    }


def _kernel_keys(dump):
    """Dispatch keys with a kernel, from torch's dispatch dump ("CPU: registered at ...")."""
    keys = []
    for line in dump.splitlines():
        key, sep, rest = line.partition(": ")
        if sep and rest.startswith("registered at") and key not in ("debug", "schema", "name"):
            keys.append(key)
    return sorted(set(keys))


def _dispatcher():
    """torch._C (the dispatcher and its schemas), not torch's Python API (probe_support/bare_import.py)."""
    import_core("torch", "_C")
    import torch

    return torch


def registered(paths):
    torch = _dispatcher()
    before = _operators(torch)
    tables = {name: torch._C._dispatch_dump(name) for name in before}
    result = {}
    for path in paths:
        try:
            ctypes.CDLL(path)  # what torch.ops.load_library does, without torch.ops
        except Exception as exc:  # the library failed to load: report, don't crash
            result[path] = {"error": (str(exc).strip() or repr(exc))[:2000]}
            continue
        now = _operators(torch)
        new = sorted(now - before)
        changed = sorted(name for name in before if torch._C._dispatch_dump(name) != tables[name])
        schemas, outputs, devices = {}, {}, {}
        for name in new:
            base, _, overload = name.partition(".")
            for schema in torch._C._jit_get_schemas_for_operator(base):
                if schema.overload_name == overload:
                    schemas[name] = str(schema)
                    outputs[name] = [ret.name or f"output_{i}" for i, ret in enumerate(schema.returns)]
            devices[name] = _kernel_keys(torch._C._dispatch_dump(name))
        result[path] = {"schemas": schemas, "outputs": outputs, "devices": devices, "changed": changed}
        before = now
        tables.update({name: torch._C._dispatch_dump(name) for name in new + changed})
    return result


def serve():
    """Import torch now, at low CPU priority (started while the compiler runs), then probe
    the paths read from stdin when the build has them."""
    os.nice(19)
    _dispatcher()  # the slow part

    return registered([line.strip() for line in sys.stdin if line.strip()])


if __name__ == "__main__":
    mode, args = sys.argv[1], sys.argv[2:]
    payload = info() if mode == "info" else serve() if mode == "serve" else registered(args)
    sys.stdout.write("\n@@TRTIS-JSON@@" + json.dumps(payload) + "\n")
    sys.stdout.flush()
    os._exit(0)  # skip torch's teardown: nothing is left to clean up
