"""Build benchmark, one run (figures, not a timed test):

1. cold `trtis-build ops build` of the example op (fresh build dir, toolchain cache warm)
   vs the same compiler and linker commands run directly (the ones Ninja ran, from
   `ninja -t commands`, in order, one at a time, and two at a time like `-j2`);
2. no-op rebuild wall time (the whole CLI process);
3. rebuild after touching only the .cu file.

    .venv/bin/python benchmarks/build_bench.py [--cuda-arch LIST]
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
TARGETS = {"noop": 0.5, "touch_cu": 3.0, "overhead": 1.10}


def trtis(project: Path, *args: str) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "trtis_build", *args], cwd=project, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def run_direct(commands: list[str], cwd: Path, jobs: int) -> float:
    """Run Ninja's commands ourselves: compiles (in order) with `jobs` at a time, links last."""
    compiles = [c for c in commands if " -c " in c]
    links = [c for c in commands if " -c " not in c]
    start = time.perf_counter()
    with ThreadPoolExecutor(jobs) as pool:
        for result in pool.map(lambda c: subprocess.run(c, shell=True, cwd=cwd, check=True), compiles):
            pass
    for command in links:
        subprocess.run(command, shell=True, cwd=cwd, check=True)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--cuda-arch", help="default: the toolkit's default list")
    args = parser.parse_args()
    extra = ["--cuda-arch", args.cuda_arch] if args.cuda_arch else []
    with tempfile.TemporaryDirectory(prefix="trtis-bench-") as tmp:
        project = Path(tmp)
        shutil.copytree(REPO / "ops" / "tensorflow" / "addsub", project / "ops" / "tensorflow" / "addsub",
                        ignore=shutil.ignore_patterns("__pycache__"))
        trtis(project, "doctor")  # warm the per-user toolchain cache, as on any second project
        cold = trtis(project, "ops", "build", *extra)
        cmake_dir = project / "build" / "cmake"
        commands = subprocess.run(["ninja", "-C", str(cmake_dir), "-t", "commands"], check=True,
                                  capture_output=True, text=True).stdout.splitlines()
        subprocess.run(["ninja", "-C", str(cmake_dir), "-t", "clean"], check=True, capture_output=True)
        direct_serial = run_direct(commands, cmake_dir, 1)
        subprocess.run(["ninja", "-C", str(cmake_dir), "-t", "clean"], check=True, capture_output=True)
        direct_parallel = run_direct(commands, cmake_dir, os.cpu_count() or 2)
        trtis(project, "ops", "build", *extra)  # restore the state Ninja expects
        noops = [trtis(project, "ops", "build", *extra) for _ in range(5)]
        cu = project / "ops" / "tensorflow" / "addsub" / "addsub_kernel.cu"
        touches = []
        for _ in range(3):
            os.utime(cu)
            touches.append(trtis(project, "ops", "build", *extra))
        manifest = json.loads((project / "build" / "bundle" / "manifest.json").read_text())
    noop = sorted(noops)[len(noops) // 2]
    touch = sorted(touches)[len(touches) // 2]
    archs = manifest["cuda"]["archs"]
    print(f"example op, CUDA archs {','.join(archs)} + PTX {manifest['cuda']['ptx']}, {os.cpu_count()} cores")
    print(f"commands Ninja ran: {len(commands)}")
    print(f"cold ops build (configure + compile + verify + publish): {cold:7.2f} s")
    print(f"same commands run directly, one at a time:              {direct_serial:7.2f} s  ratio {cold / direct_serial:.2f}")
    print(f"same commands run directly, {os.cpu_count()} at a time:                {direct_parallel:7.2f} s  ratio {cold / direct_parallel:.2f}")
    print(f"no-op rebuild (median of 5, whole CLI):                 {noop:7.2f} s  target <= {TARGETS['noop']}")
    print(f"rebuild after touching the .cu (median of 3):           {touch:7.2f} s  target <= {TARGETS['touch_cu']}")


if __name__ == "__main__":
    main()
