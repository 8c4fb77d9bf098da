"""Triton Python-backend runner for a PyTorch program (torch.export) that calls custom operators.

`trtis-build model add --torch-program` copies this file into <model>/<version>/model.py, next to:

    model.pt2             the program (torch.export.save)
    model.pt              its TorchScript form, for Triton's PyTorch backend (when it traced)
    ops/manifest.json     the op libraries this model needs (a subset of a trtis-build bundle)
    ops/torch/lib<op>.so

Self-contained on purpose: it imports only the standard library, NumPy, torch and (inside
Triton) triton_python_backend_utils, so a model directory runs on any Triton with a Python
backend whose Python has torch, without trtis-build installed there. It applies the same
rules as trtis_build.load_bundle: each library must match its sha256 and suit this torch,
and a library is refused when one of its namespaces is already registered in the process
(torch allows one library per namespace; a second one fails, or silently replaces kernels).
One exception: the identical file (same sha256) already mapped into this process, as when
trtis-launch preloads the image's op libraries for the PyTorch backend and a Python stub
inherits LD_PRELOAD; it is used as it is.

The model's parameters: TORCH_PROGRAM (default model.pt2; a .pt file is TorchScript),
TORCH_DEVICE (default cpu), TORCH_ARGS (the inputs passed by position, in order; the others
go by keyword; default: every input by position, in the config's order). Outputs are matched to the config's names: a program returning a
dict by key, a tuple or list by position, a single tensor as the one output.

Run it directly to compute reference outputs the same way the server will:
    python model.py --reference FILE.npz --outputs a,b   (reads "input:<name>", adds "output:<name>")
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import sys
from pathlib import Path

import numpy as np

PROGRAM = "model.pt2"
OPS_DIR = "ops"
MAPS = "/proc/self/maps"


class OpLibraryError(RuntimeError):
    """An op library of this model is missing, changed, clashes with a registered namespace,
    does not suit this torch, or fails to load."""


def _sha256(path) -> str:
    digest = hashlib.sha256()
    with open(str(path), "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _version(text: str) -> tuple:
    parts = re.findall(r"\d+", text or "")
    return (int(parts[0]), int(parts[1])) if len(parts) >= 2 else (0, 0)


def compatibility_problem(entry: dict, built_with, running: str):
    """Why a library of this manifest entry cannot load into torch `running`, or None."""
    abi = entry.get("torch") or {}
    if abi.get("abi") == "exact":
        if built_with and running.split("+")[0] != built_with.split("+")[0]:
            return "it was built against torch %s with the full C++ API, and this is torch %s" % (
                built_with, running)
    elif _version(running) < _version(abi.get("target", "0.0")):
        return "it targets torch %s or later, and this is torch %s" % (abi["target"], running)
    return None


def mapped_copy(sha256: str, size: int):
    """A shared library mapped into this process with this size and sha256, or None (only
    files of the same size are hashed: torch's own libraries are hundreds of MB)."""
    try:
        with open(MAPS) as handle:
            paths = {line.split(None, 5)[5].strip() for line in handle if len(line.split(None, 5)) == 6}
    except OSError:
        return None
    for path in sorted(paths):
        try:
            if os.path.isfile(path) and os.path.getsize(path) == size and _sha256(path) == sha256:
                return path
        except OSError:
            continue
    return None


def _namespaces(torch) -> set:
    return {name.split("::")[0] for name in torch._C._dispatch_get_all_op_names()}


def _load_one(torch, ops_dir: Path, library: dict, built_with) -> str:
    path = ops_dir / library["path"]
    names = list(library.get("ops", []))
    if not path.is_file():
        raise OpLibraryError("op library %s is missing (it provides %s); re-run `trtis-build model add` "
                             "to copy it from the bundle" % (path, ", ".join(names)))
    sha = _sha256(path)
    if library.get("sha256") and sha != library["sha256"]:
        raise OpLibraryError("op library %s does not match its sha256 in %s (changed after `trtis-build "
                             "model add`); re-run it" % (path, ops_dir / "manifest.json"))
    problem = compatibility_problem(library, built_with, torch.__version__)
    if problem:
        raise OpLibraryError("refusing to load %s: %s; rebuild the bundle with this torch and re-run "
                             "`trtis-build model add`" % (path, problem))
    taken = sorted(set(library.get("namespaces", [])) & _namespaces(torch))
    if taken:
        preloaded = mapped_copy(sha, path.stat().st_size)
        if preloaded:
            return preloaded  # this very library, preloaded (LD_PRELOAD): its operators are ours
        raise OpLibraryError("refusing to load %s: torch namespace(s) %s are already registered in this "
                             "process (by torch or another library); torch allows one library per "
                             "namespace: give the op a namespace of its own and rebuild the bundle"
                             % (path, ", ".join(taken)))
    try:
        torch.ops.load_library(str(path))
    except Exception as exc:  # torch raises OSError / RuntimeError with dlopen's reason
        raise OpLibraryError("cannot load op library %s: %s" % (path, str(exc).strip().splitlines()[0]
                                                                 if str(exc).strip() else repr(exc))) from None
    registered = set(torch._C._dispatch_get_all_op_names())
    missing = [name for name in names if name not in registered and name + ".default" not in registered]
    if missing:
        raise OpLibraryError("%s loaded but does not register %s; rebuild the bundle and re-run "
                             "`trtis-build model add`" % (path, ", ".join(missing)))
    return str(path)


def load_op_libraries(ops_dir: Path) -> list:
    """Load the torch op libraries listed in ops_dir/manifest.json; return their paths."""
    import torch

    manifest_path = ops_dir / "manifest.json"
    if not manifest_path.is_file():
        return []  # a program of torch's own operators
    try:
        manifest = json.loads(manifest_path.read_text())
    except (OSError, ValueError) as exc:
        raise OpLibraryError("cannot read %s: %s; re-run `trtis-build model add`" % (manifest_path, exc)) from None
    built_with = ((manifest.get("toolchain") or {}).get("torch") or {}).get("version")
    return [_load_one(torch, ops_dir, library, built_with) for library in manifest.get("libraries", [])
            if library.get("framework") == "torch"]


def named_outputs(result, names: list) -> dict:
    """The program's result as {config name: tensor}."""
    if isinstance(result, dict):
        missing = [name for name in names if name not in result]
        if missing:
            raise KeyError("the program returned no output(s) %s (it returned %s)"
                           % (", ".join(missing), ", ".join(map(str, result)) or "nothing"))
        return {name: result[name] for name in names}
    values = list(result) if isinstance(result, (tuple, list)) else [result]
    if len(values) != len(names):
        raise ValueError("the program returned %d output(s), the model declares %d" % (len(values), len(names)))
    return dict(zip(names, values))


class TorchProgramRunner:
    """The program as a function of NumPy arrays (no Triton types here)."""

    def __init__(self, version_dir: Path, outputs: list, program: str = PROGRAM, device: str = "cpu",
                 positional=None):
        import torch

        self._torch = torch
        self.libraries = load_op_libraries(version_dir / OPS_DIR)
        path = version_dir / program
        if not path.is_file():
            raise FileNotFoundError("the model's program %s is missing; re-run `trtis-build model add`" % path)
        if path.suffix == ".pt":
            self._module = torch.jit.load(str(path), map_location=device)
        else:
            self._module = torch.export.load(str(path)).module()
        self._outputs = list(outputs)
        self._device = torch.device(device)
        # An exported program checks that its inputs come as it was exported (positional
        # arguments by position, keyword ones by name); the TorchScript form takes all by position.
        self._positional = None if path.suffix == ".pt" or positional is None else list(positional)

    def __call__(self, inputs: dict) -> dict:
        torch = self._torch
        tensors = {}
        for name, array in inputs.items():
            # torch.from_numpy shares memory and warns on read-only buffers (Triton's are).
            array = array if array.flags.writeable else array.copy()
            tensors[name] = torch.from_numpy(array).to(self._device)
        if self._positional is None:
            args, kwargs = list(tensors.values()), {}
        else:
            args = [tensors.pop(name) for name in self._positional]
            kwargs = tensors
        with torch.inference_mode():
            result = self._module(*args, **kwargs)
        return {name: tensor.detach().cpu().numpy() for name, tensor in named_outputs(result, self._outputs).items()}


class TritonPythonModel:
    """Entry point of Triton's Python backend."""

    def initialize(self, args):
        import triton_python_backend_utils as pb_utils

        self._pb = pb_utils
        config = json.loads(args["model_config"])
        version_dir = Path(args["model_repository"]) / args["model_version"]
        parameters = config.get("parameters", {})
        program = parameters.get("TORCH_PROGRAM", {}).get("string_value") or PROGRAM
        device = parameters.get("TORCH_DEVICE", {}).get("string_value") or "cpu"
        positional = parameters.get("TORCH_ARGS", {}).get("string_value")
        self._inputs = [item["name"] for item in config["input"]]
        self._outputs = [(item["name"], pb_utils.triton_string_to_numpy(item["data_type"]))
                         for item in config["output"]]
        # An exception here fails the load; Triton reports its message as the reason.
        self._runner = TorchProgramRunner(version_dir, [name for name, _ in self._outputs], program, device,
                                          _names(positional))

    def execute(self, requests):
        pb_utils = self._pb
        responses = []
        for request in requests:
            try:
                inputs = {name: pb_utils.get_input_tensor_by_name(request, name).as_numpy()
                          for name in self._inputs}
                outputs = self._runner(inputs)
                tensors = [pb_utils.Tensor(name, np.ascontiguousarray(outputs[name], dtype=dtype))
                           for name, dtype in self._outputs]
                responses.append(pb_utils.InferenceResponse(output_tensors=tensors))
            except Exception as exc:  # one bad request must not take the model down
                responses.append(pb_utils.InferenceResponse(
                    output_tensors=[], error=pb_utils.TritonError("%s: %s" % (type(exc).__name__, exc))))
        return responses


def _names(text):
    """'a,b' -> ['a', 'b']; '' -> [] (no positional input); None -> None (all positional)."""
    return None if text is None else [name for name in text.split(",") if name]


def _reference_main(argv: list) -> int:
    parser = argparse.ArgumentParser(description="compute reference outputs for this model")
    parser.add_argument("--reference", required=True, type=Path,
                        help='.npz with "input:<name>" arrays; "output:<name>" arrays are added')
    parser.add_argument("--outputs", required=True, help="the model's output names, comma-separated")
    parser.add_argument("--program", default=PROGRAM)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--args", default=None, help="inputs passed by position, comma-separated "
                                                     "(default: all, in the file's order)")
    args = parser.parse_args(argv)
    with np.load(args.reference, allow_pickle=False) as data:
        arrays = {key: data[key] for key in data.files}
    inputs = {key[len("input:"):]: value for key, value in arrays.items() if key.startswith("input:")}
    try:
        runner = TorchProgramRunner(Path(__file__).resolve().parent, args.outputs.split(","),
                                    args.program, args.device, _names(args.args))
        outputs = runner(inputs)
    except OpLibraryError as exc:
        print("error: %s" % exc, file=sys.stderr)
        return 3
    arrays.update({"output:%s" % name: value for name, value in outputs.items()})
    tmp = args.reference.with_name(args.reference.name + ".tmp.npz")
    np.savez(tmp, **arrays)
    os.replace(tmp, args.reference)
    return 0


if __name__ == "__main__":
    sys.exit(_reference_main(sys.argv[1:]))
