"""Stage 6: `trtis-build ops test` (op_tests.py) and the GPU kernel harness (harness.py).

Op authors' tests import this package: `from trtis_build import testing as op_testing`
gives them `bundle_path()`, `gpu_requested()` and `run_savedmodel_in_fresh_process(...)`."""

import os

from ..frameworks.tensorflow.testing import bundle_path, run_savedmodel_in_fresh_process

# Set by `trtis-build ops test --gpu` for the op tests it runs.
GPU_REQUESTED = "TRTIS_TEST_GPU"


def gpu_requested() -> bool:
    """Whether the tests run under `ops test --gpu`: an op's device tests must then run (a
    machine without a usable GPU is a failure, not a skip)."""
    return os.environ.get(GPU_REQUESTED) == "1"


__all__ = ["GPU_REQUESTED", "bundle_path", "gpu_requested", "run_savedmodel_in_fresh_process"]
