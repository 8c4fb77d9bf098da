"""Memory bandwidth of the addsub CUDA kernel against a device-to-device copy and torch.

Run on a GPU machine with torch (the lent H100/H200 has it):
    python3 benchmarks/kernel_bench.py --library build/gpu/addsub.so \
        [--variant NAME=PATH ...] [--sizes 1,4,16,64,256,1024,4096] [--out FILE]

Byte-counting convention (bytes that must cross device memory, reads + writes):
  custom  sum = x + y, diff = x - y in one kernel: 2 reads + 2 writes = 16 bytes/element
  copy    dst.copy_(src) (cudaMemcpyAsync device-to-device): 1 read + 1 write = 8 B/element
  torch   torch.add(x, y, out=s); torch.sub(x, y, out=d): 4 reads + 2 writes = 24 B/element
GB/s = those bytes / median time (1 GB = 1e9 bytes). "of copy" = custom GB/s over copy
GB/s, the share of the achievable bandwidth the kernel reaches. "speedup" compares times
(torch's two kernels over the custom one on the same data): the bandwidth-bound ideal is
24/16 = 1.5x.

Method: CUDA events around `iters` back-to-back launches (about 20 ms a region), after
warm-up regions; the median of --repeats regions. Buffers smaller than the L2 cache are
rotated among several sets (at least 512 MiB touched per region), so that no method is timed
out of the cache. Each custom library's output is checked against torch before timing.
A second table times the custom kernels on views whose pointers sit at different offsets
from a 16-byte boundary (1, 2, 3, 0 floats), which take the kernel's 4-byte scalar path.
"""

from __future__ import annotations

import argparse
import datetime
import math
import platform
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from trtis_build.testing import harness  # noqa: E402

MIB = 1 << 20
MAX_OFFSET = 3
MIXED = (1, 2, 3, 0)       # per-pointer offsets in floats: the kernel's scalar path
FOOTPRINT = 512 * MIB      # bytes touched per region at least (L2 is 50-60 MB on Hopper)
REGION_SECONDS = 0.02


def _timed(torch, fn, iters: int, repeats: int, warmup: int = 3) -> float:
    """Median seconds per call of fn(i) over `repeats` regions of `iters` calls."""
    start, stop = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    samples = []
    for r in range(warmup + repeats):
        start.record()
        for i in range(iters):
            fn(i)
        stop.record()
        stop.synchronize()
        if r >= warmup:
            samples.append(start.elapsed_time(stop) / 1e3 / iters)
    return statistics.median(samples)


def _sets(torch, n: int, buffers: int, slack: int = 0):
    """Enough buffer sets to touch FOOTPRINT bytes per region; `slack` spare floats each."""
    count = max(1, min(64, math.ceil(FOOTPRINT / (buffers * 4 * n))))
    return [[torch.randn(n + slack, device="cuda") for _ in range(buffers)] for _ in range(count)]


def _iters(bytes_per_call: int, assumed_bandwidth: float = 3e12) -> int:
    return max(3, min(2000, math.ceil(REGION_SECONDS / (bytes_per_call / assumed_bandwidth))))


def bench_size(torch, libraries: dict[str, harness.KernelLibrary], size_mib: float,
               repeats: int) -> dict[str, float]:
    n = int(size_mib * MIB) // 4
    stream = torch.cuda.current_stream().cuda_stream
    row: dict[str, float] = {"MiB": size_mib, "n": n}

    sets = _sets(torch, n, 4, slack=MAX_OFFSET)
    for name, lib in libraries.items():
        for label, offsets in ((name, (0, 0, 0, 0)), (f"{name}@mixed", MIXED)):
            x, y, s, d = sets[0]
            views = [t[o:o + n] for t, o in zip((x, y, s, d), offsets)]
            code = lib.launch([v.data_ptr() for v in views], n, stream)
            if code != 0:
                raise SystemExit(f"{label}: launcher failed: {lib.error_text(code)}")
            if not (torch.equal(views[2], views[0] + views[1])
                    and torch.equal(views[3], views[0] - views[1])):
                raise SystemExit(f"{label}: wrong results at n={n}; not timing a broken kernel")
            ptrs = [[t.data_ptr() + 4 * o for t, o in zip(bufs, offsets)] for bufs in sets]
            launch = lib._launch  # the raw ctypes function: less Python overhead at small sizes
            t = _timed(torch, lambda i: launch(*ptrs[i % len(ptrs)], n, stream),
                       _iters(16 * n), repeats)
            row[f"{label}_s"], row[f"{label}_GBps"] = t, 16 * n / t / 1e9

    views = [[t[:n] for t in bufs] for bufs in sets]

    def torch_unfused(i):
        x, y, s, d = views[i % len(views)]
        torch.add(x, y, out=s)
        torch.sub(x, y, out=d)

    t = _timed(torch, torch_unfused, _iters(24 * n), repeats)
    row["torch_s"], row["torch_GBps"] = t, 24 * n / t / 1e9
    del sets, views

    pairs = _sets(torch, n, 2)
    t = _timed(torch, lambda i: pairs[i % len(pairs)][1].copy_(pairs[i % len(pairs)][0]),
               _iters(8 * n), repeats)
    row["copy_s"], row["copy_GBps"] = t, 8 * n / t / 1e9
    del pairs
    torch.cuda.empty_cache()
    return row


def render(rows: list[dict[str, float]], names: list[str]) -> str:
    head = f"{'MiB/input':>9} {'copy GB/s':>10} {'torch GB/s':>10}"
    for name in names:
        head += f" | {name + ' GB/s':>16} {'of copy':>8} {'vs torch':>8}"
    lines = [head, "-" * len(head)]
    for row in rows:
        line = f"{row['MiB']:>9g} {row['copy_GBps']:>10.1f} {row['torch_GBps']:>10.1f}"
        for name in names:
            line += (f" | {row[name + '_GBps']:>16.1f} {row[name + '_GBps'] / row['copy_GBps']:>8.1%}"
                     f" {row['torch_s'] / row[name + '_s']:>7.2f}x")
        lines.append(line)
    return "\n".join(lines)


def report(rows: list[dict[str, float]], names: list[str]) -> str:
    aligned = render(rows, names)
    mixed = render(rows, [f"{name}@mixed" for name in names])
    return (f"{aligned}\n\n# the same with pointers at different 16-byte offsets "
            f"{MIXED} floats (scalar path)\n{mixed}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--library", type=Path, required=True, help="the kernel library to judge")
    parser.add_argument("--variant", action="append", default=[], metavar="NAME=PATH",
                        help="more builds to compare (e.g. other TRTIS_ADDSUB_* settings)")
    parser.add_argument("--sizes", default="1,4,16,64,256,1024,4096", help="MiB per input buffer")
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--out", type=Path, help="also write the report here")
    args = parser.parse_args(argv)

    status = harness.gpu_status()
    if not status.available:
        print(f"no GPU: {status.message}", file=sys.stderr)
        return 2
    import torch
    spec = harness.template_spec("addsub")
    libraries = {"custom": harness.KernelLibrary(args.library, spec)}
    for item in args.variant:
        name, _, path = item.partition("=")
        libraries[name] = harness.KernelLibrary(path, spec)
    sizes = [float(s) for s in args.sizes.split(",")]

    props = torch.cuda.get_device_properties(0)
    header = [
        f"# kernel_bench {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M UTC}",
        f"# device: {props.name}, {props.multi_processor_count} SMs, "
        f"{props.total_memory / 2**30:.1f} GiB; {status.message}",
        f"# torch {torch.__version__}, python {platform.python_version()}; repeats {args.repeats}",
        f"# libraries: " + ", ".join(f"{k}={v.path}" for k, v in libraries.items()),
        "# bytes: custom 16 B/element (2 reads + 2 writes), copy 8 (1 + 1), torch 24 (4 + 2);"
        " 'vs torch' = torch time / custom time",
    ]
    print("\n".join(header), flush=True)
    rows = []
    for size in sizes:
        rows.append(bench_size(torch, libraries, size, args.repeats))
        print(f"  {size:g} MiB done", file=sys.stderr, flush=True)
    table = report(rows, list(libraries))
    print(table)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text("\n".join(header) + "\n" + table + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
