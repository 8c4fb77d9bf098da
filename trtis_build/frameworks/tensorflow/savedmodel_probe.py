"""Run as `python savedmodel_probe.py BUNDLE SAVED_MODEL INPUTS.npz OUTPUTS.npz [SIGNATURE]`.

A fresh process: load the bundle's op libraries (through trtis_build's guard), then the
SavedModel, call the signature on the inputs and save the outputs."""

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from trtis_build.frameworks.tensorflow.loader import load_bundle  # noqa: E402

bundle, saved, inputs_path, outputs_path = sys.argv[1:5]
signature = sys.argv[5] if len(sys.argv) > 5 else "serving_default"
load_bundle(bundle)
model = tf.saved_model.load(saved)
function = model.signatures[signature]
with np.load(inputs_path) as inputs:
    result = function(**{name: tf.constant(inputs[name]) for name in inputs.files})
np.savez(outputs_path, **{name: value.numpy() for name, value in result.items()})
