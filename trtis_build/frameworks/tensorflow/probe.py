"""Run as `python tf_probe.py info`, `python tf_probe.py registered LIB...` or
`python tf_probe.py serve` (libraries on stdin, one per line); prints JSON.

info:       TensorFlow's version, include/lib dirs, compile/link flags, C++ ABI flag and the
            names of its built-in ops (for the shadowing check before compiling).
registered: for each library, the op names it registers, the devices with kernels, and the
            kernels it added for ops it does not define (a built-in's: "Add (CPU)").
"""

import json
import os
import sys
from collections import Counter

# frameworks/probe_support/ holds only bare_import.py (this probe runs as a script).
sys.path.append(os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "probe_support"))
from bare_import import import_core  # noqa: E402

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def _all_op_names():
    from tensorflow.core.framework import op_def_pb2
    from tensorflow.python.client import pywrap_tf_session as c_api

    op_list = op_def_pb2.OpList()
    op_list.ParseFromString(c_api.TF_GetBuffer(c_api.TF_GetAllOpList()))
    return sorted(op.name for op in op_list.op)


def info():
    import tensorflow as tf

    sysconfig = tf.sysconfig
    return {
        "version": tf.__version__,
        "include_dir": sysconfig.get_include(),
        "lib_dir": sysconfig.get_lib(),
        "compile_flags": sysconfig.get_compile_flags(),
        "link_flags": sysconfig.get_link_flags(),
        "cxx11_abi": int(sysconfig.CXX11_ABI_FLAG),
        "builtin_ops": _all_op_names(),
    }


def registered(paths):
    # TensorFlow's runtime and C API, not its Python API (probe_support/bare_import.py says why).
    c_api = import_core("tensorflow", "python.client.pywrap_tf_session")
    from tensorflow.core.framework import kernel_def_pb2, op_def_pb2

    def kernels_of(buffer):
        return kernel_def_pb2.KernelList.FromString(c_api.TF_GetBuffer(buffer)).kernel

    def kernel_defs():
        # A multiset: a kernel that duplicates a built-in's is byte-identical to it.
        return Counter(k.SerializeToString() for k in kernels_of(c_api.TF_GetAllRegisteredKernels()))

    result = {}
    for path in paths:
        before = kernel_defs()
        try:
            handle = c_api.TF_LoadLibrary(path)
        except Exception as exc:  # the library failed to load: report, don't crash
            result[path] = {"error": str(exc).strip()}
            continue
        op_list = op_def_pb2.OpList()
        op_list.ParseFromString(c_api.TF_GetOpList(handle))
        c_api.TF_DeleteLibraryHandle(handle)
        ops = sorted(op.name for op in op_list.op)
        devices = {
            name: sorted({k.device_type for k in kernels_of(c_api.TF_GetRegisteredKernelsForOp(name))})
            for name in ops
        }
        # TensorFlow drops a second REGISTER_OP of a built-in name without a word, but keeps the
        # kernels registered for it: every kernel the library added for an op it does not define.
        added = [kernel_def_pb2.KernelDef.FromString(key) for key in kernel_defs() - before]
        changed = sorted({f"{k.op} ({k.device_type})" for k in added if k.op not in ops})
        result[path] = {"ops": ops, "devices": devices, "changed": changed,
                        "outputs": {op.name: [a.name for a in op.output_arg] for op in op_list.op}}
    return result


def serve():
    """Load TensorFlow's runtime now, at low CPU priority (the build starts this while the
    compiler runs, whose critical path must not wait for it), then probe the paths read from
    stdin, one per line, when the build has them."""
    os.nice(19)
    import_core("tensorflow", "python.client.pywrap_tf_session")  # the slow part
    return registered([line.strip() for line in sys.stdin if line.strip()])


if __name__ == "__main__":
    mode, args = sys.argv[1], sys.argv[2:]
    payload = info() if mode == "info" else serve() if mode == "serve" else registered(args)
    sys.stdout.write("\n@@TRTIS-JSON@@" + json.dumps(payload) + "\n")
    sys.stdout.flush()
    # Skip interpreter teardown: with TensorFlow loaded it takes over half a second and
    # there is nothing left to clean up.
    os._exit(0)
