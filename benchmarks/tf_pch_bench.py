"""TensorFlow precompiled header benchmark, one run (figures and ratios, not a timed test).

A tree of N TensorFlow ops written by `ops add` (CPU kernels only, `--no-cuda`, so that the
adapters are the whole build), built cold (no build/ directory, the toolchain cache warm) with
the precompiled header forced off and on (TRTIS_BUILD_TF_PCH=off|on), runs alternating.
Then the same for one op, to show where the automatic choice (`auto`: on from
frameworks/tensorflow PCH_MIN_SOURCES adapter sources) leaves it off.

    .venv/bin/python benchmarks/tf_pch_bench.py [--ops 6] [--repeats 2]
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


def cold_build(root: Path, mode: str) -> tuple[float, bool]:
    shutil.rmtree(root / "build", ignore_errors=True)
    env = {**os.environ, "TRTIS_BUILD_TF_PCH": mode, "TRTIS_BUILD_COMPILER_CACHE": "none"}
    started = time.monotonic()
    result = subprocess.run([*TRTIS, "ops", "build", "--no-cuda", "--json"], cwd=root, env=env,
                            capture_output=True, text=True)
    took = time.monotonic() - started
    if result.returncode != 0:
        raise SystemExit(f"build failed ({mode}):\n{result.stderr[-3000:]}")
    plan = json.loads((root / "build" / "plan.json").read_text())
    return took, plan["variables"].get("TRTIS_TF_PCH") == "ON"


def measure(root: Path, repeats: int) -> dict[str, list[float]]:
    times: dict[str, list[float]] = {"off": [], "on": []}
    cold_build(root, "off")  # warms the toolchain cache and the page cache of TensorFlow's headers
    for _ in range(repeats):
        for mode in ("off", "on"):
            took, used = cold_build(root, mode)
            assert used == (mode == "on"), f"TRTIS_BUILD_TF_PCH={mode} not followed"
            times[mode].append(took)
    return times


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ops", type=int, default=6)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="trtis-pch-bench-") as tmp:
        many = measure(make_tree(Path(tmp) / "many", args.ops), args.repeats)
        one_root = make_tree(Path(tmp) / "one", 1)
        one = measure(one_root, args.repeats)
        _, auto_single = cold_build(one_root, "auto")
    print(f"tf_pch_bench: cold builds, CPU kernels only, {os.cpu_count()} cores, {args.repeats} runs each")
    ok = True
    for label, times in ((f"{args.ops} ops", many), ("1 op", one)):
        ratios = [off / on for off, on in zip(times["off"], times["on"])]
        print(f"  {label:<7} no PCH  median {statistics.median(times['off']):6.2f} s ({', '.join(f'{t:.1f}' for t in times['off'])})")
        print(f"  {label:<7} PCH     median {statistics.median(times['on']):6.2f} s ({', '.join(f'{t:.1f}' for t in times['on'])})")
        print(f"  {label:<7} speedup {', '.join(f'{r:.2f}x' for r in ratios)} (median {statistics.median(ratios):.2f}x)")
        if label != "1 op":
            ok = min(ratios) >= TARGET
            print(f"  target for {args.ops} ops: >= {TARGET}x  {'OK' if ok else 'MISSED'}")
    print(f"  automatic choice for 1 op: PCH {'on' if auto_single else 'off'} (the single-op build stays as it was)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
