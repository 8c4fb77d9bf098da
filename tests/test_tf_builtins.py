"""A TensorFlow library may not change TensorFlow's own ops: one that registers `Add` again
(TensorFlow drops the second REGISTER_OP without a word) and a CPU kernel for it, next to its
declared op, is refused at build time, naming the op and its op.toml, and the previous bundle
stays; loaded anyway, it would make every later `tf.raw_ops.Add` fail with "Multiple
OpKernel registrations"."""

from __future__ import annotations

import pytest

from tests.conftest import needs_tf, trtis

ADAPTER = r'''
#include "tensorflow/core/framework/op.h"
#include "tensorflow/core/framework/op_kernel.h"

using namespace tensorflow;

REGISTER_OP("TrtisOwnsThis").Input("x: float").Output("y: float");
REGISTER_OP("Add").Input("x: T").Input("y: T").Output("z: T").Attr("T: {float}");

class Copy : public OpKernel {
 public:
  explicit Copy(OpKernelConstruction* ctx) : OpKernel(ctx) {}
  void Compute(OpKernelContext* ctx) override { ctx->set_output(0, ctx->input(0)); }
};

REGISTER_KERNEL_BUILDER(Name("TrtisOwnsThis").Device(DEVICE_CPU), Copy);
REGISTER_KERNEL_BUILDER(Name("Add").Device(DEVICE_CPU).TypeConstraint<float>("T"), Copy);
'''


@pytest.mark.compile
@pytest.mark.tensorflow
@needs_tf
def test_a_library_that_adds_a_kernel_to_a_builtin_is_refused(tmp_path):
    op = tmp_path / "ops" / "tensorflow" / "shadow"
    op.mkdir(parents=True)
    (op / "op.toml").write_text('version = "1"\nops = ["TrtisOwnsThis"]\n')
    (op / "shadow_op.cc").write_text(ADAPTER.replace('REGISTER_KERNEL_BUILDER(Name("Add")',
                                                     '// REGISTER_KERNEL_BUILDER(Name("Add")'))
    trtis("ops", "build", "--no-cuda", cwd=tmp_path)          # the op alone: published
    published = (tmp_path / "build" / "bundle" / "manifest.json").read_text()

    (op / "shadow_op.cc").write_text(ADAPTER)
    refused = trtis("ops", "build", "--no-cuda", cwd=tmp_path, check=False)
    assert refused.returncode == 3, refused.stderr
    assert "changes operators it does not own: Add (CPU)" in refused.stderr
    assert str(op / "op.toml") in refused.stderr and "never for a TensorFlow built-in" in refused.stderr
    assert (tmp_path / "build" / "bundle" / "manifest.json").read_text() == published
