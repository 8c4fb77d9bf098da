"""Helpers for TensorFlow ops' own tests (`from trtis_build import testing as op_testing`):
the bundle under test, and a SavedModel run in a fresh process, which proves that a model
using the op reloads where only the bundle (not the test's Python objects) provides it."""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path
from typing import Mapping

from ...core import process
from .loader import default_bundle_path

SAVEDMODEL_PROBE = Path(__file__).with_name("savedmodel_probe.py")


def bundle_path() -> Path:
    """The bundle `trtis-build ops test` built ($TRTIS_BUNDLE), else build/bundle."""
    return default_bundle_path()


def run_savedmodel_in_fresh_process(saved_model: Path, inputs: Mapping[str, "object"],
                                    *, bundle: Path | None = None,
                                    signature: str = "serving_default") -> dict:
    import numpy as np

    bundle = Path(bundle or bundle_path()).resolve()
    with tempfile.TemporaryDirectory(prefix="trtis-savedmodel-") as tmp:
        inputs_path, outputs_path = Path(tmp, "inputs.npz"), Path(tmp, "outputs.npz")
        np.savez(inputs_path, **inputs)
        process.run([sys.executable, SAVEDMODEL_PROBE, bundle, saved_model,
                     inputs_path, outputs_path, signature], stage="ops test",
                    failure_message="the SavedModel failed in a fresh process")
        with np.load(outputs_path) as outputs:
            return {name: outputs[name] for name in outputs.files}
