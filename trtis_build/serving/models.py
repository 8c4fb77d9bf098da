"""What every framework's model form shares: the model directory's names, the tensor specs
of a signature, Triton's dims and input/output blocks, the model's cut-down manifest, the
deterministic reference inputs, copying op libraries out of the bundle, and the metadata
file that `trtis-build smoke` reads.

A framework's own forms (frameworks/<name>/serving.py) build on these; smoke and serve
read models only through them, so a model of any framework goes through the same smoke.
"""

from __future__ import annotations

import contextlib
import json
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

from ..core.errors import ModelError, TrtisBuildError
from ..core.files import scratch_path, sha256_file, swap_directory

VERSION = "1"
MODEL_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")
# Written into config.pbtxt between quotes: no quote, space or newline may reach it.
TENSOR_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.\-]{0,127}")
OPS_DIR = "ops"
METADATA = "trtis-model.json"
REFERENCE = "reference.npz"


@dataclass(frozen=True)
class TensorSpec:
    name: str
    data_type: str          # Triton type, e.g. TYPE_FP32
    numpy_dtype: str        # e.g. float32
    shape: tuple[int, ...]  # -1 for an unknown dimension


@dataclass(frozen=True)
class Signature:
    key: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]


@dataclass(frozen=True)
class OpUse:
    """The ops a model's graph uses, split by where they come from."""

    builtin: tuple[str, ...]
    custom: Mapping[str, str]       # op -> library path inside the bundle
    libraries: tuple[dict, ...]     # the bundle manifest's entries for those libraries


@dataclass(frozen=True)
class AddedModel:
    """What `model add` made, for the command's report."""

    name: str
    path: Path
    backend: str
    signature: Signature
    ops: OpUse
    forms: Mapping[str, str] = field(default_factory=dict)  # form -> "ok" or why it was not made


def check_model_name(name: str) -> None:
    if not MODEL_NAME.fullmatch(name or ""):
        # It is written into config.pbtxt and a directory name: a quote or a newline there would
        # make the configuration invalid, or inject fields into it.
        raise ModelError(f"invalid model name {name!r}",
                         hint="use ASCII letters, digits, '_', '-' and '.', starting with a letter or digit "
                              "(at most 128 characters)")


def model_target(name: str, models_dir: Path, force: bool) -> Path:
    """<models_dir>/<name>, after checking the name and that nothing is replaced by accident."""
    check_model_name(name)
    target = Path(models_dir).resolve() / name
    if target.exists() and not force:
        raise ModelError(f"model {name!r} already exists", where=target, hint="pass --force to replace it")
    return target


def bundle_manifest(bundle_dir: Path | None) -> tuple[Path, dict, str]:
    """(bundle directory, its manifest, how messages name it). No bundle is fine for a model of
    built-ins: the manifest is then empty and the classification names any missing op."""
    from ..bundle.manifest import read_manifest

    if bundle_dir is None:
        from ..core.options import find_project_root

        bundle_dir = find_project_root(Path.cwd()) / "build" / "bundle"
    bundle_dir = Path(bundle_dir).resolve()
    if (bundle_dir / "manifest.json").is_file():
        return bundle_dir, read_manifest(bundle_dir), f"the bundle {bundle_dir}"
    return bundle_dir, {"libraries": []}, f"any bundle (none at {bundle_dir})"


@contextlib.contextmanager
def staged_model(target: Path):
    """A scratch directory beside `target` that replaces it in one rename when the block
    finishes; an error or an interrupt leaves neither a half model nor the scratch."""
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = scratch_path(target.parent, f".{target.name}", "adding")
    staging.mkdir()
    try:
        yield staging
        swap_directory(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def check_tensor_name(name: str, what: str, where: str, hint: str) -> None:
    if not TENSOR_NAME.fullmatch(name or ""):
        raise ModelError(f"{what} {name!r} cannot be a Triton tensor name here (it goes into "
                         "config.pbtxt and the Python backend's requests)", where=where,
                         hint=hint + " (ASCII letters, digits, '_', '.', '-', starting with a letter or '_')")


def model_dims(spec: TensorSpec, max_batch_size: int) -> tuple[int, ...]:
    """The dims one item has inside the model: the full shape without batching, the shape
    without its first dimension with batching (that dimension must then be unknown)."""
    if max_batch_size <= 0:
        return spec.shape
    if not spec.shape or spec.shape[0] != -1:
        raise ModelError(f"--max-batch-size needs a batch dimension: tensor {spec.name!r} has "
                         f"shape {list(spec.shape)}, whose first dimension is not None",
                         hint="drop --max-batch-size, or save the model with a leading None dimension")
    return spec.shape[1:]


def config_dims(spec: TensorSpec, max_batch_size: int) -> tuple[int, ...]:
    """Triton dims. Triton needs at least one dimension: a scalar item is served as [1] and
    reshaped to [] for the model (the `reshape` entry io_block writes)."""
    return model_dims(spec, max_batch_size) or (1,)


def io_block(kind: str, specs: Iterable[TensorSpec], max_batch_size: int) -> list[str]:
    lines = [f"{kind} ["]
    entries = []
    for spec in specs:
        dims = ", ".join(str(d) for d in config_dims(spec, max_batch_size))
        reshape = "" if model_dims(spec, max_batch_size) else "\n    reshape: { shape: [ ] }"
        entries.append(f'  {{\n    name: "{spec.name}"\n    data_type: {spec.data_type}\n'
                       f"    dims: [ {dims} ]{reshape}\n  }}")
    lines.append(",\n".join(entries))
    lines.append("]")
    return lines


def string_parameter(key: str, value: str) -> list[str]:
    return ["parameters {", f'  key: "{key}"', f'  value {{ string_value: "{value}" }}', "}"]


def model_manifest(manifest: Mapping[str, Any], libraries: Iterable[dict], source: str) -> dict:
    """The bundle manifest cut down to the libraries one model needs (same schema, so
    trtis_build.load_bundle and the runner read it alike)."""
    keep = ("schema", "trtis_build_version", "toolchain", "cuda")
    subset = {key: manifest[key] for key in keep if key in manifest}
    subset["libraries"] = [dict(library) for library in libraries]
    subset["kernel_libraries"] = []
    subset["source_bundle"] = source
    return subset


def reference_inputs(signature: Signature, max_batch_size: int, *, length: int = 8, seed: int = 0,
                     shapes: Mapping[str, tuple[int, ...]] | None = None):
    """Deterministic inputs for the signature: unknown dimensions become `length` (the batch
    dimension becomes 2), or the shapes given per input; floats are normal, integers small,
    strings fixed."""
    import numpy as np

    rng = np.random.default_rng(seed)
    arrays = {}
    for spec in signature.inputs:
        if shapes and spec.name in shapes:
            dims = list(shapes[spec.name])
        else:
            dims = [length if d == -1 else d for d in spec.shape]
        if max_batch_size > 0:
            dims[0] = min(2, max_batch_size)
        dtype = np.dtype(spec.numpy_dtype)
        if dtype.kind == "f":
            value = rng.standard_normal(dims).astype(dtype)
        elif dtype.kind in "iu":
            value = rng.integers(0 if dtype.kind == "u" else -10, 10, size=dims).astype(dtype)
        elif dtype.kind == "b":
            value = rng.random(dims) < 0.5
        else:
            value = np.full(dims, b"trtis")  # fixed-width bytes: no pickle in the .npz
        arrays[spec.name] = value
    return arrays


def gpu_only_ops(custom: Mapping[str, str], libraries: Iterable[Mapping[str, Any]]) -> list[str]:
    """The ops (of a model's `custom` op -> library path) whose libraries have kernels for no
    CPU device, as "Op (GPU)": the bundle's manifest records each op's devices."""
    by_path = {lib.get("path"): lib for lib in libraries}
    found = []
    for op, path in sorted(custom.items()):
        devices = ((by_path.get(path) or {}).get("devices") or {}).get(op)
        if devices and "CPU" not in devices:
            found.append(f"{op} ({', '.join(devices)})")
    return found


def no_gpu_here() -> str | None:
    """Why kernels cannot run on a GPU on this machine, or None where an NVIDIA GPU is present."""
    if not any(Path("/dev").glob("nvidia[0-9]*")):
        return "this machine has no NVIDIA GPU"
    return None


def require_cpu_kernels(custom: Mapping[str, str], libraries: Iterable[Mapping[str, Any]], *, what: str,
                        hint: str, where: Any = None, error: type[TrtisBuildError] = ModelError) -> None:
    """Up front, before anything runs: a model whose custom ops have only GPU kernels cannot
    run on a machine without a GPU (TensorFlow or torch would fail with a trace far later)."""
    gpu_only = gpu_only_ops(custom, libraries)
    reason = no_gpu_here() if gpu_only else None
    if gpu_only and reason:
        raise error(f"{', '.join(gpu_only)} {'has' if len(gpu_only) == 1 else 'have'} only GPU kernels, and "
                    f"{reason}: {what}", where=where, hint=hint)


def model_gpu_only_check(model_dir: Path, *, what: str, hint: str, error: type[TrtisBuildError]) -> None:
    """require_cpu_kernels for a model in a repository: its trtis-model.json names the custom
    ops, its ops/manifest.json their libraries and devices."""
    metadata = read_metadata(model_dir) or {}
    custom = (metadata.get("ops") or {}).get("custom") or {}
    if not custom:
        return
    try:
        libraries = json.loads((model_dir / VERSION / OPS_DIR / "manifest.json").read_text()).get("libraries", [])
    except (OSError, ValueError):
        return  # a model made by hand or damaged: the server's own load says what is wrong
    require_cpu_kernels(custom, libraries, what=what, hint=hint, where=model_dir, error=error)


def write_model_ops(bundle_dir: Path, manifest: Mapping[str, Any], libraries: Iterable[dict], ops_dir: Path) -> None:
    """A model's ops/: each library copied out of the bundle after checking it is the one its
    manifest built, and the manifest subset that names them (nothing for a built-ins model)."""
    libraries = list(libraries)
    if not libraries:
        return
    for library in libraries:
        source = bundle_dir / library["path"]
        if not source.is_file():
            raise ModelError(f"bundle library {library['path']} is missing", where=source,
                             hint="rebuild the bundle with `trtis-build ops build`")
        if library.get("sha256") and sha256_file(source) != library["sha256"]:
            raise ModelError(f"{source} does not match the sha256 in its manifest", where=source,
                             hint="the bundle was changed after it was built; rebuild it")
        target = ops_dir / library["path"]
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, target)
    (ops_dir / "manifest.json").write_text(json.dumps(model_manifest(manifest, libraries, str(bundle_dir)),
                                                      indent=2) + "\n")


def write_configs(staging: Path, configs: Mapping[str, str], backend: str) -> None:
    """configs/<key>.pbtxt for every form; config.pbtxt is the one `backend` picks."""
    (staging / "configs").mkdir()
    for key, text in configs.items():
        (staging / "configs" / f"{key}.pbtxt").write_text(text)
    (staging / "config.pbtxt").write_text(configs[backend])


def signature_dict(signature: Signature) -> dict:
    return {"key": signature.key,
            "inputs": [_spec_dict(spec) for spec in signature.inputs],
            "outputs": [_spec_dict(spec) for spec in signature.outputs]}


def _spec_dict(spec: TensorSpec) -> dict:
    return {"name": spec.name, "data_type": spec.data_type, "numpy_dtype": spec.numpy_dtype,
            "shape": list(spec.shape)}


def read_metadata(model_dir: Path) -> dict | None:
    path = model_dir / METADATA
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except ValueError:
        return None
