"""TensorFlow precompiled header benchmark, one run (figures and ratios, not a timed test).

A tree of N TensorFlow ops written by `ops add` (CPU kernels only, `--no-cuda`, so that the
adapters are the whole build), built cold (no build/ directory, the toolchain cache warm) with
the precompiled header forced off and on (TRTIS_BUILD_TF_PCH=off|on), runs alternating, with
each C++ compiler given (default: g++, and clang++ where installed). Then the same for one op,
and what the automatic choice (`auto`, frameworks/tensorflow PCH_SOURCES_PER_JOB per compiler)
takes for both trees.

    .venv/bin/python benchmarks/tf_pch_bench.py [--ops 6] [--repeats 2] [--cxx g++ --cxx clang++]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TRTIS = [sys.executable, "-m", "trtis_build"]
TARGET = 1.5


def make_tree(root: Path, count: int) -> Path:
    root.mkdir(parents=True)
    for index in range(1, count + 1):
        subprocess.run([*TRTIS, "ops", "add", f"pchop{index}", "--no-cuda"], cwd=root, check=True,
                       capture_output=True)
    return root


def cold_build(root: Path, mode: str, cxx: str) -> tuple[float, bool]:
    shutil.rmtree(root / "build", ignore_errors=True)
    env = {**os.environ, "TRTIS_BUILD_TF_PCH": mode, "TRTIS_BUILD_COMPILER_CACHE": "none", "TRTIS_BUILD_CXX": cxx}
    started = time.monotonic()
    result = subprocess.run([*TRTIS, "ops", "build", "--no-cuda", "--json"], cwd=root, env=env,
                            capture_output=True, text=True)
    took = time.monotonic() - started
    if result.returncode != 0:
        raise SystemExit(f"build failed ({mode}):\n{result.stderr[-3000:]}")
    plan = json.loads((root / "build" / "plan.json").read_text())
    return took, bool(plan["variables"].get("TRTIS_TF_PCH"))


def measure(root: Path, repeats: int, cxx: str) -> dict[str, list[float]]:
    times: dict[str, list[float]] = {"off": [], "on": []}
    cold_build(root, "off", cxx)  # warms the toolchain cache and the page cache of TensorFlow's headers
    for _ in range(repeats):
        for mode in ("off", "on"):
            took, used = cold_build(root, mode, cxx)
            assert used == (mode == "on"), f"TRTIS_BUILD_TF_PCH={mode} not followed"
            times[mode].append(took)
    return times


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ops", type=int, default=6)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--cxx", action="append", help="C++ compiler (repeatable; default g++ and clang++)")
    args = parser.parse_args()
    compilers = args.cxx or [c for c in ("g++", "clang++") if shutil.which(c)]
    print(f"tf_pch_bench: cold builds, CPU kernels only, {os.cpu_count()} cores, {args.repeats} runs each")
    met = {}
    with tempfile.TemporaryDirectory(prefix="trtis-pch-bench-") as tmp:
        many_root = make_tree(Path(tmp) / "many", args.ops)
        one_root = make_tree(Path(tmp) / "one", 1)
        for cxx in compilers:
            many = measure(many_root, args.repeats, cxx)
            one = measure(one_root, args.repeats, cxx)
            _, auto_many = cold_build(many_root, "auto", cxx)
            _, auto_single = cold_build(one_root, "auto", cxx)
            for label, times in ((f"{args.ops} ops", many), ("1 op", one)):
                ratios = [off / on for off, on in zip(times["off"], times["on"])]
                print(f"  {cxx:<8} {label:<7} no PCH  median {statistics.median(times['off']):6.2f} s "
                      f"({', '.join(f'{t:.1f}' for t in times['off'])})")
                print(f"  {cxx:<8} {label:<7} PCH     median {statistics.median(times['on']):6.2f} s "
                      f"({', '.join(f'{t:.1f}' for t in times['on'])})")
                print(f"  {cxx:<8} {label:<7} speedup {', '.join(f'{r:.2f}x' for r in ratios)} "
                      f"(median {statistics.median(ratios):.2f}x)")
                if label != "1 op":
                    met[cxx] = statistics.median(ratios) >= TARGET
                    print(f"  {cxx:<8} target for {args.ops} ops: >= {TARGET}x  {'OK' if met[cxx] else 'MISSED'}")
            print(f"  {cxx:<8} automatic choice: {args.ops} ops PCH {'on' if auto_many else 'off'}, "
                  f"1 op PCH {'on' if auto_single else 'off'} (the single-op build stays as it was)")
    return 0 if any(met.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
