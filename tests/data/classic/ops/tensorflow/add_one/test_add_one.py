"""Run by `trtis-build ops test`: the classic-layout op against NumPy."""

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

import trtis_build  # noqa: E402
from trtis_build import testing as op_testing  # noqa: E402


@pytest.mark.parametrize("dtype", [np.float32, np.int32])
def test_add_one(dtype):
    op = trtis_build.load_bundle(op_testing.bundle_path()).op("TRTISClassicAddOne")
    x = np.arange(10).astype(dtype)
    np.testing.assert_array_equal(op(x).numpy(), x + 1)
