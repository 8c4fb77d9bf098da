"""Distributed compilation benchmark, one run (figures, not a timed test).

The repository's example ops built cold three ways, each a fresh checkout, runs alternating:
  local      compiler-cache none
  dist       compiler-cache sccache, an empty local cache, SCCACHE_CONF naming a scheduler with
             two build servers (tests/sccache_cluster.py: all on 127.0.0.1)
and, for each dist build, the fraction of its compile requests that sccache-dist ran on the
servers (sccache's `dist_compiles` over the requests in its server log, nvcc's parts counted
one by one).

Here the scheduler, both servers and the client share one 2-core machine: distribution can
only cost time (packaging toolchains once, sandboxes, transfers), so the figure that matters
is the fraction of the work that moved. A fleet's speedup is planned on paper in the README.

    .venv/bin/python benchmarks/dist_bench.py [--repeats 2] [--cuda-arch 90]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from benchmarks.cache_bench import build, checkout  # noqa: E402  (one way to clone and build)
from tests.sccache_cluster import cluster  # noqa: E402
from trtis_build.builder import compiler_cache  # noqa: E402

def requests_of(log: Path) -> int:
    return sum(1 for line in log.read_text(errors="replace").splitlines() if "get_cached_or_compile:" in line)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--cuda-arch")
    args = parser.parse_args()
    arch = ["--cuda-arch", args.cuda_arch] if args.cuda_arch else []
    sccache = compiler_cache.locate(os.environ)
    if sccache is None:
        raise SystemExit("sccache not installed (the cache extra)")
    base_env = {k: v for k, v in os.environ.items() if not k.startswith("SCCACHE_")}
    local_times, dist_times, fractions = [], [], []
    with tempfile.TemporaryDirectory(prefix="trtis-dist-bench-") as tmp:
        tmp = Path(tmp)
        build(checkout(tmp / "warmup"), {**base_env, "TRTIS_BUILD_COMPILER_CACHE": "none"}, arch)
        with cluster(tmp / "cluster", sccache) as client:
            for run in range(args.repeats):
                took, _ = build(checkout(tmp / f"local{run}"), {**base_env, "TRTIS_BUILD_COMPILER_CACHE": "none"}, arch)
                local_times.append(took)
                project = checkout(tmp / f"dist{run}")
                env = {**base_env, "TRTIS_BUILD_COMPILER_CACHE": "sccache", "SCCACHE_CONF": str(client),
                       "SCCACHE_DIR": str(tmp / f"client-cache{run}")}
                took, result = build(project, env, arch)
                dist_times.append(took)
                report = result["compiler_cache"]
                total = requests_of(project / "build" / "sccache.log")
                fractions.append((report["distributed"], total, len(report["steps"])))
    print(f"dist_bench: example ops, arch {args.cuda_arch or 'default list'}, {os.cpu_count()} cores shared by the "
          "client, the scheduler and 2 build servers")
    print(f"  local  median {statistics.median(local_times):6.2f} s ({', '.join(f'{t:.1f}' for t in local_times)})")
    print(f"  dist   median {statistics.median(dist_times):6.2f} s ({', '.join(f'{t:.1f}' for t in dist_times)})"
          "  (the first run also packages the g++ and nvcc toolchains for the servers)")
    for index, (distributed, total, steps) in enumerate(fractions):
        print(f"  run {index + 1}: {distributed} of {total} compile requests ran on the build servers "
              f"({distributed / max(total, 1):.0%}; {steps} compile steps)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
