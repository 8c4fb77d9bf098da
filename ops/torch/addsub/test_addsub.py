"""The op's own test, run by `trtis-build ops test` against the built bundle (the bundle
path comes from $TRTIS_BUNDLE): numerics against NumPy, torch.library.opcheck (schema, fake
tensor, autograd registration, aot dispatch), a torch.export round trip, and under
`trtis-build ops test --gpu` the CUDA kernel through torch.ops on device tensors."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import trtis_build  # noqa: E402
from trtis_build import testing as op_testing  # noqa: E402

OP_NAME = "trtis::add_sub"


def reference(x, y):
    return x + y, x - y


@pytest.fixture(scope="module")
def op():
    return trtis_build.load_bundle(op_testing.bundle_path(), framework="torch").op(OP_NAME)


def inputs(shape, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.standard_normal(shape).astype(np.float32),
            rng.standard_normal(shape).astype(np.float32))


@pytest.mark.parametrize("shape", [(), (0,), (1,), (7,), (3, 5), (2, 3, 1031)])
def test_matches_numpy(op, shape):
    x, y = inputs(shape)
    got = op(torch.from_numpy(x), torch.from_numpy(y))
    for actual, expected in zip(got, reference(x, y)):
        assert tuple(actual.shape) == expected.shape
        np.testing.assert_array_equal(actual.numpy(), expected)


def test_non_contiguous_inputs(op):
    x, y = (torch.from_numpy(a).t() for a in inputs((5, 9), seed=3))
    total, difference = op(x, y)
    np.testing.assert_array_equal(total.numpy(), (x + y).numpy())
    np.testing.assert_array_equal(difference.numpy(), (x - y).numpy())


def test_inputs_of_different_shapes_are_rejected(op):
    with pytest.raises(RuntimeError, match="one shape"):
        op(torch.ones(3), torch.ones(4))


def test_opcheck(op):
    x, y = (torch.from_numpy(a) for a in inputs((4, 33), seed=1))
    torch.library.opcheck(op.default, (x, y))


def test_torch_export_traces_the_op(op):
    class Model(torch.nn.Module):
        def forward(self, x, y):
            total, difference = op(x, y)
            return total * difference

    x, y = (torch.from_numpy(a) for a in inputs((8,), seed=2))
    n = torch.export.Dim("n")  # a dynamic size: the fake kernel must not fix it to 8
    program = torch.export.export(Model(), (x, y), dynamic_shapes={"x": {0: n}, "y": {0: n}})
    assert any(node.target is op.default for node in program.graph.nodes)
    x, y = (torch.from_numpy(a) for a in inputs((13,), seed=4))
    np.testing.assert_allclose(program.module()(x, y).numpy(), ((x + y) * (x - y)).numpy(), rtol=1e-6)


@pytest.mark.skipif(not op_testing.gpu_requested(), reason="the CUDA kernel runs under `trtis-build ops test --gpu`")
def test_cuda_kernel_matches_the_cpu_kernel(op):
    assert torch.cuda.is_available(), "ops test --gpu: torch sees no CUDA device"
    stream = torch.cuda.Stream()  # not the default stream: the kernel must run on torch's current one
    for shape in [(0,), (1,), (1031,), (3, 4097), (1 << 22,)]:
        x, y = (torch.from_numpy(a) for a in inputs(shape, seed=len(shape)))
        with torch.cuda.stream(stream):
            got = op(x.cuda(), y.cuda())
        stream.synchronize()
        for actual, expected in zip(got, op(x, y)):
            assert actual.is_cuda
            assert torch.equal(actual.cpu(), expected), shape
