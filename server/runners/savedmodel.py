"""Triton Python-backend runner for a TensorFlow SavedModel that uses custom ops.

`trtis-build model add` copies this file into <model>/<version>/model.py, next to:

    model.savedmodel/     the SavedModel
    ops/manifest.json     the op libraries this model needs (a subset of a trtis-build bundle)
    ops/tensorflow/lib<op>.so

Self-contained on purpose: it imports only the standard library, NumPy, TensorFlow and (inside
Triton) triton_python_backend_utils, so a model directory runs on any Triton with a Python
backend whose Python has TensorFlow (25.04+ containers, the PyPI server, an image built by
trtis-build) without trtis-build installed there. It applies the same guard as
trtis_build.load_bundle: a library is refused when one of its op names is already registered
in the process, because a second registration of a name makes every call of that op fail
later with "Multiple OpKernel registrations" instead of failing at load.

Run it directly to compute reference outputs the same way the server will:
    python model.py --reference FILE.npz     (reads "input:<name>" arrays, adds "output:<name>")
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np

SAVEDMODEL_DIR = "model.savedmodel"
OPS_DIR = "ops"
DEFAULT_SIGNATURE = "serving_default"


class OpLibraryError(RuntimeError):
    """An op library of this model is missing, clashes with a registered op, or fails to load."""


def load_op_libraries(ops_dir: Path) -> list[str]:
    """Load the TensorFlow op libraries listed in ops_dir/manifest.json; return their paths."""
    import tensorflow as tf
    from tensorflow.python.framework import op_def_registry

    manifest_path = ops_dir / "manifest.json"
    if not manifest_path.is_file():
        return []  # a model that uses only TensorFlow built-ins
    try:
        manifest = json.loads(manifest_path.read_text())
    except (OSError, ValueError) as exc:
        raise OpLibraryError(f"cannot read {manifest_path}: {exc}; re-run `trtis-build model add`") from None
    loaded = []
    for library in manifest.get("libraries", []):
        if library.get("framework") != "tensorflow":
            continue
        path = ops_dir / library["path"]
        names = list(library.get("ops", []))
        if not path.is_file():
            raise OpLibraryError(f"op library {path} is missing (it provides {', '.join(names)}); "
                                 "re-run `trtis-build model add` to copy it from the bundle")
        taken = [name for name in names if op_def_registry.get(name) is not None]
        if taken:
            raise OpLibraryError(f"refusing to load {path}: op(s) {', '.join(taken)} are already "
                                 "registered in this process (a TensorFlow built-in or another "
                                 "library); rename the op in its op.toml and rebuild the bundle")
        try:
            tf.load_op_library(str(path))
        except Exception as exc:  # TF raises NotFoundError / RuntimeError with dlopen's reason
            raise OpLibraryError(f"cannot load op library {path}: {exc}") from None
        missing = [name for name in names if op_def_registry.get(name) is None]
        if missing:
            raise OpLibraryError(f"{path} loaded but does not register {', '.join(missing)}; "
                                 "rebuild the bundle and re-run `trtis-build model add`")
        loaded.append(str(path))
    return loaded


class SavedModelRunner:
    """The SavedModel's signature as a function of NumPy arrays (no Triton types here)."""

    def __init__(self, version_dir: Path, signature: str = DEFAULT_SIGNATURE):
        import tensorflow as tf

        self.libraries = load_op_libraries(version_dir / OPS_DIR)
        self._model = tf.saved_model.load(str(version_dir / SAVEDMODEL_DIR))
        if signature not in self._model.signatures:
            raise KeyError(f"SavedModel {version_dir / SAVEDMODEL_DIR} has no signature "
                           f"{signature!r} (it has {', '.join(self._model.signatures) or 'none'})")
        self._function = self._model.signatures[signature]

    def __call__(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        outputs = self._function(**inputs)
        return {name: tensor.numpy() for name, tensor in outputs.items()}


class TritonPythonModel:
    """Entry point of Triton's Python backend."""

    def initialize(self, args):
        import triton_python_backend_utils as pb_utils

        self._pb = pb_utils
        config = json.loads(args["model_config"])
        version_dir = Path(args["model_repository"]) / args["model_version"]
        parameters = config.get("parameters", {})
        signature = parameters.get("SIGNATURE_DEF", {}).get("string_value") or DEFAULT_SIGNATURE
        self._inputs = [item["name"] for item in config["input"]]
        self._outputs = [(item["name"], pb_utils.triton_string_to_numpy(item["data_type"]))
                         for item in config["output"]]
        # An exception here fails the load; Triton reports its message as the reason.
        self._runner = SavedModelRunner(version_dir, signature)

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
                    output_tensors=[], error=pb_utils.TritonError(f"{type(exc).__name__}: {exc}")))
        return responses


def _reference_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description="compute reference outputs for this model")
    parser.add_argument("--reference", required=True, type=Path,
                        help='.npz with "input:<name>" arrays; "output:<name>" arrays are added')
    parser.add_argument("--signature", default=DEFAULT_SIGNATURE)
    args = parser.parse_args(argv)
    with np.load(args.reference) as data:
        arrays = {key: data[key] for key in data.files}
    inputs = {key.removeprefix("input:"): value for key, value in arrays.items()
              if key.startswith("input:")}
    try:
        runner = SavedModelRunner(Path(__file__).resolve().parent, args.signature)
        outputs = runner(inputs)
    except OpLibraryError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 3
    # TensorFlow returns strings as object arrays; store them as fixed-width bytes so the
    # file loads without pickle.
    arrays.update({f"output:{name}": value.astype(np.bytes_) if value.dtype == object else value
                   for name, value in outputs.items()})
    tmp = args.reference.with_name(args.reference.name + ".tmp.npz")
    np.savez(tmp, **arrays)
    os.replace(tmp, args.reference)
    return 0


if __name__ == "__main__":
    sys.exit(_reference_main(sys.argv[1:]))
