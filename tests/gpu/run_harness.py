"""Run the kernel harness's checks on one library and print the results (exit 1 on failure).

For compute-sanitizer, which needs a plain program to wrap:
    PYTORCH_NO_CUDA_MEMORY_CACHING=1 compute-sanitizer --tool memcheck --error-exitcode 9 \
        python3 tests/gpu/run_harness.py --library build/gpu/addsub.so --guard 0
--guard 0 ends every view at the end of its own allocation (with torch's caching allocator
off, each tensor is one cudaMalloc), so an overrun leaves the allocation and memcheck sees it.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from trtis_build.testing import harness  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--library", required=True, type=Path)
    parser.add_argument("--op", default="addsub")
    parser.add_argument("--op-dir", type=Path, help="op directory with op.toml (for [harness])")
    parser.add_argument("--guard", type=int, default=harness.GUARD)
    parser.add_argument("--backend", choices=sorted(harness.BACKENDS))
    parser.add_argument("--large", action="store_true", help="add the cases above 2^31 elements")
    parser.add_argument("--seed", type=int)
    args = parser.parse_args(argv)
    status = harness.gpu_status()
    if not status.available:
        print(f"no GPU: {status.message}", file=sys.stderr)
        return 2
    spec = harness.spec_for_op(args.op, args.op_dir)
    library = harness.KernelLibrary(args.library, spec)
    backend = harness.select_backend(args.backend)
    print(f"{status.message}; buffers from {backend.name}; guard {args.guard}")
    cases = harness.default_cases(len(spec.inputs) + len(spec.outputs), large=args.large)
    results = harness.run_checks(library, backend, cases, op=args.op, seed=args.seed,
                                 guard=args.guard)
    print(harness.format_results(results, verbose=True))
    return 0 if all(r.status != "failed" for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
