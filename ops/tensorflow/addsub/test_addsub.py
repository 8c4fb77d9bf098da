"""The op's own test, run by `trtis-build ops test` against the built bundle (the bundle
path comes from $TRTIS_BUNDLE). Numerics against NumPy, inside a tf.function, and through a
SavedModel reloaded in a fresh process."""

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

import trtis_build  # noqa: E402
from trtis_build import testing as op_testing  # noqa: E402

OP_NAME = "TRTISExampleAddSub"


def reference(x, y):
    return x + y, x - y


@pytest.fixture(scope="module")
def op():
    return trtis_build.load_bundle(op_testing.bundle_path()).op(OP_NAME)


def inputs(shape, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.standard_normal(shape).astype(np.float32),
            rng.standard_normal(shape).astype(np.float32))


@pytest.mark.parametrize("shape", [(), (0,), (1,), (7,), (3, 5), (2, 3, 1031)])
def test_matches_numpy(op, shape):
    x, y = inputs(shape)
    got = op(x, y)
    for actual, expected in zip(got, reference(x, y)):
        assert actual.shape == expected.shape
        np.testing.assert_array_equal(actual.numpy(), expected)


def test_inputs_of_different_shapes_are_rejected(op):
    with pytest.raises((tf.errors.InvalidArgumentError, ValueError)):
        op(np.ones(3, np.float32), np.ones(4, np.float32))


def test_inside_tf_function(op):
    spec = tf.TensorSpec([None, None], tf.float32)

    @tf.function(input_signature=[spec, spec])
    def twice(x, y):
        first, second = op(x, y)
        return op(first, second)

    x, y = inputs((4, 33), seed=1)
    got = twice(x, y)
    s, d = reference(x, y)
    for actual, expected in zip(got, reference(s, d)):
        np.testing.assert_allclose(actual.numpy(), expected, rtol=1e-6, atol=1e-6)


def test_savedmodel_reloads_in_a_fresh_process(op, tmp_path):
    spec = tf.TensorSpec([None], tf.float32)

    class Model(tf.Module):
        @tf.function(input_signature=[spec, spec])
        def serve(self, x, y):
            total, difference = op(x, y)
            return {"sum": total, "difference": difference}

    model = Model()
    saved = tmp_path / "saved_model"
    tf.saved_model.save(model, str(saved), signatures={"serving_default": model.serve})
    x, y = inputs((1000,), seed=2)
    outputs = op_testing.run_savedmodel_in_fresh_process(saved, {"x": x, "y": y})
    s, d = reference(x, y)
    np.testing.assert_array_equal(outputs["sum"], s)
    np.testing.assert_array_equal(outputs["difference"], d)
