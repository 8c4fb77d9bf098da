"""The PyTorch op library of a bundle on a real GPU: trtis::add_sub through torch.ops.

The library is the bundle's torch/libaddsub.so as built on the CPU machine (torch 2.14.1
headers, stable ABI, target 2.10), loaded unrebuilt into whatever torch runs here (2.11 on
the lent GPU machine). The bundle is $TRTIS_BUNDLE, else build/bundle; without a torch
library there the module skips and says so. Speed is measured by benchmarks/gpu_session.sh
torch, not here. Under compute-sanitizer the large cases are left out with -k small.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from trtis_build.testing import harness

pytestmark = pytest.mark.gpu

ROOT = Path(__file__).resolve().parents[2]
STATUS = harness.gpu_status()
if not STATUS.available:
    pytest.skip(f"no GPU: {STATUS.message}", allow_module_level=True)
torch = pytest.importorskip("torch")

import trtis_build  # noqa: E402

BUNDLE = Path(os.environ.get("TRTIS_BUNDLE", ROOT / "build" / "bundle"))
OP_NAME = "trtis::add_sub"
# Sizes the CUDA launcher treats differently: empty, fewer elements than one float4, odd
# tails, a rank-4 odd shape, and about 64M elements (256 MiB per tensor, a grid of 64K blocks).
SMALL = [(0,), (1,), (3,), (5,), (1023,), (4097,), (3, 5, 7, 11)]
LARGE = [((1 << 20) + 3,), (1 << 26,), ((1 << 26) + 1,)]


def _ids(shapes, kind):
    return [f"{kind}-{'x'.join(map(str, shape))}" for shape in shapes]


@pytest.fixture(scope="module")
def bundle():
    manifest = BUNDLE / "manifest.json"
    if not manifest.is_file() or '"framework": "torch"' not in manifest.read_text():
        pytest.skip(f"no bundle with a torch library at {BUNDLE}: build one with `trtis-build ops build` "
                    "and point TRTIS_BUNDLE at it")
    return trtis_build.load_bundle(BUNDLE, framework="torch")


@pytest.fixture(scope="module")
def op(bundle):
    return bundle.op(OP_NAME)


def _inputs(shape, seed=0, device="cpu"):
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(shape, generator=generator, dtype=torch.float32)
    y = torch.randn(shape, generator=generator, dtype=torch.float32)
    return x.to(device), y.to(device)


def _assert_exact_against_cpu(op, x, y):
    """The CUDA result must equal, bit for bit, the CPU kernel's and torch's own x + y, x - y."""
    expected = op(x.cpu(), y.cpu())
    assert torch.equal(expected[0], x.cpu() + y.cpu()) and torch.equal(expected[1], x.cpu() - y.cpu())
    got = op(x, y)
    torch.cuda.synchronize()
    for actual, want in zip(got, expected):
        assert actual.device == x.device and actual.shape == want.shape and actual.dtype == torch.float32
        assert torch.equal(actual.cpu(), want)


def test_library_from_another_torch_has_its_cuda_kernel(bundle):
    built_with = bundle.manifest["toolchain"]["torch"]["version"]
    print(f"\nbuilt with torch {built_with}, running torch {torch.__version__} (CUDA {torch.version.cuda}), "
          f"{torch.cuda.get_device_name()}")
    for key in ("CPU", "CUDA", "Meta"):
        assert torch._C._dispatch_has_kernel_for_dispatch_key(OP_NAME, key), key


@pytest.mark.parametrize("shape", SMALL + LARGE, ids=_ids(SMALL, "small") + _ids(LARGE, "large"))
def test_matches_the_cpu_kernel_exactly(op, shape):
    _assert_exact_against_cpu(op, *_inputs(shape, seed=len(shape), device="cuda"))


@pytest.mark.parametrize("offset", [1, 2, 3])
def test_small_views_off_the_16_byte_boundary(op, offset):
    # Storage offsets move the data pointers off float4 alignment; contiguous() keeps them.
    x, y = _inputs((offset + 1001,), seed=offset, device="cuda")
    _assert_exact_against_cpu(op, x[offset:], y[offset:])


def test_small_non_contiguous_inputs(op):
    x, y = _inputs((33, 65), seed=7, device="cuda")
    _assert_exact_against_cpu(op, x.t(), y.t())


def _pending_inputs(stream, x_src, y_src):
    """x and y on `stream`, written only after ~0.1 s of spinning there: a kernel launched on
    any other stream (which would not wait for this one) reads the zeros they start as."""
    x, y = torch.zeros_like(x_src), torch.zeros_like(y_src)
    torch.cuda.synchronize()
    with torch.cuda.stream(stream):
        torch.cuda._sleep(200_000_000)  # GPU clock cycles
        x.copy_(x_src)
        y.copy_(y_src)
    return x, y


@pytest.mark.parametrize("priority", [0, -1], ids=["small-stream", "small-high-priority-stream"])
def test_runs_on_the_current_stream_without_synchronizing(op, priority):
    x_src, y_src = _inputs((1 << 22,), seed=11, device="cuda")
    stream = torch.cuda.Stream(priority=priority)
    assert stream.cuda_stream != torch.cuda.default_stream().cuda_stream
    x, y = _pending_inputs(stream, x_src, y_src)
    with torch.cuda.stream(stream):
        total, difference = op(x, y)
        # The op returned while the stream still spins: it enqueued, it did not wait.
        assert not stream.query()
    stream.synchronize()
    assert torch.equal(total, x_src + y_src) and torch.equal(difference, x_src - y_src)


def test_small_two_streams_at_once(op):
    streams = [torch.cuda.Stream(), torch.cuda.Stream()]
    sources = [_inputs((4099,), seed=20 + i, device="cuda") for i in range(2)]
    pending = [_pending_inputs(stream, *src) for stream, src in zip(streams, sources)]
    results = []
    for stream, (x, y) in zip(streams, pending):
        with torch.cuda.stream(stream):
            results.append(op(x, y))
    torch.cuda.synchronize()
    for (x_src, y_src), (total, difference) in zip(sources, results):
        assert torch.equal(total, x_src + y_src) and torch.equal(difference, x_src - y_src)


def test_small_opcheck_on_cuda(op):
    x, y = _inputs((4, 33), seed=1, device="cuda")
    torch.library.opcheck(op.default, (x, y))


def test_small_inputs_on_two_devices_are_rejected(op):
    x, y = _inputs((8,), device="cuda")
    with pytest.raises(RuntimeError, match="device"):
        op(x, y.cpu())
    torch.cuda.synchronize()  # the context is still healthy
    assert torch.equal(op(x, y)[0], x + y)
