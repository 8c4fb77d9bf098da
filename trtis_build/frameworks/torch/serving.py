"""`trtis-build model add --torch-program`: a torch.export program (.pt2, torch.export.save)
that calls bundle operators -> a Triton model directory whose op libraries travel with it.

    <models>/<name>/
      config.pbtxt              the configuration for --backend (default: python)
      configs/python.pbtxt      Python-backend runner: loads ops/, then the program
      configs/pytorch.pbtxt     platform pytorch_libtorch (Triton's PyTorch backend): 1/model.pt;
                                the op libraries reach it through LD_PRELOAD (trtis-launch)
      trtis-model.json          what was added: signature, ops, libraries, forms, reference file
      reference.npz             reference inputs and the outputs the program computed for them
      1/model.py                the runner (server/runners/torch_program.py)
      1/model.pt2               a copy of the program
      1/model.pt                its TorchScript form (traced, then checked against the program)
      1/ops/manifest.json       the subset of the bundle manifest this model needs
      1/ops/torch/lib<op>.so

The pure part reads the program's archive as data (zip + JSON, nothing of it runs): the
operators its graphs call, their classification, the signature and the configurations.
`add_model` is the edge: the program runs only in a fresh process, with the copied libraries,
the way the server runs it (torch.export.load unpickles: add only programs you trust).
"""

from __future__ import annotations

import json
import re
import shutil
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

from ... import __version__
from ...core import process
from ...core.errors import ModelError
from ...serving.models import (AddedModel, OpUse, METADATA, OPS_DIR, REFERENCE, VERSION, Signature, TensorSpec, bundle_manifest,
                               check_tensor_name, config_dims, write_model_ops, io_block,
                               model_target, reference_inputs, require_cpu_kernels, signature_dict, staged_model,
                               string_parameter,
                               write_configs)
from ..base import JSON_MARK
from . import PROBE, QUIET, RESERVED_NAMESPACES

BACKENDS = ("python", "pytorch")
PROGRAM = "model.pt2"
TORCHSCRIPT = "model.pt"
RUNNER = Path(__import__("trtis_server.runners", fromlist=["_"]).__file__).with_name("torch_program.py")
PROGRAM_PROBE = Path(__file__).with_name("program_probe.py")
MAX_JSON_BYTES = 256 << 20  # the program's graph; weights live in other members
EXPORT_HINT = "export it with torch.export.export(model, args) and save it with torch.export.save(program, 'model.pt2')"
# torch/_export/serde/schema.py ScalarType -> (Triton, NumPy).
TORCH_DTYPES: dict[int, tuple[str, str]] = {
    1: ("TYPE_UINT8", "uint8"), 2: ("TYPE_INT8", "int8"), 3: ("TYPE_INT16", "int16"), 4: ("TYPE_INT32", "int32"),
    5: ("TYPE_INT64", "int64"), 6: ("TYPE_FP16", "float16"), 7: ("TYPE_FP32", "float32"),
    8: ("TYPE_FP64", "float64"), 12: ("TYPE_BOOL", "bool"), 28: ("TYPE_UINT16", "uint16"),
    34: ("TYPE_UINT32", "uint32"), 35: ("TYPE_UINT64", "uint64"),
}
SYMBOL = re.compile(r"^(?:Symbol\('(?P<quoted>[A-Za-z_]\w*)'.*\)|(?P<bare>[A-Za-z_]\w*))$")


@dataclass(frozen=True)
class ProgramInfo:
    """What the program's archive says about its interface."""

    signature: Signature
    positional: tuple[str, ...]                 # inputs passed by position (the rest by keyword)
    hints: Mapping[str, tuple[int, ...]]        # each input's shape in the example it was exported with
    symbols: Mapping[str, tuple[str | None, ...]]  # per input: the symbol of each dynamic dim
    ranges: Mapping[str, tuple[int, int | None]]   # symbol -> (min, max)
    device: str


# ---------------------------------------------------------------- pure part

def read_program(path: Path) -> dict:
    """The serialized ExportedProgram (JSON) inside a .pt2 archive, read as data."""
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"{path} is not a file", where=path, hint=EXPORT_HINT)
    if not zipfile.is_zipfile(path):
        raise ModelError(f"{path} is not a torch.export archive (not a zip file)", where=path, hint=EXPORT_HINT)
    try:
        with zipfile.ZipFile(path) as archive:
            members = {info.filename: info for info in archive.infolist()}
            found = sorted(n for n in members if n.endswith("/models/model.json")) or \
                sorted(n for n in members if n.endswith("serialized_exported_program.json"))
            if not found:
                torchscript = any(n.endswith("/data.pkl") for n in members) and \
                    any("/code/" in n for n in members)
                what = "a TorchScript archive (torch.jit.save)" if torchscript else "not a torch.export archive"
                raise ModelError(f"{path} is {what}: it holds no exported program (models/model.json)",
                                 where=path, hint=EXPORT_HINT + "; model add makes the TorchScript form itself")
            if members[found[0]].file_size > MAX_JSON_BYTES:
                raise ModelError(f"{found[0]} in {path} is larger than {MAX_JSON_BYTES >> 20} MiB", where=path)
            data = json.loads(archive.read(found[0]))
    except (zipfile.BadZipFile, OSError, ValueError, UnicodeDecodeError) as exc:
        raise ModelError(f"{path} cannot be read as a torch.export archive: {exc}", where=path,
                         hint=EXPORT_HINT) from None
    if not isinstance(data, dict) or not isinstance(data.get("graph_module"), dict):
        raise ModelError(f"{path} holds no exported program graph", where=path, hint=EXPORT_HINT)
    return data


def _graphs(value):
    """Every graph in the serialized program: the top one and those of higher-order ops."""
    if isinstance(value, dict):
        if isinstance(value.get("nodes"), list):
            yield value
        for item in value.values():
            yield from _graphs(item)
    elif isinstance(value, list):
        for item in value:
            yield from _graphs(item)


def ops_called(program: Mapping) -> set[str]:
    """The torch operators ("ns::name.overload") the program's graphs call; Python builtins
    (operator.getitem, ...) are not operators and are left out."""
    used = set()
    for graph in _graphs(program.get("graph_module", {})):
        for node in graph["nodes"]:
            target = node.get("target") if isinstance(node, dict) else None
            if isinstance(target, str) and target.startswith("torch.ops."):
                namespace, _, rest = target[len("torch.ops."):].partition(".")
                used.add(f"{namespace}::{rest}")
    return used


def _base_name(op: str) -> str:
    namespace, _, rest = op.partition("::")
    return f"{namespace}::{rest.split('.')[0]}"


def classify_ops(used: Iterable[str], manifest: Mapping[str, Any], is_builtin_namespace: Callable[[str], bool],
                 *, bundle: str = "the bundle") -> OpUse:
    """Operators of bundle libraries first (by name, with or without the overload), then
    torch's own namespaces. An operator in neither is a ModelError naming it; so is one in a
    namespace a bundle library owns but does not define (an older bundle)."""
    by_op, by_namespace = {}, {}
    for library in manifest.get("libraries", []):
        if library.get("framework") == "torch":
            for op in library.get("ops", []):
                by_op[op] = library
            for namespace in library.get("namespaces", []):
                by_namespace[namespace] = library
    custom, builtin, unknown, stale = {}, [], [], []
    for op in sorted(set(used)):
        library = by_op.get(op) or by_op.get(_base_name(op))
        namespace = op.split("::")[0]
        if library is not None:
            custom[op] = library["path"]
        elif namespace in by_namespace:
            stale.append(f"{op} (namespace of {by_namespace[namespace]['path']})")
        elif is_builtin_namespace(namespace):
            builtin.append(op)
        else:
            unknown.append(op)
    if stale:
        raise ModelError(f"the program calls {', '.join(stale)}, which that library does not define in {bundle}",
                         hint="rebuild the bundle from the op sources the program was exported with "
                              "(`trtis-build ops build`), or pass --bundle with the matching bundle")
    if unknown:
        raise ModelError(f"the program calls operator(s) {', '.join(unknown)} that are neither torch's own nor "
                         f"provided by {bundle}",
                         hint="add the op under ops/torch/<name> (its schema in op.toml `ops`), run "
                              "`trtis-build ops build`, or pass --bundle with the bundle that has it")
    paths = sorted(set(custom.values()))
    libraries = tuple(next(lib for lib in by_op.values() if lib["path"] == path) for path in paths)
    return OpUse(builtin=tuple(builtin), custom=custom, libraries=libraries)


def _treespec(text: Any, what: str, where: str) -> dict:
    try:
        spec = json.loads(text) if isinstance(text, str) else None
        spec = spec[1] if isinstance(spec, list) and len(spec) == 2 else None
    except ValueError:
        spec = None
    if not isinstance(spec, dict):
        raise ModelError(f"the program's {what} structure cannot be read", where=where, hint=EXPORT_HINT)
    return spec


def _is_leaf(spec: Mapping) -> bool:
    return spec.get("type") is None


def _keys(spec: Mapping) -> list[str]:
    keys = json.loads(spec.get("context") or "[]")
    return [str(key) for key in keys]


def _input_names(module_signature: Mapping, where: str) -> tuple[list[str], int]:
    """(names of the user inputs, how many are positional): forward's argument names."""
    spec = _treespec(module_signature.get("in_spec"), "input", where)
    children = spec.get("children_spec") or []
    if spec.get("type") != "builtins.tuple" or len(children) != 2:
        raise ModelError("the program's inputs are not (args, kwargs)", where=where, hint=EXPORT_HINT)
    args, kwargs = children
    leaves = list(args.get("children_spec") or []) + list(kwargs.get("children_spec") or [])
    names = list(module_signature.get("forward_arg_names") or [])
    if not all(_is_leaf(leaf) for leaf in leaves) or len(names) != len(leaves):
        raise ModelError("the program takes nested inputs (a list, tuple or dict of tensors); Triton inputs are "
                         "single tensors", where=where,
                         hint="export a module whose forward takes one tensor per argument")
    return names, len(args.get("children_spec") or [])


def _output_names(module_signature: Mapping, count: int, where: str) -> list[str]:
    """A dict's keys; a tuple's or list's items as output_<i>; a single tensor as output_0."""
    spec = _treespec(module_signature.get("out_spec"), "output", where)
    if _is_leaf(spec):
        names = ["output_0"]
    else:
        children = spec.get("children_spec") or []
        if not all(_is_leaf(child) for child in children):
            raise ModelError("the program returns nested outputs; Triton outputs are single tensors", where=where,
                             hint="return a flat dict of tensors (its keys name the outputs) or a tuple")
        if spec.get("type") in ("builtins.dict", "collections.OrderedDict"):
            names = _keys(spec)
        elif spec.get("type") in ("builtins.tuple", "builtins.list"):
            names = [f"output_{i}" for i in range(len(children))]
        else:
            raise ModelError(f"the program returns a {spec.get('type')}", where=where,
                             hint="return a dict of tensors (its keys name the outputs), a tuple or a tensor")
    if len(names) != count:
        raise ModelError(f"the program's output structure names {len(names)} outputs, its graph returns {count}",
                         where=where, hint=EXPORT_HINT)
    return names


def _tensor_spec(name: str, meta: Any, where: str) -> tuple[TensorSpec, tuple[int, ...], tuple[str | None, ...]]:
    if not isinstance(meta, dict) or meta.get("dtype") not in TORCH_DTYPES:
        dtype = meta.get("dtype") if isinstance(meta, dict) else None
        raise ModelError(f"tensor {name!r} has torch dtype {dtype} (torch/_export/serde/schema.py ScalarType), which "
                         "has no Triton and NumPy equivalent here", where=where,
                         hint="cast it in the model (bfloat16 -> float32, complex -> two real tensors)")
    data_type, numpy_dtype = TORCH_DTYPES[meta["dtype"]]
    shape, hints, symbols = [], [], []
    for size in meta.get("sizes", []):
        if "as_int" in size:
            shape.append(int(size["as_int"]))
            hints.append(int(size["as_int"]))
            symbols.append(None)
            continue
        expr = size.get("as_expr") or {}
        hint = (expr.get("hint") or {}).get("as_int")
        match = SYMBOL.match(str(expr.get("expr_str", "")))
        shape.append(-1)
        hints.append(int(hint) if isinstance(hint, int) else 8)
        symbols.append((match["quoted"] or match["bare"]) if match else None)
    return TensorSpec(name, data_type, numpy_dtype, tuple(shape)), tuple(hints), tuple(symbols)


def program_info(program: Mapping, *, where: str = "") -> ProgramInfo:
    """The user inputs and outputs of the program: names from forward's arguments and the
    returned dict's keys, dtypes and shapes (dynamic dims -1) from the graph's tensor values."""
    module = program["graph_module"]
    graph, signature = module.get("graph") or {}, module.get("signature") or {}
    calls = module.get("module_call_graph") or [{}]
    top = (calls[0] or {}).get("signature") or {}
    values = graph.get("tensor_values") or {}
    users_in = [spec["user_input"]["arg"] for spec in signature.get("input_specs", []) if "user_input" in spec]
    users_out = [spec["user_output"]["arg"] for spec in signature.get("output_specs", []) if "user_output" in spec]
    names, positional = _input_names(top, where)
    if len(users_in) != len(names):
        raise ModelError("the program's user inputs do not match its forward arguments", where=where, hint=EXPORT_HINT)
    out_names = _output_names(top, len(users_out), where)
    inputs, outputs, hints, symbols, devices = [], [], {}, {}, set()
    for kind, given, args, specs in (("input", names, users_in, inputs), ("output", out_names, users_out, outputs)):
        for name, arg in zip(given, args):
            check_tensor_name(name, f"program {kind}", where,
                              "rename the forward argument" if kind == "input" else "rename the returned dict's key")
            if "__" in name:  # Triton's PyTorch backend reads <name>__<index> as a position
                raise ModelError(f"program {kind} {name!r} contains '__'", where=where,
                                 hint="rename it: the PyTorch backend takes <name>__<index> for a position")
            if not isinstance(arg, dict) or "as_tensor" not in arg:
                raise ModelError(f"program {kind} {name!r} is not a tensor ({', '.join(arg) if isinstance(arg, dict) else arg})",
                                 where=where, hint="Triton serves tensors: make it a tensor argument or a constant")
            meta = values.get(arg["as_tensor"]["name"])
            spec, hint, syms = _tensor_spec(name, meta, where)
            specs.append(spec)
            if kind == "input":
                hints[name], symbols[name] = hint, syms
                devices.add(((meta.get("device") or {}).get("type")) or "cpu")
    if not inputs or not outputs:
        raise ModelError("the program has no tensor inputs or no tensor outputs", where=where, hint=EXPORT_HINT)
    ranges = {}
    for symbol, bounds in (program.get("range_constraints") or {}).items():
        if isinstance(bounds, dict):
            ranges[symbol] = (int(bounds.get("min_val") or 0), bounds.get("max_val"))
    device = "cuda" if "cuda" in devices else "cpu"
    return ProgramInfo(Signature("forward", tuple(inputs), tuple(outputs)), tuple(names[:positional]),
                       hints, symbols, ranges, device)


def other_shapes(info: ProgramInfo) -> dict[str, tuple[int, ...]] | None:
    """Input shapes with every dynamic dimension changed (one value per symbol, within its
    range), to check that tracing baked no size into the TorchScript form; None when a
    dynamic dimension is an expression or its range leaves no other value."""
    values: dict[str, int] = {}
    shapes = {}
    for spec in info.signature.inputs:
        dims = []
        for static, size, symbol in zip(spec.shape, info.hints[spec.name], info.symbols[spec.name]):
            if static != -1:
                dims.append(size)
                continue
            if symbol is None:
                return None
            if symbol not in values:
                low, high = info.ranges.get(symbol, (0, None))
                candidate = size + 3 if high is None or size + 3 <= int(high) else size - 1
                if candidate < max(low, 0):
                    return None
                values[symbol] = candidate
            dims.append(values[symbol])
        shapes[spec.name] = tuple(dims)
    return shapes if values else None


def python_config(name: str, info: ProgramInfo, max_batch_size: int) -> str:
    """config.pbtxt for the Python-backend runner (inputs and outputs in the program's order)."""
    signature = info.signature
    lines = [f'name: "{name}"', 'backend: "python"', f"max_batch_size: {max_batch_size}"]
    lines += io_block("input", signature.inputs, max_batch_size)
    lines += io_block("output", signature.outputs, max_batch_size)
    # One CPU-kind instance: torch inside the stub still uses the GPU TORCH_DEVICE names;
    # KIND_GPU would start one stub (and one torch) per GPU.
    lines += ["instance_group [", "  {", "    kind: KIND_CPU", "    count: 1", "  }", "]"]
    lines += string_parameter("TORCH_PROGRAM", PROGRAM) + string_parameter("TORCH_DEVICE", info.device)
    lines += string_parameter("TORCH_ARGS", ",".join(info.positional))
    return "\n".join(lines) + "\n"


def pytorch_config(name: str, info: ProgramInfo, max_batch_size: int) -> str:
    """config.pbtxt for Triton's PyTorch backend (TorchScript 1/model.pt). Its inputs keep the
    program's order (the traced forward takes them by position: strict config ordering) and
    its outputs the order of the returned tuple."""
    signature = info.signature
    lines = [f'name: "{name}"', 'platform: "pytorch_libtorch"', f"max_batch_size: {max_batch_size}"]
    lines += io_block("input", signature.inputs, max_batch_size)
    lines += io_block("output", signature.outputs, max_batch_size)
    if info.device == "cpu":  # traced on the CPU: device constants may be baked in
        lines += ["instance_group [", "  {", "    kind: KIND_CPU", "    count: 1", "  }", "]"]
    lines += string_parameter("INFERENCE_MODE", "true")
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- edges

class _TorchNamespaces:
    """Whether a namespace is torch's own: the fixed list first, then (once, only when the
    program calls something else) the namespaces a fresh `import torch` registers."""

    def __init__(self, python: str):
        self.python = python
        self._found: set[str] | None = None

    def __call__(self, namespace: str) -> bool:
        if namespace in RESERVED_NAMESPACES:
            return True
        if self._found is None:
            out = process.capture([self.python, str(PROBE), "info"], stage="model add", extra_env=QUIET,
                                  timeout=300)
            self._found = set(_probe_json(out, "info").get("builtin_namespaces", []))
        return namespace in self._found


def _probe_json(output: str, what: str) -> dict:
    if JSON_MARK not in output:
        raise ModelError(f"the torch probe ({what}) printed no result", hint="run `trtis-build doctor`")
    return json.loads(output.rsplit(JSON_MARK, 1)[1])


def _run_program(version_dir: Path, model_dir: Path, info: ProgramInfo, max_batch_size: int, python: str,
                 torchscript: bool) -> str | None:
    """Reference outputs (and the TorchScript form) from a fresh torch process running the
    model's own runner; returns the TorchScript verdict ("ok" or why not), None if not asked."""
    import numpy as np

    signature = info.signature
    reference = model_dir / REFERENCE
    inputs = reference_inputs(signature, max_batch_size, shapes=info.hints)
    np.savez(reference, **{f"input:{name}": value for name, value in inputs.items()})
    request = {"reference": str(reference), "outputs": [s.name for s in signature.outputs],
               "inputs": [s.name for s in signature.inputs], "positional": list(info.positional),
               "device": info.device, "torchscript": None, "other": None}
    if torchscript:
        request["torchscript"] = str(version_dir / TORCHSCRIPT)
        shapes = other_shapes(info)
        if shapes:
            other = model_dir / ".other-inputs.npz"
            np.savez(other, **reference_inputs(signature, max_batch_size, shapes=shapes, seed=1))
            request["other"] = str(other)
    request_path = model_dir / ".program-request.json"
    request_path.write_text(json.dumps(request))
    try:
        out = process.capture([python, str(PROGRAM_PROBE), str(version_dir), str(request_path)],
                              stage="model add", extra_env=QUIET, timeout=600,
                              failure_message="running the program with its copied op libraries crashed",
                              hint="see the last output above; fix the op or the program and re-run")
    finally:
        for scratch in (request_path, model_dir / ".other-inputs.npz"):
            scratch.unlink(missing_ok=True)
    result = _probe_json(out, "program")
    if "error" in result:
        what = "its copied op libraries cannot be loaded" if result.get("op_library") else \
            "the program does not run in torch with its copied op libraries"
        raise ModelError(f"{what}: {result['error']}", where=model_dir.name,
                         hint="fix the op or the program and re-run; a program is loaded with "
                              "torch.export.load, so it must have been saved by torch.export.save")
    return result.get("torchscript")


def add_model(name: str, program_path: Path, *, models_dir: Path, bundle_dir: Path | None = None,
              max_batch_size: int = 0, backend: str = "python", python: str | None = None,
              force: bool = False, reference: bool = True) -> AddedModel:
    """Turn the program at `program_path` into <models_dir>/<name>; atomic: a failure leaves
    no half model."""
    if backend not in BACKENDS:
        raise ModelError(f"backend {backend!r} does not serve a torch program",
                         hint=f"use one of: {', '.join(BACKENDS)}")
    if backend == "pytorch" and not reference:
        raise ModelError("--backend pytorch needs the program to run (its TorchScript form is traced and checked "
                         "in that run)", hint="drop --no-reference, or use --backend python")
    target = model_target(name, models_dir, force)
    program_path = Path(program_path).resolve()
    python = python or sys.executable
    bundle_dir, manifest, where = bundle_manifest(bundle_dir)

    program = read_program(program_path)
    info = program_info(program, where=str(program_path))
    for spec in (*info.signature.inputs, *info.signature.outputs):
        config_dims(spec, max_batch_size)  # fails early with a clear message
    ops = classify_ops(ops_called(program), manifest, _TorchNamespaces(python), bundle=where)
    if reference:
        require_cpu_kernels(ops.custom, ops.libraries, where=str(program_path),
                            what="model add runs the program here for its reference outputs",
                            hint="run `model add` on a machine with a GPU, or pass --no-reference and serve it "
                                 "on a GPU server (`smoke` here would fail the same way)")

    forms = {"python": "ok", "pytorch": "not made: --no-reference (the TorchScript form is traced in that run)"}
    with staged_model(target) as staging:
        version_dir = staging / VERSION
        version_dir.mkdir()
        shutil.copy2(program_path, version_dir / PROGRAM)
        (version_dir / "model.py").write_text(RUNNER.read_text())
        write_model_ops(bundle_dir, manifest, ops.libraries, version_dir / OPS_DIR)
        if reference:
            forms["pytorch"] = _run_program(version_dir, staging, info, max_batch_size, python, torchscript=True)
            if forms["pytorch"] != "ok":
                (version_dir / TORCHSCRIPT).unlink(missing_ok=True)  # no config serves it
        if backend == "pytorch" and forms["pytorch"] != "ok":
            raise ModelError(f"the program has no TorchScript form for Triton's PyTorch backend: {forms['pytorch']}",
                             where=program_path, hint="serve it with --backend python (the Python-backend runner "
                                                      "runs the exported program itself)")
        configs = {"python": python_config(name, info, max_batch_size)}
        if forms["pytorch"] == "ok":
            configs["pytorch"] = pytorch_config(name, info, max_batch_size)
        write_configs(staging, configs, backend)
        metadata = {
            "schema": 1, "trtis_build_version": __version__, "name": name, "framework": "torch",
            "backend": backend, "source": str(program_path), "max_batch_size": max_batch_size,
            "signature": signature_dict(info.signature), "positional": list(info.positional),
            "device": info.device, "forms": forms,
            "ops": {"builtin": list(ops.builtin), "custom": dict(ops.custom)},
            "reference": REFERENCE if reference else None,
        }
        (staging / METADATA).write_text(json.dumps(metadata, indent=2) + "\n")
    return AddedModel(name, target, backend, info.signature, ops, forms)
