"""`trtis-build model add`: a TensorFlow SavedModel that uses bundle ops -> a Triton model
directory whose op libraries travel with it.

    <models>/<name>/
      config.pbtxt              the configuration for --backend (default: python)
      configs/python.pbtxt      Python-backend runner (servers without a TF backend: 25.04+, PyPI)
      configs/tensorflow.pbtxt  platform tensorflow_savedmodel + model_operations (<= 25.03);
                                pick one per server with `tritonserver --model-config-name=...`
      trtis-model.json          what was added: signature, ops, libraries, reference file
      reference.npz             reference inputs and the outputs TensorFlow computed for them
      1/model.py                the runner (server/runners/savedmodel.py)
      1/model.savedmodel/       a copy of the SavedModel
      1/ops/manifest.json       the subset of the bundle manifest this model needs
      1/ops/tensorflow/lib<op>.so

The pure part (ops used by a graph, their classification, the signature, the two
configurations) works on plain values and protobuf messages; `add_model` is the edge.
"""

from __future__ import annotations

import json
import keyword
import os
import shutil
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

from ... import __version__
from ...core import process
from ...core.errors import ModelError
# The parts every framework's model form shares (re-exported: callers import them from here too).
from ...serving.models import (AddedModel, OpUse, METADATA, MODEL_NAME, OPS_DIR, REFERENCE, VERSION, Signature,  # noqa: F401
                               TensorSpec, bundle_manifest, check_tensor_name, config_dims, write_model_ops,
                               io_block as _io_block, model_dims, model_manifest, model_target,
                               read_metadata, reference_inputs, require_cpu_kernels, staged_model,
                               write_configs)

SAVEDMODEL_DIR = "model.savedmodel"
BACKENDS = ("python", "tensorflow")
DEFAULT_SIGNATURE = "serving_default"
# The Python-backend runner: it runs inside the server, so it lives in server/ (trtis_server).
RUNNER = Path(__import__("trtis_server.runners", fromlist=["_"]).__file__).with_name("savedmodel.py")

# TensorFlow DataType enum values (tensorflow/core/framework/types.proto) -> (Triton, NumPy).
TF_DTYPES: dict[int, tuple[str, str]] = {
    1: ("TYPE_FP32", "float32"), 2: ("TYPE_FP64", "float64"), 3: ("TYPE_INT32", "int32"),
    4: ("TYPE_UINT8", "uint8"), 5: ("TYPE_INT16", "int16"), 6: ("TYPE_INT8", "int8"),
    7: ("TYPE_STRING", "object"), 9: ("TYPE_INT64", "int64"), 10: ("TYPE_BOOL", "bool"),
    17: ("TYPE_UINT16", "uint16"), 19: ("TYPE_FP16", "float16"), 22: ("TYPE_UINT32", "uint32"),
    23: ("TYPE_UINT64", "uint64"),
}


# ---------------------------------------------------------------- pure part

def ops_used(meta_graph) -> set[str]:
    """Every op type in a MetaGraphDef: the graph's nodes and the nodes of every function in
    its library (tf.function bodies live there). Calls of library functions by name are
    function calls, not op types, and are left out."""
    graph = meta_graph.graph_def
    functions = {function.signature.name for function in graph.library.function}
    used = {node.op for node in graph.node}
    for function in graph.library.function:
        used.update(node.op for node in function.node_def)
    return used - functions


def classify_ops(used: Iterable[str], manifest: Mapping[str, Any],
                 is_builtin: Callable[[str], bool], *, bundle: str = "the bundle") -> OpUse:
    """Map op types to bundle libraries first (so a process that already loaded the bundle
    does not mistake its ops for built-ins), then to TensorFlow's registry. An op type in
    neither is a ModelError naming it."""
    by_op: dict[str, dict] = {}
    for library in manifest.get("libraries", []):
        if library.get("framework") == "tensorflow":
            for op in library.get("ops", []):
                by_op[op] = library
    custom: dict[str, str] = {}
    builtin, unknown = [], []
    for op in sorted(set(used)):
        if op in by_op:
            custom[op] = by_op[op]["path"]
        elif is_builtin(op):
            builtin.append(op)
        else:
            unknown.append(op)
    if unknown:
        raise ModelError(
            f"the SavedModel uses op type(s) {', '.join(unknown)} that are neither TensorFlow "
            f"built-ins nor provided by {bundle}",
            hint="add the op under ops/tensorflow/<name> (list it in op.toml `ops`), run "
                 "`trtis-build ops build`, or pass --bundle with the bundle that has it")
    paths = sorted(set(custom.values()))
    libraries = tuple(next(lib for lib in by_op.values() if lib["path"] == path) for path in paths)
    return OpUse(builtin=tuple(builtin), custom=custom, libraries=libraries)


def _tensor_spec(name: str, info, where: str, kind: str) -> TensorSpec:
    check_tensor_name(name, f"signature {kind}", where, hint="rename it in the tf.function's input_signature "
                      "(TensorSpec name=) or the returned dict, and save the model again")
    if kind == "input" and keyword.iskeyword(name):
        # tf.saved_model.load turns input names into Python parameters: a keyword cannot be one,
        # so the runner would fail only once Triton loads the model.
        raise ModelError(f"signature input {name!r} is a Python keyword, which TensorFlow cannot load as an "
                         "argument name (tf.saved_model.load fails), so the model could not be served",
                         where=where, hint="rename the input (TensorSpec name=, e.g. 'in_') and save the model again")
    if info.dtype not in TF_DTYPES:
        raise ModelError(f"signature {kind} {name!r} has TensorFlow dtype enum {info.dtype}, "
                         "which has no Triton equivalent here", where=where)
    if info.tensor_shape.unknown_rank and kind == "output":
        # An input's rank is the input_signature's; an output's comes from the ops' shape
        # functions, and a custom op registered without one leaves it unknown.
        raise ModelError(f"signature output {name!r} has an unknown rank; Triton needs one, and TensorFlow "
                         "could not infer it: an op on its path gives no shape (a custom op registered "
                         "without SetShapeFn does that)", where=where,
                         hint="give the op a shape function (REGISTER_OP(...).SetShapeFn("
                              "::tensorflow::shape_inference::UnchangedShape) or its own), rebuild the bundle and "
                              "save the model again; or give the output a shape with tf.ensure_shape")
    if info.tensor_shape.unknown_rank:
        raise ModelError(f"signature input {name!r} has an unknown rank; Triton needs one",
                         where=where, hint="give the tf.function an input_signature with a shape, "
                                           "e.g. tf.TensorSpec([None], tf.float32)")
    data_type, numpy_dtype = TF_DTYPES[info.dtype]
    shape = tuple(int(dim.size) if dim.size >= 0 else -1 for dim in info.tensor_shape.dim)
    return TensorSpec(name, data_type, numpy_dtype, shape)


def signature_from_meta_graph(meta_graph, key: str = DEFAULT_SIGNATURE, *, where: str = "") -> Signature:
    if key not in meta_graph.signature_def:
        found = ", ".join(sorted(meta_graph.signature_def)) or "none"
        raise ModelError(f"the SavedModel has no signature {key!r} (it has: {found})", where=where,
                         hint="save it with signatures={'serving_default': fn} or pass --signature")
    signature = meta_graph.signature_def[key]
    inputs = tuple(_tensor_spec(n, signature.inputs[n], where, "input") for n in sorted(signature.inputs))
    outputs = tuple(_tensor_spec(n, signature.outputs[n], where, "output") for n in sorted(signature.outputs))
    if not inputs or not outputs:
        raise ModelError(f"signature {key!r} has no inputs or no outputs", where=where)
    return Signature(key, inputs, outputs)


def python_config(name: str, signature: Signature, max_batch_size: int) -> str:
    """config.pbtxt for the Python-backend runner."""
    lines = [f'name: "{name}"', 'backend: "python"', f"max_batch_size: {max_batch_size}"]
    lines += _io_block("input", signature.inputs, max_batch_size)
    lines += _io_block("output", signature.outputs, max_batch_size)
    # One CPU-kind instance: TensorFlow inside the stub still uses the GPUs it sees; KIND_GPU
    # would start one stub (and one TensorFlow) per GPU.
    lines += ["instance_group [", "  {", "    kind: KIND_CPU", "    count: 1", "  }", "]",
              "parameters {", '  key: "SIGNATURE_DEF"',
              f'  value {{ string_value: "{signature.key}" }}', "}"]
    return "\n".join(lines) + "\n"


def tensorflow_config(name: str, signature: Signature, max_batch_size: int,
                      op_libraries: Iterable[str]) -> str:
    """config.pbtxt for Triton's TensorFlow backend (servers up to 25.03). The backend
    dlopens op_library_filename as given, so the paths are absolute as the server sees them."""
    lines = [f'name: "{name}"', 'platform: "tensorflow_savedmodel"',
             f"max_batch_size: {max_batch_size}"]
    lines += _io_block("input", signature.inputs, max_batch_size)
    lines += _io_block("output", signature.outputs, max_batch_size)
    libraries = list(op_libraries)
    if libraries:
        lines.append("model_operations {")
        lines += [f'  op_library_filename: "{path}"' for path in libraries]
        lines.append("}")
    lines += ["parameters {", '  key: "TF_SIGNATURE_DEF"',
              f'  value {{ string_value: "{signature.key}" }}', "}"]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- edges

def read_savedmodel(savedmodel: Path):
    """Parse saved_model.pb with TensorFlow's protobuf classes; returns the serving MetaGraphDef."""
    pb = savedmodel / "saved_model.pb"
    if not pb.is_file():
        hint = "saved_model.pbtxt is not supported; re-save it" if (savedmodel / "saved_model.pbtxt").exists() \
            else "pass the directory tf.saved_model.save wrote"
        raise ModelError(f"{savedmodel} is not a SavedModel (no saved_model.pb)", where=savedmodel, hint=hint)
    try:
        from tensorflow.core.protobuf import saved_model_pb2
    except ImportError:
        raise ModelError("TensorFlow is not installed", hint="pip install 'trtis-build[tf]'") from None
    from google.protobuf.message import DecodeError

    proto = saved_model_pb2.SavedModel()
    try:
        proto.ParseFromString(pb.read_bytes())
    except DecodeError as exc:
        raise ModelError(f"saved_model.pb cannot be parsed: {exc}", where=pb) from None
    for meta_graph in proto.meta_graphs:
        if "serve" in meta_graph.meta_info_def.tags:
            return meta_graph
    raise ModelError("the SavedModel has no MetaGraph tagged 'serve'", where=pb)


def _is_tf_builtin(op: str) -> bool:
    from tensorflow.python.framework import op_def_registry

    return op_def_registry.get(op) is not None


def _compute_reference(version_dir: Path, model_dir: Path, signature: Signature,
                       max_batch_size: int, python: str) -> None:
    """Run the runner itself in a fresh interpreter: it loads the copied libraries through its
    guard and the SavedModel exactly as the server will, and writes the outputs."""
    import numpy as np

    reference = model_dir / REFERENCE
    inputs = reference_inputs(signature, max_batch_size)
    np.savez(reference, **{f"input:{name}": value for name, value in inputs.items()})
    process.run([python, version_dir / "model.py", "--reference", reference,
                 "--signature", signature.key], stage="model add",
                extra_env={} if os.environ.get("TRTIS_BUILD_VERBOSE") else {"TF_CPP_MIN_LOG_LEVEL": "2"}, timeout=300,
                failure_message="the model does not run in TensorFlow with its copied op libraries",
                hint="see the last output above; fix the op or the SavedModel and re-run")
    with np.load(reference, allow_pickle=False) as data:
        missing = [s.name for s in signature.outputs if f"output:{s.name}" not in data.files]
    if missing:
        raise ModelError(f"running the model produced no output(s) {', '.join(missing)}",
                         where=reference)


def add_model(name: str, savedmodel: Path, *, models_dir: Path, bundle_dir: Path | None = None,
              max_batch_size: int = 0, backend: str = "python", signature_key: str = DEFAULT_SIGNATURE,
              server_models_dir: str | None = None, python: str | None = None,
              force: bool = False, reference: bool = True) -> AddedModel:
    """Turn `savedmodel` into <models_dir>/<name>; atomic: a failure leaves no half model."""
    if backend not in BACKENDS:
        raise ModelError(f"unknown backend {backend!r}", hint=f"use one of: {', '.join(BACKENDS)}")
    target = model_target(name, models_dir, force)
    models_dir = target.parent
    savedmodel = Path(savedmodel).resolve()
    bundle_dir, manifest, where = bundle_manifest(bundle_dir)

    meta_graph = read_savedmodel(savedmodel)
    signature = signature_from_meta_graph(meta_graph, signature_key, where=str(savedmodel))
    for spec in (*signature.inputs, *signature.outputs):
        config_dims(spec, max_batch_size)  # fails early with a clear message
    ops = classify_ops(ops_used(meta_graph), manifest, _is_tf_builtin, bundle=where)
    if reference:
        require_cpu_kernels(ops.custom, ops.libraries, where=str(savedmodel),
                            what="model add runs the model here for its reference outputs",
                            hint="run `model add` on a machine with a GPU, or pass --no-reference and serve "
                                 "it on a GPU server (`smoke` here would fail the same way)")

    with staged_model(target) as staging:
        version_dir = staging / VERSION
        version_dir.mkdir()
        shutil.copytree(savedmodel, version_dir / SAVEDMODEL_DIR)
        (version_dir / "model.py").write_text(RUNNER.read_text())
        write_model_ops(bundle_dir, manifest, ops.libraries, version_dir / OPS_DIR)
        server_root = server_models_dir or str(models_dir)
        op_paths = [f"{server_root}/{name}/{VERSION}/{OPS_DIR}/{lib['path']}" for lib in ops.libraries]
        configs = {"python": python_config(name, signature, max_batch_size),
                   "tensorflow": tensorflow_config(name, signature, max_batch_size, op_paths)}
        write_configs(staging, configs, backend)
        metadata = {
            "schema": 1, "trtis_build_version": __version__, "name": name, "backend": backend,
            "source": str(savedmodel), "max_batch_size": max_batch_size,
            "signature": asdict(signature),
            "ops": {"builtin": list(ops.builtin), "custom": dict(ops.custom)},
            "reference": REFERENCE if reference else None,
        }
        (staging / METADATA).write_text(json.dumps(metadata, indent=2) + "\n")
        if reference:
            _compute_reference(version_dir, staging, signature, max_batch_size,
                               python or sys.executable)
    return AddedModel(name, target, backend, signature, ops)

