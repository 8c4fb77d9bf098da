"""Stage 6: `trtis-build ops test` (op_tests.py) and the GPU kernel harness (harness.py).

Op authors' tests import this package: `from trtis_build import testing as op_testing`
gives them `bundle_path()` and `run_savedmodel_in_fresh_process(...)`."""

from ..frameworks.tensorflow.testing import bundle_path, run_savedmodel_in_fresh_process

__all__ = ["bundle_path", "run_savedmodel_in_fresh_process"]
