"""The op's own test, run by `trtis-build ops test` against the built bundle."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import tensorflow as tf  # noqa: E402

from trtis_build import testing as op_testing  # noqa: E402
from trtis_build.frameworks.tensorflow.loader import load_bundle  # noqa: E402


def test_both_names_zero_all_but_the_first_value():
    bundle = load_bundle(op_testing.bundle_path())
    for name in ("TRTISKeepFirst", "TRTIS>ZeroOut"):
        assert bundle.op(name)(tf.constant([5, 6, 7])).numpy().tolist() == [5, 0, 0]
